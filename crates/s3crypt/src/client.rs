//! The client (an `aws_sdk_s3::Client`, a keyring, transfer and encryption settings, shared by
//! every operation through one `Arc`) and its builder; each method starts an operation.

use std::sync::Arc;

use s3crypt_core::Keyring;

use crate::error::{Error, Result};
use crate::ops::copy::CopyObject;
use crate::ops::get::GetObject;
use crate::ops::head::HeadObject;
use crate::ops::list::{DeleteObject, ListObjects};
use crate::ops::put::PutObject;
use crate::settings::{Encryption, Transfer};
use crate::shared::Shared;

/// An encrypting S3 client. Cheap to clone and safe to share across tasks; CPU work (sealing and
/// opening frames, key wrapping) runs on tokio's blocking pool, never on the async threads.
///
/// Make one with [`crate::from_env`] (the AWS environment, like `aws_config::load_from_env`) or
/// [`Client::builder`] (your own `aws_sdk_s3::Client`).
#[derive(Clone)]
pub struct Client {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("keyring", &self.shared.keyring)
            .field("transfer", &self.shared.transfer)
            .field("encryption", &self.shared.encryption)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Client`] over your own `aws_sdk_s3::Client`:
/// `Client::builder().s3_client(s3).keyring(k).build()`.
#[derive(Debug, Default)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct ClientBuilder {
    s3: Option<aws_sdk_s3::Client>,
    keyring: Option<Arc<dyn Keyring>>,
    transfer: Transfer,
    encryption: Encryption,
    sse_c: Option<Arc<dyn crate::sse_c::SseCSource>>,
    pub(crate) binding: crate::location::Binding,
}

impl ClientBuilder {
    /// The S3 client requests go through (required). Configure path-style addressing, timeouts
    /// and retries on it; [`crate::from_env`] does that for you.
    pub fn s3_client(mut self, s3: aws_sdk_s3::Client) -> Self {
        self.s3 = Some(s3);
        self
    }

    /// Who can decrypt (required): a [`crate::LocalKeyring`], a `KmsKeyring`, a
    /// [`crate::MultiKeyring`] of several, a [`crate::CachingKeyring`] around any of them, or an
    /// `Arc` of one.
    pub fn keyring(mut self, keyring: impl Keyring + 'static) -> Self {
        self.keyring = Some(Arc::new(keyring));
        self
    }

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
    /// [`Error::InvalidArgument`] without an S3 client or a keyring, for zero concurrency or
    /// part size; [`Error::Crypto`] for a frame length that is not a non-zero multiple of 16.
    pub fn build(self) -> Result<Client> {
        self.encryption.validate()?;
        self.transfer.validate()?;
        let s3 = self.s3.ok_or_else(|| {
            Error::InvalidArgument("Client::builder() needs an S3 client (.s3_client)".into())
        })?;
        let keyring = self.keyring.ok_or_else(|| {
            Error::InvalidArgument("Client::builder() needs a keyring (.keyring)".into())
        })?;
        Ok(Client {
            shared: Arc::new(Shared {
                s3: crate::sse_c::guarded(s3),
                keyring,
                transfer: self.transfer,
                encryption: self.encryption,
                sse_c: self.sse_c,
                binding: self.binding,
            }),
        })
    }
}

impl Client {
    /// A builder over the caller's own `aws_sdk_s3::Client`:
    /// `Client::builder().s3_client(s3).keyring(k).build()`.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// The underlying S3 client.
    pub fn s3(&self) -> &aws_sdk_s3::Client {
        &self.shared.s3
    }

    /// Encrypts and uploads an object: `client.put_object().bucket(b).key(k).body(data).send()`.
    pub fn put_object(&self) -> PutObject {
        PutObject::new(self.shared.clone())
    }

    /// Downloads and decrypts an object (or a plaintext byte range of it).
    pub fn get_object(&self) -> GetObject {
        GetObject::new(self.shared.clone())
    }

    /// Copies, moves or rewraps an object, re-encrypting it under a new data key and message id
    /// (or copying it byte for byte when its header stays the same; see [`CopyObject`]).
    pub fn copy_object(&self) -> CopyObject {
        CopyObject::new(self.shared.clone())
    }

    /// Reads an object's s3crypt metadata with a HEAD request:
    /// `client.head_object().bucket(b).key(k).send()`.
    pub fn head_object(&self) -> HeadObject {
        HeadObject::new(self.shared.clone())
    }

    /// Lists the objects under a prefix, a page at a time, with their plaintext sizes where the
    /// listing gives them: `client.list_objects().bucket(b).prefix(p).send()?`.
    pub fn list_objects(&self) -> ListObjects {
        ListObjects::new(self.shared.clone())
    }

    /// Every bucket the credentials can list, with creation dates.
    ///
    /// # Errors
    /// [`Error::Service`], [`Error::Transport`].
    pub async fn list_buckets(&self) -> Result<Vec<crate::ops::buckets::BucketEntry>> {
        crate::ops::buckets::list(&self.shared).await
    }

    /// Creates a bucket in the client's region.
    ///
    /// # Errors
    /// [`Error::Service`] (the name is taken, invalid, ...).
    pub async fn create_bucket(&self, bucket: &str) -> Result<()> {
        crate::ops::buckets::create(&self.shared, bucket).await
    }

    /// Whether `bucket` exists (HeadBucket): to tell a missing bucket from a missing key after
    /// a HEAD of an object answered 404 ([`Error::NotFound`]), which says neither.
    ///
    /// # Errors
    /// [`Error::Service`] (e.g. 403), [`Error::Transport`].
    pub async fn bucket_exists(&self, bucket: &str) -> Result<bool> {
        crate::ops::buckets::exists(&self.shared, bucket).await
    }

    /// Deletes an empty bucket.
    ///
    /// # Errors
    /// [`Error::NoSuchBucket`]; [`Error::Service`] (`BucketNotEmpty`, ...).
    pub async fn delete_bucket(&self, bucket: &str) -> Result<()> {
        crate::ops::buckets::delete(&self.shared, bucket).await
    }

    /// Deletes many objects, 1,000 per DeleteObjects request:
    /// `client.delete_objects().bucket(b).keys(keys).send()`.
    pub fn delete_objects(&self) -> crate::ops::buckets::DeleteObjects {
        crate::ops::buckets::DeleteObjects::new(self.shared.clone())
    }

    /// Reads the header of every object under `prefix` (and of every version, where the bucket
    /// keeps versions) and reports the message ids held by more than one of them (advisory
    /// S3C-2026-01; see [`crate::audit`]). Requests: the listing, then a HEAD and a ranged GET of
    /// the header per object (two if the header is over 4 KiB), 16 at a time. Headers are read
    /// from the object's first bytes, whatever its metadata says. With `sse_c`, each object is
    /// read with the client's SSE-C keys, or without SSE-C if S3 refuses them all. No key is
    /// needed: nothing is decrypted.
    ///
    /// # Errors
    /// [`Error::Service`] if the listing fails. Objects that cannot be read are reported in
    /// [`crate::audit::MessageIdScan::skipped`], not as errors; objects that are not messages
    /// are counted in [`crate::audit::MessageIdScan::not_messages`].
    pub async fn scan_message_ids(
        &self,
        bucket: &str,
        prefix: &str,
        sse_c: bool,
    ) -> Result<crate::audit::MessageIdScan> {
        crate::ops::audit::scan_message_ids(&self.shared, bucket, prefix, sse_c).await
    }

    /// Deletes an object (or one version of it): `client.delete_object().bucket(b).key(k).send()`.
    pub fn delete_object(&self) -> DeleteObject {
        DeleteObject::new(self.shared.clone())
    }
}
