//! Binding an object's location into its authenticated encryption context.
//!
//! Someone who can write to the bucket but holds no key could otherwise swap another s3crypt
//! object (encrypted under the same keys) in under a key. Every object s3crypt writes carries
//! its bucket and key as encryption context pairs, authenticated with the header; `get` requires
//! them to match the location it reads from, unless the caller explicitly allows moved objects.

use s3crypt_core::EncryptionContext;

/// Context key holding the bucket the object was written to.
pub const BUCKET: &str = "s3crypt:bucket";
/// Context key holding the object key the object was written to.
pub const KEY: &str = "s3crypt:key";

/// The context pairs that bind an object to `bucket`/`key`.
pub fn pairs(bucket: &str, key: &str) -> EncryptionContext {
    [(BUCKET, bucket), (KEY, key)].into_iter().collect()
}

/// Adds the location pairs to a caller's context.
///
/// # Errors
/// [`crate::Error::InvalidArgument`] if the caller set one of the location keys.
pub fn bind(context: &mut EncryptionContext, bucket: &str, key: &str) -> crate::Result<()> {
    for (k, v) in [(BUCKET, bucket), (KEY, key)] {
        context.insert(k, v).map_err(|_| {
            crate::Error::InvalidArgument(format!(
                "the encryption context key {k:?} is reserved for the object's location"
            ))
        })?;
    }
    Ok(())
}
