//! What an upload takes besides its body (S3-side storage options) and what it reports.

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
    /// [`crate::Body::with_length`] or [`super::PutObject::size_hint`]) longer than the multipart
    /// threshold, whose data key was then not cached.
    pub length_declared: bool,
}
