//! The client: an `aws_sdk_s3::Client`, a keyring, and transfer settings.

use std::sync::Arc;

use s3crypt_core::{Keyring, Suite};

use crate::download::GetObject;
use crate::error::{service, Error, Result};
use crate::metadata::{self, ObjectInfo};
use crate::upload::PutObject;

/// How transfers are cut and how many run at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transfer {
    /// Plaintext bytes per multipart part, rounded to whole frames (default 16 MiB; every part
    /// but the last holds at least 5 MiB, as S3 requires).
    pub part_size: usize,
    /// Objects whose plaintext is at most this long are sent with one PUT (default 16 MiB).
    pub multipart_threshold: usize,
    /// Parts in flight at once per upload (default 8). Memory is about
    /// `(concurrency + 1) × part_size` per upload; part buffers are recycled.
    pub concurrency: usize,
    /// Ranged GETs in flight at once per download (default 16). Ranges are at most 8 MiB (less
    /// when `part_size` is smaller), so memory is about
    /// `(download_concurrency + 4) × min(part_size, 8 MiB)` per download, about what an upload
    /// holds; buffers are recycled. More ranges than parts because a GET's throughput is bound
    /// by the server's per-stream rate, and its buffers are half an upload part's size.
    pub download_concurrency: usize,
}

impl Default for Transfer {
    fn default() -> Self {
        Self {
            part_size: 16 << 20,
            multipart_threshold: 16 << 20,
            concurrency: 8,
            download_concurrency: 16,
        }
    }
}

/// What new objects are encrypted with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encryption {
    /// Algorithm suite (default 0x0478).
    pub suite: Suite,
    /// Plaintext bytes per frame (default 64 KiB).
    pub frame_length: u32,
}

impl Default for Encryption {
    fn default() -> Self {
        Self {
            suite: Suite::DEFAULT,
            frame_length: s3crypt_core::DEFAULT_FRAME_LENGTH,
        }
    }
}

pub(crate) struct Inner {
    pub(crate) s3: aws_sdk_s3::Client,
    pub(crate) keyring: Arc<dyn Keyring>,
    pub(crate) transfer: Transfer,
    pub(crate) encryption: Encryption,
    pub(crate) sse_c: Option<Arc<dyn crate::sse_c::SseCSource>>,
    pub(crate) binding: crate::location::Binding,
}

/// An encrypting S3 client. Cheap to clone and safe to share across tasks; CPU work (sealing and
/// opening frames, key wrapping) runs on tokio's blocking pool, never on the async threads.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("keyring", &self.inner.keyring)
            .field("transfer", &self.inner.transfer)
            .field("encryption", &self.inner.encryption)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Client`].
#[derive(Debug)]
pub struct ClientBuilder {
    s3: aws_sdk_s3::Client,
    keyring: Arc<dyn Keyring>,
    transfer: Transfer,
    encryption: Encryption,
    sse_c: Option<Arc<dyn crate::sse_c::SseCSource>>,
    binding: crate::location::Binding,
}

impl ClientBuilder {
    /// How new objects are bound to their location and what reads require (default: bucket
    /// and key; see [`crate::location::Binding`] before choosing the bucket only).
    pub fn location_binding(mut self, b: crate::location::Binding) -> Self {
        self.binding = b;
        self
    }

    /// Where SSE-C keys come from (needed for `sse_c(true)` on puts and gets).
    pub fn sse_c(mut self, source: Arc<dyn crate::sse_c::SseCSource>) -> Self {
        self.sse_c = Some(source);
        self
    }

    /// Transfer settings.
    pub fn transfer(mut self, t: Transfer) -> Self {
        self.transfer = t;
        self
    }

    /// Encryption settings for new objects.
    pub fn encryption(mut self, e: Encryption) -> Self {
        self.encryption = e;
        self
    }

    /// The client.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a frame length that is not a non-zero multiple of 16, or
    /// zero concurrency.
    pub fn build(self) -> Result<Client> {
        let opts = s3crypt_core::EncryptOptions {
            suite: self.encryption.suite,
            frame_length: self.encryption.frame_length,
            ..Default::default()
        };
        opts.validate()?;
        if self.transfer.concurrency == 0 || self.transfer.download_concurrency == 0 {
            return Err(Error::InvalidArgument(
                "concurrency and download_concurrency must be at least 1".into(),
            ));
        }
        Ok(Client {
            inner: Arc::new(Inner {
                s3: crate::sse_c::guarded(self.s3),
                keyring: self.keyring,
                transfer: self.transfer,
                encryption: self.encryption,
                sse_c: self.sse_c,
                binding: self.binding,
            }),
        })
    }
}

impl Client {
    /// A client configured from the standard AWS environment (profiles, environment variables,
    /// region, `AWS_ENDPOINT_URL`); path-style addressing when an endpoint URL is set.
    pub async fn from_env(keyring: Arc<dyn Keyring>) -> Self {
        let conf = aws_config::load_from_env().await;
        let path_style = std::env::var_os("AWS_ENDPOINT_URL").is_some()
            || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
        let s3conf = s3_config(&conf, path_style);
        Client {
            inner: Arc::new(Inner {
                s3: crate::sse_c::guarded(aws_sdk_s3::Client::from_conf(s3conf)),
                keyring,
                transfer: Transfer::default(),
                encryption: Encryption::default(),
                sse_c: None,
                binding: Default::default(),
            }),
        }
    }

    /// A builder over the caller's own `aws_sdk_s3::Client`.
    pub fn builder(s3: aws_sdk_s3::Client, keyring: Arc<dyn Keyring>) -> ClientBuilder {
        ClientBuilder {
            s3,
            keyring,
            transfer: Transfer::default(),
            encryption: Encryption::default(),
            sse_c: None,
            binding: Default::default(),
        }
    }

    /// The same client with other transfer settings.
    pub(crate) fn with_transfer(&self, transfer: Transfer) -> Client {
        let i = &self.inner;
        Client {
            inner: Arc::new(Inner {
                s3: i.s3.clone(),
                keyring: i.keyring.clone(),
                transfer,
                encryption: i.encryption,
                sse_c: i.sse_c.clone(),
                binding: i.binding,
            }),
        }
    }

    /// The underlying S3 client.
    pub fn s3(&self) -> &aws_sdk_s3::Client {
        &self.inner.s3
    }

    /// Encrypts and uploads an object: `client.put_object().bucket(b).key(k).body(reader).send()`.
    pub fn put_object(&self) -> PutObject {
        PutObject::new(self.clone())
    }

    /// Copies, moves or rewraps an object, re-encrypting it under a new data key and message id
    /// (or copying it byte for byte when its header stays the same; see [`crate::CopyObject`]).
    pub fn copy_object(&self) -> crate::copy::CopyObject {
        crate::copy::CopyObject::new(self.clone())
    }

    /// Downloads and decrypts an object (or a plaintext byte range of it).
    pub fn get_object(&self) -> GetObject {
        GetObject::new(self.clone())
    }

    /// Reads an object's s3crypt metadata with a HEAD request:
    /// `client.head_object().bucket(b).key(k).send()`.
    pub fn head_object(&self) -> crate::head::HeadObject {
        crate::head::HeadObject::new(self.clone())
    }

    /// HEAD with an optional SSE-C key.
    pub(crate) async fn head_with(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        sse: Option<&crate::sse_c::SseCKey>,
    ) -> Result<ObjectInfo> {
        let out = self.head_raw(bucket, key, version_id, sse).await?;
        let size = out
            .content_length()
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0);
        metadata::parse(
            bucket,
            key,
            size,
            out.metadata(),
            out.e_tag(),
            out.version_id(),
        )
    }
}

impl Client {
    /// HEAD with an optional SSE-C key, whatever the object holds.
    pub(crate) async fn head_raw(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        sse: Option<&crate::sse_c::SseCKey>,
    ) -> Result<aws_sdk_s3::operation::head_object::HeadObjectOutput> {
        let req = self
            .inner
            .s3
            .head_object()
            .bucket(bucket)
            .key(key)
            .set_version_id(version_id.map(str::to_owned));
        crate::sse_c::with_sse_c!(req, sse)
            .send()
            .await
            .map_err(|e| not_found_or(bucket, key, service("HeadObject", e)))
    }
}

/// How long a request may wait for its response (the request body's upload included) when the
/// environment sets no read timeout: long enough for a 16 MiB part over a slow uplink, short
/// enough that a server which stops answering is retried rather than waited on forever.
pub const DEFAULT_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// The S3 configuration s3crypt uses for an SDK configuration: `path_style` addressing for
/// S3-compatible endpoints, and [`DEFAULT_READ_TIMEOUT`] unless a read timeout is configured.
/// Retries (standard mode, `AWS_MAX_ATTEMPTS`) and stalled-stream protection are the SDK's.
pub fn s3_config(conf: &aws_config::SdkConfig, path_style: bool) -> aws_sdk_s3::Config {
    let mut b = aws_sdk_s3::config::Builder::from(conf).force_path_style(path_style);
    let timeouts = conf.timeout_config().cloned();
    if timeouts.as_ref().and_then(|t| t.read_timeout()).is_none() {
        let mut t = timeouts.map(|t| t.to_builder()).unwrap_or_default();
        t.set_read_timeout(Some(DEFAULT_READ_TIMEOUT));
        b = b.timeout_config(t.build());
    }
    b.build()
}

/// Maps a 404 to [`Error::NotFound`].
pub(crate) fn not_found_or(bucket: &str, key: &str, e: Error) -> Error {
    match e {
        Error::Service {
            status: Some(404), ..
        } => Error::NotFound {
            bucket: bucket.into(),
            key: key.into(),
        },
        other => other,
    }
}
