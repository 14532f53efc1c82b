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

/// How tightly new objects are bound to where they are stored, and what reads require.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Binding {
    /// Bucket and object key (default): an object cannot be swapped for any other.
    #[default]
    Key,
    /// The bucket only. Objects in one bucket then share an encryption context (when the
    /// caller's context is the same), which data-key caching needs: a cached data key, and its
    /// wrapped copies, can only serve messages with the same context. The price: someone who can
    /// write to the bucket, without any key, can swap two such objects *within the bucket*
    /// unnoticed. Reads with this binding require only the bucket to match, for every object.
    Bucket,
}

/// The context pairs that bind an object to `bucket`/`key`.
pub fn pairs(bucket: &str, key: &str) -> EncryptionContext {
    [(BUCKET, bucket), (KEY, key)].into_iter().collect()
}

/// The pairs a read at `bucket`/`key` requires under `binding`.
pub fn required(bucket: &str, key: &str, binding: Binding) -> EncryptionContext {
    match binding {
        Binding::Key => pairs(bucket, key),
        Binding::Bucket => [(BUCKET, bucket)].into_iter().collect(),
    }
}

/// Adds the location pairs (both) to a caller's context.
///
/// # Errors
/// [`crate::Error::InvalidArgument`] if the caller set one of the location keys.
pub fn bind(context: &mut EncryptionContext, bucket: &str, key: &str) -> crate::Result<()> {
    bind_with(context, bucket, key, Binding::Key)
}

/// Adds the location pairs `binding` calls for to a caller's context.
///
/// # Errors
/// [`crate::Error::InvalidArgument`] if the caller set one of the location keys.
pub fn bind_with(
    context: &mut EncryptionContext,
    bucket: &str,
    key: &str,
    binding: Binding,
) -> crate::Result<()> {
    for (k, v) in required(bucket, key, binding).iter() {
        context.insert(k, v).map_err(|_| {
            crate::Error::InvalidArgument(format!(
                "the encryption context key {k:?} is reserved for the object's location"
            ))
        })?;
    }
    Ok(())
}
