//! Encrypting uploads: one PUT for small objects, parallel multipart above the threshold.
//!
//! The plaintext is read part by part; each part holds whole frames, so parts are sealed
//! independently (on the blocking pool) and uploaded in parallel. Part 1 starts with the header;
//! the last part ends with the final frame (and, for signed suites, the signature). Memory is
//! bounded by `(concurrency + 1) × part size`. On any failure or cancellation the multipart upload
//! is aborted: no parts are left behind and no partial object becomes visible.

mod output;
mod plan;
mod upload;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use s3crypt_core::{EncryptionContext, Keyring};
use tokio::io::AsyncRead;

pub use self::output::{PutOutput, StorageOptions};
use self::upload::{read_up_to, HeaderParts, Upload};
use crate::body::Opened;
use crate::error::{Error, Result};
use crate::settings::Encryption;
use crate::shared::Shared;
use crate::transport::multipart::Cancel;
use crate::transport::pool::Pool;
use crate::{location, metadata};

/// An upload being configured (see [`crate::Client::put_object`]).
pub struct PutObject {
    shared: Arc<Shared>,
    bucket: Option<String>,
    key: Option<String>,
    context: EncryptionContext,
    metadata: BTreeMap<String, String>,
    content_type: Option<String>,
    body: Option<crate::body::Body>,
    size_hint: Option<u64>,
    cancel: Option<Cancel>,
    options: StorageOptions,
    sse_c: bool,
    /// Crate-internal overrides for copies (the source's suite and frame length, binding, and the
    /// keyring of the new header), and the ETag the write must replace (an in-place rewrite).
    keyring: Option<Arc<dyn Keyring>>,
    encryption: Option<Encryption>,
    binding: Option<location::Binding>,
    if_match: Option<String>,
    sse_key: Option<Arc<crate::sse_c::SseCKey>>,
    progress: Option<Progress>,
}

/// Told the plaintext bytes of each part once S3 acknowledged it (see [`PutObject::on_progress`]).
pub(crate) type Progress = Arc<dyn Fn(u64) + Send + Sync>;

impl std::fmt::Debug for PutObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PutObject")
            .field("bucket", &self.bucket)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl PutObject {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            bucket: None,
            key: None,
            context: EncryptionContext::new(),
            metadata: BTreeMap::new(),
            content_type: None,
            body: None,
            size_hint: None,
            cancel: None,
            options: StorageOptions::default(),
            sse_c: false,
            keyring: None,
            encryption: None,
            binding: None,
            if_match: None,
            sse_key: None,
            progress: None,
        }
    }

    /// A copy's overrides: the keyring that wraps the new data key, the encryption settings, the
    /// location binding, the ETag the write must replace (`None`: any or no object), and the
    /// SSE-C key already derived for the destination (`None`: no SSE-C).
    pub(crate) fn for_copy(
        mut self,
        keyring: Arc<dyn Keyring>,
        encryption: Encryption,
        binding: location::Binding,
        if_match: Option<String>,
        sse_key: Option<Arc<crate::sse_c::SseCKey>>,
    ) -> Self {
        self.keyring = Some(keyring);
        self.encryption = Some(encryption);
        self.binding = Some(binding);
        self.if_match = if_match;
        self.sse_c = false;
        self.sse_key = sse_key;
        self
    }

    /// Bucket.
    pub fn bucket(mut self, b: impl Into<String>) -> Self {
        self.bucket = Some(b.into());
        self
    }

    /// Object key.
    pub fn key(mut self, k: impl Into<String>) -> Self {
        self.key = Some(k.into());
        self
    }

    /// The encryption context (authenticated, stored in clear). The object's location is added.
    pub fn context(mut self, c: EncryptionContext) -> Self {
        self.context = c;
        self
    }

    /// User metadata (stored in clear, not authenticated).
    pub fn metadata(mut self, m: BTreeMap<String, String>) -> Self {
        self.metadata = m;
        self
    }

    /// The plaintext's content type (the stored object is `application/octet-stream`).
    pub fn content_type(mut self, ct: impl Into<String>) -> Self {
        self.content_type = Some(ct.into());
        self
    }

    /// The plaintext: `Bytes`, `Vec<u8>`, a `tokio::fs::File`, [`crate::Body::from_path`],
    /// [`crate::Body::from_reader`] or [`crate::Body::from_stream`] (see [`crate::Body`]).
    pub fn body(mut self, body: impl Into<crate::body::Body>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// The plaintext length if known and not inferred from the body (a reader, a stream): lets
    /// part sizes grow so that huge objects stay within S3's 10,000 parts, and lets a caching
    /// keyring count the bytes under each data key. It is a maximum: a body longer than this
    /// fails the upload (which is then aborted). Same as [`crate::Body::with_length`].
    pub fn size_hint(mut self, n: u64) -> Self {
        self.size_hint = Some(n);
        self
    }

    /// SSE-C: every request carries a per-object key derived from the client's SSE-C source
    /// (see [`crate::sse_c`]).
    pub fn sse_c(mut self, yes: bool) -> Self {
        self.sse_c = yes;
        self
    }

    /// S3-side options (SSE-S3/SSE-KMS, storage class, object lock).
    pub fn storage_options(mut self, o: StorageOptions) -> Self {
        self.options = o;
        self
    }

    /// Called with the plaintext bytes of each part once S3 has acknowledged it (the whole body
    /// for a single PUT), from the task that uploaded it: for a progress bar that counts what is
    /// stored, not what was read.
    pub fn on_progress(mut self, f: impl Fn(u64) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(f));
        self
    }

    /// Stops the upload (and aborts it) when `cancel` completes, e.g. on Ctrl-C.
    pub fn cancel_on(mut self, cancel: impl Future<Output = ()> + Send + 'static) -> Self {
        self.cancel = Some(Box::pin(cancel));
        self
    }

    /// Encrypts and uploads.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a missing bucket, key or body, or invalid metadata;
    /// [`Error::Io`] if reading the body fails; [`Error::Service`] if S3 refuses;
    /// [`Error::Cancelled`]; keyring errors as [`Error::Crypto`].
    pub async fn send(mut self) -> Result<PutOutput> {
        let bucket = self
            .bucket
            .take()
            .ok_or_else(|| Error::InvalidArgument("no bucket".into()))?;
        let key = self
            .key
            .take()
            .ok_or_else(|| Error::InvalidArgument("no key".into()))?;
        let body = self
            .body
            .take()
            .ok_or_else(|| Error::InvalidArgument("no body".into()))?;
        metadata::check_user_metadata(&self.metadata)?;
        let sse_key = match self.sse_key.take() {
            Some(k) => Some(k),
            None if self.sse_c => {
                Some(crate::sse_c::write_key(self.shared.sse_c.as_ref(), &bucket, &key).await?)
            }
            None => None,
        };
        let (opened, length) = body.open().await?;
        let inner = self.shared.clone();
        let encryption = self.encryption.unwrap_or(inner.encryption);
        let job = Upload {
            shared: self.shared.clone(),
            bucket,
            key,
            meta: Default::default(),
            size_hint: self.size_hint.or(length),
            options: self.options.clone(),
            sse: sse_key,
            pool: Pool::default(),
            encryption,
            if_match: self.if_match.clone(),
            header_length: 0,
            progress: self.progress.take(),
        };
        let mut cancel = self
            .cancel
            .take()
            .unwrap_or_else(|| Box::pin(std::future::pending()));
        let header = HeaderParts {
            context: std::mem::take(&mut self.context),
            binding: self.binding,
            keyring: self.keyring.take(),
            content_type: self.content_type.take(),
            metadata: std::mem::take(&mut self.metadata),
        };
        let frame = encryption.frame_length as usize;
        let part_len = plan::part_plaintext(inner.transfer.part_size, frame, job.size_hint);
        let threshold = inner.transfer.multipart_threshold;
        // Read one byte past the threshold (and the first part) to know whether more follows.
        let limit = part_len.max(threshold).saturating_add(1);
        let mut body: Box<dyn AsyncRead + Send + Unpin> = match opened {
            Opened::Bytes(b) if b.len() <= threshold => {
                // Small and in memory: nothing to read.
                return job
                    .start(header, b.to_vec(), None, part_len, threshold, &mut cancel)
                    .await;
            }
            Opened::Bytes(b) => Box::new(std::io::Cursor::new(b)),
            Opened::Reader(r) => r,
        };
        // The buffer grows with what arrives (from the size hint, if any): a small object must
        // not cost a part-sized allocation (mapping and unmapping 16 MiB per object was most of
        // a small put's CPU time, in the kernel).
        let initial = job
            .size_hint
            .and_then(|n| usize::try_from(n).ok())
            .map_or(64 << 10, |n| n.saturating_add(1));
        let first = tokio::select! {
            r = read_up_to(body.as_mut(), limit, initial) => r?,
            () = &mut cancel => return Err(Error::Cancelled),
        };
        job.start(header, first, Some(body), part_len, threshold, &mut cancel)
            .await
    }
}
