//! # s3crypt-core

#![forbid(unsafe_code)]
//!
//! Streaming envelope encryption whose output is an **AWS Encryption SDK message, version 2**
//! (framed, key-committing suite 0x0478 by default), so any AWS Encryption SDK can decrypt it given
//! the key. This crate has no AWS and no async-runtime dependency; the S3 and KMS layers build on it.
//!
//! * [`Encryptor`] / [`Decryptor`]: push APIs (feed bytes, get sealed frames / authenticated
//!   plaintext), and [`EncryptWriter`] / [`DecryptReader`] adapters for `std::io`.
//! * [`pipeline`]: parallel encryption and decryption of a `Read` into a `Write`, on all cores,
//!   with bounded memory.
//! * [`range`]: decrypt a plaintext byte range from only the frames that hold it.
//! * [`keyring`]: the keyring trait, the ESDK-compatible raw AES keyring, the multi-keyring and
//!   keyring files.
//!
//! ```
//! use std::sync::Arc;
//! use s3crypt_core::{keyring::raw_aes::{RawAesKeyring, WrappingKey}, DecryptOptions, Decryptor,
//!     EncryptOptions, Encryptor};
//!
//! # fn main() -> Result<(), s3crypt_core::Error> {
//! let keyring = Arc::new(RawAesKeyring::new("my-namespace", "my-key", WrappingKey::generate())?);
//! let mut options = EncryptOptions::default();
//! options.context.insert("purpose", "example")?;
//!
//! let mut message = Vec::new();
//! let mut enc = Encryptor::new(keyring.as_ref(), &options)?;
//! enc.update(b"hello, world", &mut message)?;
//! enc.finish(&mut message)?;
//!
//! let mut plaintext = Vec::new();
//! let mut required = DecryptOptions::default();
//! required.required_context.insert("purpose", "example")?;
//! let mut dec = Decryptor::new(keyring, required);
//! dec.update(&message, &mut plaintext)?;
//! dec.finish(&mut plaintext)?;
//! assert_eq!(plaintext, b"hello, world");
//! # Ok(()) }
//! ```

mod aead;
pub mod context;
pub mod decrypt;
pub mod encrypt;
mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod header;
pub mod key;
pub mod keyring;
pub mod parts;
pub mod pipeline;
pub mod range;
mod signature;
pub mod suite;
pub mod text;
pub mod transport;
mod wire;

pub use context::EncryptionContext;
pub use decrypt::{DecryptOptions, DecryptReader, DecryptSummary, Decryptor, OpenedHeader};
pub use encrypt::{
    EncryptOptions, EncryptSummary, EncryptWriter, Encryptor, DEFAULT_FRAME_LENGTH,
    MAX_FRAME_LENGTH,
};
pub use error::{Error, KeyringError, Malformed, Result};
pub use header::{EncryptedDataKey, Header, ParsedHeader, ReadLimits};
pub use keyring::Keyring;
pub use suite::Suite;

/// The [`Error`] inside an `io::Error` returned by this crate's `Read`/`Write` adapters, if any.
pub fn error_of(e: &std::io::Error) -> Option<&Error> {
    e.get_ref().and_then(|inner| inner.downcast_ref::<Error>())
}
