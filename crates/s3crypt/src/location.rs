//! Binding an object's location into its authenticated encryption context.
//!
//! Someone who can write to the bucket but holds no key could otherwise swap another s3crypt
//! object (encrypted under the same keys) in under a key. Every object s3crypt writes carries
//! its bucket and key as encryption context pairs, authenticated with the header; `get` requires
//! them to match the location it reads from, unless the caller explicitly allows moved objects.

use crate::error::{Error, Result};
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

/// A context of location pairs. Their keys are this module's constants: distinct, not empty and
/// outside the reserved `aws-crypto-` prefix, so [`EncryptionContext::insert`] cannot refuse them
/// (whatever the bucket and key, which are only values).
fn location_context(pairs: &[(&'static str, &str)]) -> EncryptionContext {
    let mut ctx = EncryptionContext::new();
    for (k, v) in pairs {
        let inserted = ctx.insert(*k, *v);
        debug_assert!(inserted.is_ok(), "location key {k}");
    }
    ctx
}

/// The context pairs that bind an object to `bucket`/`key`.
pub fn pairs(bucket: &str, key: &str) -> EncryptionContext {
    location_context(&[(BUCKET, bucket), (KEY, key)])
}

/// The pairs a read at `bucket`/`key` requires under `binding`.
pub fn required(bucket: &str, key: &str, binding: Binding) -> EncryptionContext {
    match binding {
        Binding::Key => pairs(bucket, key),
        Binding::Bucket => location_context(&[(BUCKET, bucket)]),
    }
}

/// What a read of the object at `bucket`/`key` requires of its header: the caller's `required`
/// pairs, plus (unless `allow_moved`) the pairs `binding` calls for, and, whatever the binding,
/// every location pair the header carries must name this location. A reader with bucket binding
/// therefore still refuses an object bound to another key (a plain S3 copy of one object over
/// another).
///
/// # Errors
/// [`Error::InvalidArgument`] if `required` sets a location key to another value than
/// the location's (that is what `allow_moved` is for).
pub fn read_options(
    required: &EncryptionContext,
    bucket: &str,
    key: &str,
    binding: Binding,
    allow_moved: bool,
) -> Result<s3crypt_core::DecryptOptions> {
    let mut options = s3crypt_core::DecryptOptions {
        required_context: required.clone(),
        ..Default::default()
    };
    if allow_moved {
        return Ok(options);
    }
    for (k, v) in self::required(bucket, key, binding).iter() {
        match options.required_context.get(k) {
            None => options.required_context.insert(k, v)?,
            Some(same) if same == v => {}
            Some(_) => {
                return Err(Error::InvalidArgument(format!(
                    "the required context sets {k:?}, which is the object's location binding; use allow_moved to read a moved object"
                )))
            }
        }
    }
    options.required_if_present = pairs(bucket, key);
    Ok(options)
}

/// Adds the location pairs (both) to a caller's context.
///
/// # Errors
/// [`Error::InvalidArgument`] if the caller set one of the location keys.
pub fn bind(context: &mut EncryptionContext, bucket: &str, key: &str) -> Result<()> {
    bind_with(context, bucket, key, Binding::Key)
}

/// Adds the location pairs `binding` calls for to a caller's context.
///
/// # Errors
/// [`Error::InvalidArgument`] if the caller set one of the location keys.
pub fn bind_with(
    context: &mut EncryptionContext,
    bucket: &str,
    key: &str,
    binding: Binding,
) -> Result<()> {
    for (k, v) in required(bucket, key, binding).iter() {
        context.insert(k, v).map_err(|_| {
            Error::InvalidArgument(format!(
                "the encryption context key {k:?} is reserved for the object's location"
            ))
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_pairs_hold_any_bucket_and_key_as_values() {
        let c = pairs("b", "aws-crypto-public-key");
        assert_eq!(c.get(BUCKET), Some("b"));
        assert_eq!(c.get(KEY), Some("aws-crypto-public-key"));
        assert_eq!(c.len(), 2);
        let r = required("b", "", Binding::Bucket);
        assert_eq!((r.len(), r.get(BUCKET)), (1, Some("b")));
    }
}
