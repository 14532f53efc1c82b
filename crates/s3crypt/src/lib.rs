//! # s3crypt
//!
//! Client-side encryption for Amazon S3 and S3-compatible stores. Objects are encrypted before
//! they leave the machine, as **AWS Encryption SDK messages, version 2** (see `s3crypt-core`), so
//! any AWS Encryption SDK can decrypt them given the key.
//!
//! * [`Client::put_object`]: one PUT for small objects, parallel multipart (sealed on the blocking
//!   pool, bounded memory) above the threshold; aborted on failure or cancellation.
//! * [`Client::get_object`]: parallel ranged GETs, streamed in order or written into a file at
//!   their offsets as they verify ([`PlaintextStream::write_at`]), or only the frames a
//!   plaintext [`ByteRange`] needs; only authenticated plaintext is released.
//! * Every object's bucket and key are bound into its authenticated encryption context
//!   ([`location`]), so objects cannot be swapped by someone without the key (or, if the client
//!   opts into [`location::Binding::Bucket`] for data-key caching, only its bucket).
//! * [`Client::copy_object`]: copy, move or rewrap (change who can decrypt), re-encrypting under
//!   a new data key and message id (S3 copies byte for byte when the header stays the same).
//! * [`Client::scan_message_ids`]: find objects affected by advisory S3C-2026-01.
//! * [`Client::list_objects`], [`Client::delete_object`], [`Client::head_object`]: the rest of
//!   what a service needs, in the same shape.
//! * [`from_env`] (a [`Loader`] in the AWS SDK's style) or [`Client::builder`] (your own
//!   `aws_sdk_s3::Client`) make a [`Client`]; [`Body`] is what uploads read.
//! * [`metadata`]: what s3crypt stores beside the object (nothing secret).
//!
//! ```no_run
//! # async fn demo() -> Result<(), s3crypt::Error> {
//! use std::sync::Arc;
//! use s3crypt::{Body, LocalKeyring};
//!
//! // From the standard AWS environment, like `aws_config::load_from_env()`.
//! let client = s3crypt::from_env()
//!     .keyring(LocalKeyring::load("team.keyring".as_ref())?)
//!     .load()
//!     .await?;
//! client.put_object().bucket("my-bucket").key("report.pdf")
//!     .body(Body::from_path("report.pdf")).send().await?;
//! client.put_object().bucket("my-bucket").key("hello.txt").body("hello").send().await?;
//! // All of it in memory, once it verified:
//! let out = client.get_object().bucket("my-bucket").key("hello.txt").send().await?;
//! assert_eq!(&out.body.collect().await?[..], b"hello");
//! // A stream, in order (to stdout, a socket, ...):
//! let out = client.get_object().bucket("my-bucket").key("report.pdf").send().await?;
//! out.body.write_to(&mut tokio::io::stdout()).await?;
//! // Into a file, pieces written at their offsets as they verify (fastest for large objects).
//! // On error the file holds part of the plaintext: write under a temporary name, rename after.
//! let out = client.get_object().bucket("my-bucket").key("report.pdf").send().await?;
//! let file = Arc::new(std::fs::File::create("report.pdf.partial")?);
//! match out.body.write_at(file, |_| {}).await {
//!     Ok(_) => std::fs::rename("report.pdf.partial", "report.copy.pdf")?,
//!     Err(e) => {
//!         let _ = std::fs::remove_file("report.pdf.partial");
//!         return Err(e);
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Errors say whose fault they are ([`Error::fault`]) and whether trying again later may help
//! ([`Error::is_retryable`], [`Error::is_throttling`]); see [`Error`]. A service that writes many
//! objects with AWS KMS and data-key caching: `examples/ingest.rs`.

#![forbid(unsafe_code)]

mod body;
mod client;
mod error;
mod loader;
pub mod location;
pub mod metadata;
mod ops;
mod settings;
mod shared;
pub mod sse_c;
mod transport;

pub use ops::audit;
pub use ops::buckets::{BucketEntry, DeleteObjects, DeletedObjects, DELETE_BATCH};
pub use ops::list as listing;

/// Keyrings (who can decrypt), so that this crate is the one dependency a service needs:
/// re-exported from `s3crypt-core` and, with the default `kms` feature, `s3crypt-kms`.
pub mod keyring {
    pub use s3crypt_core::keyring::caching::{CacheLimits, CachingKeyring};
    pub use s3crypt_core::keyring::file::LocalKeyring;
    pub use s3crypt_core::keyring::multi::MultiKeyring;
    pub use s3crypt_core::keyring::raw_aes::{RawAesKeyring, WrappingKey};
    pub use s3crypt_core::keyring::{DataKey, DecryptionMaterials, EncryptionMaterials};
    pub use s3crypt_core::{EncryptedDataKey, Keyring};
    #[cfg(feature = "kms")]
    pub use s3crypt_kms::{DiscoveryFilter, KmsKeyring};
}

pub use body::Body;
pub use client::{Client, ClientBuilder};
pub use error::{Error, Fault, Result};
#[cfg(feature = "kms")]
pub use keyring::KmsKeyring;
pub use keyring::{CachingKeyring, Keyring, LocalKeyring, MultiKeyring};
pub use loader::{from_env, s3_config, Loader, DEFAULT_READ_TIMEOUT};
pub use metadata::ObjectInfo;
pub use ops::copy::{names_key, CopyMode, CopyObject, CopyOutput, KeepKeys};
pub use ops::get::{ByteRange, GetObject, GetOutput, PlaintextStream, PositionalSink};
pub use ops::head::HeadObject;
pub use ops::put::{PutObject, PutOutput, StorageOptions};
pub use s3crypt_core::{EncryptionContext, Suite};
pub use settings::{Encryption, Transfer};

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    /// A service builds its keys with this crate alone.
    #[test]
    fn keyrings_and_context_come_from_this_crate() {
        use crate::keyring::{CacheLimits, RawAesKeyring, WrappingKey};
        use crate::{CachingKeyring, EncryptionContext, Keyring, MultiKeyring, Suite};
        let raw: Box<dyn Keyring> =
            Box::new(RawAesKeyring::new("ns", "k", WrappingKey::generate()).unwrap());
        let multi: Arc<dyn Keyring> = Arc::new(MultiKeyring::new(vec![raw]));
        let limits = CacheLimits::new(std::time::Duration::from_secs(60))
            .with_max_messages(10)
            .with_max_bytes(1 << 20)
            .with_capacity(4);
        let cached = CachingKeyring::new(multi, limits).unwrap();
        let mut m =
            crate::keyring::EncryptionMaterials::new(Suite::DEFAULT, EncryptionContext::new());
        cached.on_encrypt(&mut m).unwrap();
        assert_eq!(m.encrypted_data_keys().len(), 1);
        #[cfg(feature = "kms")]
        assert!(std::any::type_name::<crate::KmsKeyring>().ends_with("KmsKeyring"));
    }
}
