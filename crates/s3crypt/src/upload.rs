//! Encrypting uploads: one PUT for small objects, parallel multipart above the threshold.
//!
//! The plaintext is read part by part; each part holds whole frames, so parts are sealed
//! independently (on the blocking pool) and uploaded in parallel. Part 1 starts with the header;
//! the last part ends with the final frame (and, for signed suites, the signature). Memory is
//! bounded by `(concurrency + 1) × part size`. On any failure or cancellation the multipart upload
//! is aborted: no parts are left behind and no partial object becomes visible.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use s3crypt_core::key::{FINAL_PREFIX, REGULAR_OVERHEAD, REGULAR_PREFIX};
use s3crypt_core::parts::{MessageSealer, PartSealer};
use s3crypt_core::{EncryptOptions, EncryptionContext, Encryptor, Keyring};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::task::JoinSet;

use crate::body::Opened;
use crate::client::Client;
use crate::error::{service, Error, Result};
use crate::settings::Encryption;
use crate::{location, metadata};

/// S3's smallest part (all parts but the last).
pub(crate) const MIN_PART: usize = 5 << 20;
/// S3's largest part (ciphertext bytes).
const MAX_PART: usize = 5 << 30;
/// S3's largest part count.
pub(crate) const MAX_PARTS: i32 = 10_000;

/// A cancellation signal: when this future completes, the upload stops and is aborted.
pub type Cancel = Pin<Box<dyn Future<Output = ()> + Send>>;

/// An upload being configured (see [`Client::put_object`]).
pub struct PutObject {
    client: Client,
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
}

/// S3-side options passed through to the upload: server-side encryption by S3 (on top of
/// s3crypt's), storage class, object lock.
///
/// ```
/// use aws_sdk_s3::types::{ServerSideEncryption, StorageClass};
/// let o = s3crypt::StorageOptions::new()
///     .with_server_side_encryption(ServerSideEncryption::Aes256)
///     .with_storage_class(StorageClass::StandardIa);
/// assert!(o.sse_kms_key_id.is_none());
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct StorageOptions {
    /// `AES256` (SSE-S3) or `aws:kms` (SSE-KMS).
    pub server_side_encryption: Option<aws_sdk_s3::types::ServerSideEncryption>,
    /// The KMS key for SSE-KMS.
    pub sse_kms_key_id: Option<String>,
    /// Storage class.
    pub storage_class: Option<aws_sdk_s3::types::StorageClass>,
    /// Object lock mode (the bucket must have object lock enabled).
    pub object_lock_mode: Option<aws_sdk_s3::types::ObjectLockMode>,
    /// Object lock retain-until date.
    pub object_lock_retain_until: Option<aws_smithy_types::DateTime>,
}

impl StorageOptions {
    /// None of them (S3's defaults).
    pub fn new() -> Self {
        Self::default()
    }

    /// `AES256` (SSE-S3) or `aws:kms` (SSE-KMS).
    #[must_use]
    pub fn with_server_side_encryption(
        mut self,
        sse: aws_sdk_s3::types::ServerSideEncryption,
    ) -> Self {
        self.server_side_encryption = Some(sse);
        self
    }

    /// The KMS key for SSE-KMS.
    #[must_use]
    pub fn with_sse_kms_key_id(mut self, key_id: impl Into<String>) -> Self {
        self.sse_kms_key_id = Some(key_id.into());
        self
    }

    /// Storage class.
    #[must_use]
    pub fn with_storage_class(mut self, class: aws_sdk_s3::types::StorageClass) -> Self {
        self.storage_class = Some(class);
        self
    }

    /// Object lock mode and retain-until date (the bucket must have object lock enabled).
    #[must_use]
    pub fn with_object_lock(
        mut self,
        mode: aws_sdk_s3::types::ObjectLockMode,
        retain_until: aws_smithy_types::DateTime,
    ) -> Self {
        self.object_lock_mode = Some(mode);
        self.object_lock_retain_until = Some(retain_until);
        self
    }
}

impl std::fmt::Debug for PutObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PutObject")
            .field("bucket", &self.bucket)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// What an upload produced.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PutOutput {
    /// Plaintext bytes uploaded.
    pub plaintext_length: u64,
    /// Bytes stored (ciphertext).
    pub size: u64,
    /// Parts (1 for a single PUT).
    pub parts: u32,
    /// Entity tag of the new object.
    pub etag: Option<String>,
    /// Version id, on versioned buckets.
    pub version_id: Option<String>,
    /// Length of the message header (the first bytes of the object).
    pub header_length: u64,
    /// Whether the plaintext length was declared to the keyring before the data key was
    /// requested. A caching keyring ([`crate::CachingKeyring`]) serves only messages of declared
    /// length: this is `false` only for a body of unknown length (a reader or stream without
    /// [`crate::Body::with_length`] or [`PutObject::size_hint`]) longer than the multipart
    /// threshold, whose data key was then not cached.
    pub length_declared: bool,
}

impl PutObject {
    pub(crate) fn new(client: Client) -> Self {
        Self {
            client,
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
            None if self.sse_c => Some(
                crate::sse_c::write_key(self.client.inner.sse_c.as_ref(), &bucket, &key).await?,
            ),
            None => None,
        };
        let (opened, length) = body.open().await?;
        let inner = self.client.inner.clone();
        let encryption = self.encryption.unwrap_or(inner.encryption);
        let job = Upload {
            client: self.client.clone(),
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
        let part_len = job.part_plaintext(frame);
        let threshold = inner.transfer.multipart_threshold;
        // Read one byte past the threshold (and the first part) to know whether more follows.
        let limit = part_len.max(threshold) + 1;
        let mut body: Box<dyn AsyncRead + Send + Unpin> = match opened {
            Opened::Bytes(b) if b.len() < limit => {
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

/// What the header and the stored metadata are made from.
struct HeaderParts {
    context: EncryptionContext,
    binding: Option<location::Binding>,
    keyring: Option<Arc<dyn Keyring>>,
    content_type: Option<String>,
    metadata: BTreeMap<String, String>,
}

struct Upload {
    client: Client,
    bucket: String,
    key: String,
    meta: std::collections::HashMap<String, String>,
    size_hint: Option<u64>,
    options: StorageOptions,
    sse: Option<std::sync::Arc<crate::sse_c::SseCKey>>,
    pool: Pool,
    encryption: Encryption,
    /// The final write (PUT or CompleteMultipartUpload) replaces only an object with this ETag.
    if_match: Option<String>,
    header_length: u64,
}

/// Reads up to `limit` bytes (fewer if the input ends first) into a buffer that starts at
/// `initial` bytes and doubles as data arrives, never beyond `limit`: small inputs cost small
/// buffers, and large ones no more than `limit`.
async fn read_up_to(
    r: &mut (dyn AsyncRead + Send + Unpin),
    limit: usize,
    initial: usize,
) -> std::io::Result<Vec<u8>> {
    let mut buf: Vec<u8> = Vec::with_capacity(initial.clamp(1, limit.max(1)));
    while buf.len() < limit {
        if buf.len() == buf.capacity() {
            let grow = buf.capacity().min(limit - buf.len());
            buf.reserve_exact(grow);
        }
        // Into the spare capacity, without zeroing it first, and never past `limit`.
        let left = (limit - buf.len()) as u64;
        if (&mut *r).take(left).read_buf(&mut buf).await? == 0 {
            break;
        }
    }
    Ok(buf)
}

/// Reads until `buf` is full or the input ends.
async fn fill(r: &mut (dyn AsyncRead + Send + Unpin), buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]).await? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Seals one part on the blocking pool: `prefix` (the header, for part 1), then the part's
/// frames with `plaintext` placed in them.
async fn seal(part: PartSealer, plaintext: Vec<u8>, prefix: Vec<u8>) -> Result<Vec<u8>> {
    tokio::task::spawn_blocking(move || {
        let mut buf = prefix;
        let start = buf.len();
        buf.resize(start + part.sealed_len(), 0);
        let mut off = 0;
        for r in part.plaintext_ranges() {
            let n = r.len();
            buf[start + r.start..start + r.end].copy_from_slice(&plaintext[off..off + n]);
            off += n;
        }
        part.seal(&mut buf[start..])?;
        Ok(buf)
    })
    .await
    .map_err(Error::from)?
}

impl Upload {
    /// Plaintext bytes per part: whole frames, at least S3's minimum part once sealed, and large
    /// enough for a known size to fit in 10,000 parts.
    fn part_plaintext(&self, frame: usize) -> usize {
        let t = self.client.inner.transfer;
        let slot = frame + s3crypt_core::key::REGULAR_OVERHEAD;
        let mut frames = (t.part_size / frame).max(1);
        frames = frames.max(MIN_PART.div_ceil(slot));
        if let Some(n) = self.size_hint {
            let needed = n
                .div_ceil(u64::from(MAX_PARTS as u32 - 1))
                .div_ceil(frame as u64);
            frames = frames.max(usize::try_from(needed).unwrap_or(usize::MAX));
        }
        // Never above S3's largest part (a size hint beyond S3's largest object then fails at
        // the 10,001st part rather than allocating a giant buffer).
        frames.min(((MAX_PART - (1 << 20)) / slot).max(1)) * frame
    }

    /// The plaintext length of part `n` (1-based). For inputs of unknown length the part size
    /// doubles every 1,000 parts, so that a stream fits in 10,000 parts (up to S3's 5 GiB part
    /// limit); memory grows with it (concurrency × part size). Known sizes keep one part size.
    fn grown(&self, base: usize, n: i32, frame: usize) -> usize {
        if self.size_hint.is_some() {
            return base;
        }
        let slot = frame + s3crypt_core::key::REGULAR_OVERHEAD;
        let max = ((MAX_PART - (1 << 20)) / slot).max(1) * frame;
        let doublings = ((n.max(1) - 1) / 1000).min(20) as u32;
        base.saturating_mul(1usize << doublings)
            .min(max)
            .max(base.min(max))
    }

    /// Requests the data key, then sends `first` with one PUT if it is the whole body (at most
    /// `threshold` bytes), else a multipart upload of `first` and the rest of `body`.
    ///
    /// The data key is requested only now, after the first read: a body that fits in one PUT
    /// has a known length even when the caller declared none, so a caching keyring can serve it.
    async fn start(
        mut self,
        put: HeaderParts,
        first: Vec<u8>,
        body: Option<Box<dyn AsyncRead + Send + Unpin>>,
        part_len: usize,
        threshold: usize,
        cancel: &mut Cancel,
    ) -> Result<PutOutput> {
        let n = first.len();
        let whole = n <= threshold;
        let declared = match self.size_hint {
            Some(h) => Some(h),
            None if whole => Some(n as u64),
            None => None,
        };
        let inner = &self.client.inner;
        let mut context = put.context;
        let binding = put.binding.unwrap_or(inner.binding);
        location::bind_with(&mut context, &self.bucket, &self.key, binding)?;
        let opts = EncryptOptions {
            suite: self.encryption.suite,
            frame_length: self.encryption.frame_length,
            context,
            // Lets a caching keyring account for this message's bytes.
            plaintext_length: declared,
        };
        let keyring = put.keyring.unwrap_or_else(|| inner.keyring.clone());
        // Wrapping the data key may block (a remote keyring): keep it off the async threads.
        let enc = tokio::select! {
            r = tokio::task::spawn_blocking(move || Encryptor::new(keyring.as_ref(), &opts)) => r??,
            () = &mut *cancel => return Err(Error::Cancelled),
        };
        let sealer = MessageSealer::new(enc)?;
        self.meta = metadata::for_new_object(
            self.encryption.suite,
            self.encryption.frame_length,
            sealer.header().len(),
            put.content_type.as_deref(),
            &put.metadata,
        );
        self.header_length = sealer.header().len() as u64;
        let mut out = match body {
            Some(mut body) if !whole => {
                self.multipart(sealer, first, part_len, body.as_mut(), cancel)
                    .await?
            }
            _ => self.single(sealer, first).await?,
        };
        out.length_declared = declared.is_some();
        Ok(out)
    }

    async fn multipart(
        &self,
        sealer: MessageSealer,
        first: Vec<u8>,
        part_len: usize,
        body: &mut (dyn AsyncRead + Send + Unpin),
        cancel: &mut Cancel,
    ) -> Result<PutOutput> {
        let s3 = &self.client.inner.s3;
        let created = s3.create_multipart_upload();
        let created = crate::sse_c::with_sse_c!(created, self.sse.as_deref())
            .bucket(&self.bucket)
            .key(&self.key)
            .set_server_side_encryption(self.options.server_side_encryption.clone())
            .set_ssekms_key_id(self.options.sse_kms_key_id.clone())
            .set_storage_class(self.options.storage_class.clone())
            .set_object_lock_mode(self.options.object_lock_mode.clone())
            .set_object_lock_retain_until_date(self.options.object_lock_retain_until)
            .set_metadata(Some(self.meta.clone()))
            .content_type("application/octet-stream")
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .send()
            .await
            .map_err(|e| service("CreateMultipartUpload", e))?;
        let (guard, upload_id) = AbortOnDrop::started(s3, &self.bucket, &self.key, &created)?;
        let mut slot = Some(sealer);
        let mut tasks: JoinSet<Result<CompletedPart>> = JoinSet::new();
        let result = tokio::select! {
            r = self.parts(&mut slot, &mut tasks, first, part_len, body, &upload_id) => r,
            () = &mut *cancel => Err(Error::Cancelled),
        };
        guard.settle(result.is_err(), &mut tasks).await;
        result
    }

    async fn single(&self, sealer: MessageSealer, plaintext: Vec<u8>) -> Result<PutOutput> {
        let frame = sealer.frame_length() as usize;
        let header = sealer.header().to_vec();
        let plaintext_length = plaintext.len() as u64;
        let (part, mut tail) =
            sealer.last_part(plaintext.len() / frame, plaintext.len() % frame)?;
        let mut body = seal(part, plaintext, header.clone()).await?;
        tail.absorb(&body[header.len()..]);
        body.extend(tail.finish()?);
        let size = body.len() as u64;
        let req = self.client.inner.s3.put_object();
        let out = crate::sse_c::with_sse_c!(req, self.sse.as_deref())
            .bucket(&self.bucket)
            .key(&self.key)
            .set_server_side_encryption(self.options.server_side_encryption.clone())
            .set_ssekms_key_id(self.options.sse_kms_key_id.clone())
            .set_storage_class(self.options.storage_class.clone())
            .set_object_lock_mode(self.options.object_lock_mode.clone())
            .set_object_lock_retain_until_date(self.options.object_lock_retain_until)
            .set_metadata(Some(self.meta.clone()))
            .content_type("application/octet-stream")
            .set_if_match(self.if_match.clone())
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| service("PutObject", e))?;
        Ok(PutOutput {
            plaintext_length,
            size,
            parts: 1,
            etag: out.e_tag().map(str::to_owned),
            version_id: out.version_id().map(str::to_owned),
            header_length: self.header_length,
            length_declared: false,
        })
    }

    async fn parts(
        &self,
        sealer: &mut Option<MessageSealer>,
        tasks: &mut JoinSet<Result<CompletedPart>>,
        first: Vec<u8>,
        part_len: usize,
        body: &mut (dyn AsyncRead + Send + Unpin),
        upload_id: &str,
    ) -> Result<PutOutput> {
        let inner = &self.client.inner;
        let concurrency = inner.transfer.concurrency;
        let signed = self.encryption.suite.is_signed();
        let frame = self.encryption.frame_length as usize;
        let target = PartTarget {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: self.key.clone(),
            upload_id: upload_id.to_owned(),
            sse: self.sse.clone(),
            pool: self.pool.clone(),
        };
        let mut completed = Vec::new();
        let mut input = Input {
            carry: first,
            pos: 0,
            body,
        };
        let slot = frame + REGULAR_OVERHEAD;
        let mut part_number: i32 = 0;
        let mut plaintext_total = 0u64;
        let mut size = 0u64;
        loop {
            let part_len = self.grown(part_len, part_number + 1, frame);
            let frames = part_len / frame;
            part_number += 1;
            if part_number > MAX_PARTS {
                return Err(Error::InvalidArgument(
                    "the object needs more than 10,000 parts: use a larger part size".into(),
                ));
            }
            // Bounded memory: wait for a slot before taking another buffer.
            while tasks.len() >= concurrency {
                completed.push(join(tasks).await?);
            }
            let Some(s) = sealer.as_mut() else {
                return Err(Error::Internal("sealer used up".into()));
            };
            let prefix = if part_number == 1 {
                s.header().len()
            } else {
                0
            };
            let mut buf = self.pool.get(prefix + frames * slot);
            buf[..prefix].copy_from_slice(&s.header()[..prefix]);
            // The plaintext is read straight into its frames' slots and sealed in place.
            let mut n = 0;
            for i in 0..frames {
                let at = prefix + i * slot + REGULAR_PREFIX;
                let k = input.fill(&mut buf[at..at + frame]).await?;
                n += k;
                if k < frame {
                    break;
                }
            }
            plaintext_total += n as u64;
            if n < part_len || !input.more().await? {
                let s = sealer
                    .take()
                    .ok_or_else(|| Error::Internal("sealer used up".into()))?;
                let (k, r) = (n / frame, n % frame);
                let (part, mut tail) = s.last_part(k, r)?;
                let len = prefix + part.sealed_len();
                if len > buf.len() {
                    buf.resize(len, 0);
                }
                // The final frame's header is longer than a regular one: move its plaintext.
                let at = prefix + k * slot;
                buf.copy_within(
                    at + REGULAR_PREFIX..at + REGULAR_PREFIX + r,
                    at + FINAL_PREFIX,
                );
                buf.truncate(len);
                let bytes = blocking(move || {
                    part.seal(&mut buf[prefix..])?;
                    tail.absorb(&buf[prefix..]);
                    buf.extend(tail.finish()?);
                    Ok(buf)
                })
                .await?;
                size += bytes.len() as u64;
                tasks.spawn(upload_part(target.clone(), part_number, bytes));
                break;
            }
            let part = s.part(frames)?;
            size += buf.len() as u64;
            if signed {
                // The signature hashes the message in order: seal and hash here, in order (on the
                // blocking pool: hashing a part is CPU work too).
                let mut s = sealer
                    .take()
                    .ok_or_else(|| Error::Internal("sealer used up".into()))?;
                let (s, bytes) = blocking(move || {
                    part.seal(&mut buf[prefix..])?;
                    s.absorb(&buf[prefix..]);
                    Ok((s, buf))
                })
                .await?;
                *sealer = Some(s);
                tasks.spawn(upload_part(target.clone(), part_number, bytes));
            } else {
                let target = target.clone();
                tasks.spawn(async move {
                    let bytes = blocking(move || {
                        part.seal(&mut buf[prefix..])?;
                        Ok(buf)
                    })
                    .await?;
                    upload_part(target, part_number, bytes).await
                });
            }
        }
        while !tasks.is_empty() {
            completed.push(join(tasks).await?);
        }
        completed.sort_by_key(|p| p.part_number());
        let req = inner.s3.complete_multipart_upload();
        let out = crate::sse_c::with_sse_c!(req, self.sse.as_deref())
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(upload_id)
            .set_if_match(self.if_match.clone())
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| service("CompleteMultipartUpload", e))?;
        Ok(PutOutput {
            plaintext_length: plaintext_total,
            size,
            parts: part_number as u32,
            etag: out.e_tag().map(str::to_owned),
            version_id: out.version_id().map(str::to_owned),
            header_length: self.header_length,
            length_declared: false,
        })
    }
}

/// Runs CPU work (sealing, hashing) on the blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(Error::from)?
}

/// The rest of the input: what was read ahead (`carry[pos..]`), then `body`.
struct Input<'a> {
    carry: Vec<u8>,
    pos: usize,
    body: &'a mut (dyn AsyncRead + Send + Unpin),
}

impl Input<'_> {
    /// Fills `buf` unless the input ends first; returns the bytes placed.
    async fn fill(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut n = 0;
        if self.pos < self.carry.len() {
            n = buf.len().min(self.carry.len() - self.pos);
            buf[..n].copy_from_slice(&self.carry[self.pos..self.pos + n]);
            self.pos += n;
            if self.pos == self.carry.len() {
                self.carry = Vec::new();
                self.pos = 0;
            }
        }
        Ok(n + fill(self.body, &mut buf[n..]).await?)
    }

    /// Whether any input is left (reads one byte ahead to know).
    async fn more(&mut self) -> std::io::Result<bool> {
        if self.pos < self.carry.len() {
            return Ok(true);
        }
        let mut b = [0u8; 1];
        if fill(self.body, &mut b).await? == 0 {
            return Ok(false);
        }
        self.carry = b.to_vec();
        self.pos = 0;
        Ok(true)
    }
}

/// Recycles part buffers, so a transfer allocates at most `concurrency + 1` of them once
/// (instead of one per part, which costs page faults and, with glibc's adaptive mmap threshold,
/// leaves freed buffers resident in per-thread arenas).
#[derive(Clone, Default)]
struct Pool(std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>);

impl Pool {
    /// A buffer of `len` bytes. A recycled one keeps its old contents (every byte is
    /// overwritten before it is sent), so no time is spent zeroing it.
    fn get(&self, len: usize) -> Vec<u8> {
        let mut v = self
            .0
            .lock()
            .ok()
            .and_then(|mut p| p.pop())
            .unwrap_or_default();
        v.resize(len, 0);
        v
    }

    fn put(&self, v: Vec<u8>) {
        if let Ok(mut p) = self.0.lock() {
            p.push(v);
        }
    }
}

/// The next finished part (parts run as tasks of a `JoinSet`).
pub(crate) async fn join(tasks: &mut JoinSet<Result<CompletedPart>>) -> Result<CompletedPart> {
    match tasks.join_next().await {
        Some(Ok(r)) => r,
        Some(Err(e)) => Err(e.into()),
        None => Err(Error::InvalidArgument("no part in flight".into())),
    }
}

/// Aborts a multipart upload when dropped while armed (`s3` is `Some`).
pub(crate) struct AbortOnDrop {
    s3: Option<aws_sdk_s3::Client>,
    bucket: String,
    key: String,
    upload_id: String,
}

impl AbortOnDrop {
    /// The id of the multipart upload `created` started, and a guard that aborts it if the
    /// uploading future is dropped before [`AbortOnDrop::settle`] (a timeout, a cancelled task).
    pub(crate) fn started(
        s3: &aws_sdk_s3::Client,
        bucket: &str,
        key: &str,
        created: &aws_sdk_s3::operation::create_multipart_upload::CreateMultipartUploadOutput,
    ) -> Result<(Self, String)> {
        let upload_id = created
            .upload_id()
            .ok_or_else(|| Error::bad_response("CreateMultipartUpload", "no upload id"))?
            .to_owned();
        let guard = Self {
            s3: Some(s3.clone()),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            upload_id: upload_id.clone(),
        };
        Ok((guard, upload_id))
    }

    /// Once the parts ran: if they `failed`, stops the parts still in flight (so none lands
    /// after the abort) and aborts the upload, awaited. Best effort: the parts must not linger
    /// (and cost money), but if the abort itself fails the caller's error is still the one
    /// reported. Either way the guard is disarmed.
    pub(crate) async fn settle(mut self, failed: bool, tasks: &mut JoinSet<Result<CompletedPart>>) {
        let Some(s3) = self.s3.take() else { return };
        if failed {
            tasks.shutdown().await;
            let _ = s3
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&self.key)
                .upload_id(&self.upload_id)
                .send()
                .await;
        }
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        let Some(s3) = self.s3.take() else { return };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (bucket, key, id) = (
                std::mem::take(&mut self.bucket),
                std::mem::take(&mut self.key),
                std::mem::take(&mut self.upload_id),
            );
            rt.spawn(async move {
                let _ = s3
                    .abort_multipart_upload()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(id)
                    .send()
                    .await;
            });
        }
    }
}

/// Where parts go.
#[derive(Clone)]
struct PartTarget {
    client: Client,
    bucket: String,
    key: String,
    upload_id: String,
    sse: Option<std::sync::Arc<crate::sse_c::SseCKey>>,
    pool: Pool,
}

async fn upload_part(t: PartTarget, part_number: i32, bytes: Vec<u8>) -> Result<CompletedPart> {
    let bytes = bytes::Bytes::from(bytes);
    let keep = bytes.clone();
    let result = send_part(&t, part_number, bytes).await;
    // The SDK dropped its references once the request finished: the buffer goes back to the pool.
    if let Ok(b) = keep.try_into_mut() {
        t.pool.put(Vec::from(b));
    }
    result
}

async fn send_part(t: &PartTarget, part_number: i32, bytes: bytes::Bytes) -> Result<CompletedPart> {
    let req = t.client.inner.s3.upload_part();
    let out = crate::sse_c::with_sse_c!(req, t.sse.as_deref())
        .bucket(&t.bucket)
        .key(&t.key)
        .upload_id(&t.upload_id)
        .part_number(part_number)
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .body(ByteStream::from(bytes))
        .send()
        .await
        .map_err(|e| service("UploadPart", e))?;
    Ok(CompletedPart::builder()
        .part_number(part_number)
        .set_e_tag(out.e_tag().map(str::to_owned))
        .set_checksum_crc32(out.checksum_crc32().map(str::to_owned))
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_read_grows_with_the_data_and_stops_at_its_limit() {
        let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        // Shorter than the limit: all of it, in a buffer about its size.
        let got = read_up_to(&mut &data[..1000], 1 << 20, 64).await.unwrap();
        assert_eq!(got, &data[..1000]);
        assert!(got.capacity() <= 1024, "{}", got.capacity());
        // Longer: exactly the limit, and never a buffer larger than it.
        for initial in [1, 64 << 10, 1 << 30] {
            let got = read_up_to(&mut &data[..], 70_000, initial).await.unwrap();
            assert_eq!(got, &data[..70_000]);
            assert!(got.capacity() <= 70_000, "{}", got.capacity());
        }
        // Empty input.
        assert!(read_up_to(&mut &data[..0], 10, 64)
            .await
            .unwrap()
            .is_empty());
    }
}
