//! The encryption context: authenticated, non-secret key/value pairs.
//!
//! Wire form (spec `data-format/message-header.md`, "Encryption Context"): a `u16` pair count, then
//! for each pair, sorted by the UTF-8 bytes of the key, `u16` length + key, `u16` length + value.
//! An empty context serializes to no bytes at all (the header's AAD length is then 0).

use std::collections::BTreeMap;

use crate::error::{Error, Malformed, Result};
use crate::wire::Cursor;

/// Context keys with this prefix are reserved for the format (the ECDSA public key lives under
/// `aws-crypto-public-key`); callers cannot set them.
pub const RESERVED_PREFIX: &str = "aws-crypto-";

/// The context key holding the base64 compressed ECDSA public key of a signed message.
pub const PUBLIC_KEY_KEY: &str = "aws-crypto-public-key";

/// Authenticated key/value pairs bound to a message. Sorted by key bytes; keys are unique.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncryptionContext(BTreeMap<String, String>);

impl EncryptionContext {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a caller pair.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty key, a key with the reserved `aws-crypto-` prefix,
    /// or a key that is already present.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) -> Result<()> {
        let key = key.into();
        if key.is_empty() {
            return Err(Error::InvalidArgument(
                "encryption context keys must not be empty".into(),
            ));
        }
        if key.starts_with(RESERVED_PREFIX) {
            return Err(Error::InvalidArgument(format!(
                "encryption context key {key:?} uses the reserved prefix {RESERVED_PREFIX:?}"
            )));
        }
        if self.0.contains_key(&key) {
            return Err(Error::InvalidArgument(format!(
                "encryption context key {key:?} given twice"
            )));
        }
        self.0.insert(key, value.into());
        Ok(())
    }

    /// A context of caller pairs, each checked as [`EncryptionContext::insert`] checks it. (There
    /// is deliberately no `FromIterator`: collecting could not refuse a reserved key.)
    ///
    /// ```
    /// use s3crypt_core::EncryptionContext;
    /// let ctx = EncryptionContext::from_pairs([("tenant", "acme"), ("purpose", "backup")])?;
    /// assert_eq!(ctx.get("tenant"), Some("acme"));
    /// assert!(EncryptionContext::from_pairs([("aws-crypto-public-key", "forged")]).is_err());
    /// # Ok::<(), s3crypt_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`EncryptionContext::insert`], for the first pair it refuses.
    pub fn from_pairs<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Result<Self>
    where
        K: Into<String>,
        V: Into<String>,
    {
        let mut ctx = Self::new();
        for (k, v) in pairs {
            ctx.insert(k, v)?;
        }
        Ok(ctx)
    }

    /// Inserts a reserved pair (used for the signature public key).
    pub(crate) fn insert_reserved(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }

    /// The value for `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The pairs in wire order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The pairs a caller set, without the reserved ones.
    pub fn user_pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.iter().filter(|(k, _)| !k.starts_with(RESERVED_PREFIX))
    }

    /// Checks that every pair of `required` is present with the same value.
    ///
    /// # Errors
    /// [`Error::ContextMismatch`] naming the first key that is missing or differs (keys and values
    /// of the context are not secret).
    pub fn require(&self, required: &EncryptionContext) -> Result<()> {
        for (k, v) in required.iter() {
            match self.get(k) {
                None => {
                    return Err(Error::ContextMismatch(format!(
                        "the message has no pair with key {k:?}"
                    )))
                }
                Some(found) if found != v => {
                    return Err(Error::ContextMismatch(format!(
                        "the message has {k:?} = {found:?}, {v:?} was required"
                    )))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// The serialized form (empty for an empty context), as used in the header and as the AAD of
    /// raw AES key wrapping.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if it does not fit the format's 16-bit lengths.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        if self.0.is_empty() {
            return Ok(Vec::new());
        }
        let too_big =
            || Error::InvalidArgument("encryption context is larger than 65535 bytes".into());
        let mut out = Vec::new();
        out.extend_from_slice(
            &u16::try_from(self.0.len())
                .map_err(|_| too_big())?
                .to_be_bytes(),
        );
        for (k, v) in &self.0 {
            for field in [k.as_bytes(), v.as_bytes()] {
                out.extend_from_slice(
                    &u16::try_from(field.len())
                        .map_err(|_| too_big())?
                        .to_be_bytes(),
                );
                out.extend_from_slice(field);
            }
        }
        if out.len() > usize::from(u16::MAX) {
            return Err(too_big());
        }
        Ok(out)
    }

    /// Parses the serialized form; `bytes` must be exactly the context (the header's AAD field).
    ///
    /// # Errors
    /// [`Error::Malformed`] for duplicate, unsorted or non-UTF-8 keys/values, a zero count, or a
    /// length that disagrees with the content; [`Error::Truncated`] is never returned because the
    /// caller has already bounded the bytes (a short field is malformed).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.is_empty() {
            return Ok(Self::new());
        }
        let bad = |what| Error::Malformed(Malformed::EncryptionContext(what));
        let mut cur = Cursor::new(bytes);
        let count = cur
            .u16("encryption context")
            .map_err(|_| bad("length does not match content"))?;
        if count == 0 {
            return Err(bad("pair count is 0 but the context is not empty"));
        }
        let mut map = BTreeMap::new();
        let mut last: Option<Vec<u8>> = None;
        for _ in 0..count {
            let k = cur
                .vec16("encryption context")
                .map_err(|_| bad("length does not match content"))?;
            let v = cur
                .vec16("encryption context")
                .map_err(|_| bad("length does not match content"))?;
            if let Some(prev) = &last {
                match prev.as_slice().cmp(k) {
                    std::cmp::Ordering::Equal => return Err(bad("duplicate key")),
                    std::cmp::Ordering::Greater => return Err(bad("keys are not sorted")),
                    std::cmp::Ordering::Less => {}
                }
            }
            last = Some(k.to_vec());
            let k = std::str::from_utf8(k).map_err(|_| bad("key is not UTF-8"))?;
            let v = std::str::from_utf8(v).map_err(|_| bad("value is not UTF-8"))?;
            map.insert(k.to_owned(), v.to_owned());
        }
        if !cur.is_empty() {
            return Err(bad("length does not match content"));
        }
        Ok(Self(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn empty_context_is_empty_bytes() {
        assert!(EncryptionContext::new().to_bytes().unwrap().is_empty());
        assert!(EncryptionContext::from_bytes(&[]).unwrap().is_empty());
    }

    #[test]
    fn known_serialization() {
        let ec = EncryptionContext::from_pairs([("b", "2"), ("a", "1")]).unwrap();
        assert_eq!(
            ec.to_bytes().unwrap(),
            [0, 2, 0, 1, b'a', 0, 1, b'1', 0, 1, b'b', 0, 1, b'2']
        );
    }

    #[test]
    fn rejects_duplicates_unsorted_and_bad_utf8() {
        let dup = [0, 2, 0, 1, b'a', 0, 0, 0, 1, b'a', 0, 0];
        let unsorted = [0, 2, 0, 1, b'b', 0, 0, 0, 1, b'a', 0, 0];
        let bad_utf8 = [0, 1, 0, 1, 0xFF, 0, 0];
        let trailing = [0, 1, 0, 1, b'a', 0, 0, 9];
        let zero = [0, 0];
        for b in [&dup[..], &unsorted, &bad_utf8, &trailing, &zero] {
            assert!(
                matches!(EncryptionContext::from_bytes(b), Err(Error::Malformed(_))),
                "{b:?}"
            );
        }
    }

    #[test]
    fn insert_refuses_reserved_and_duplicate_keys() {
        let mut ec = EncryptionContext::new();
        ec.insert("a", "1").unwrap();
        assert!(ec.insert("a", "2").is_err());
        assert!(ec.insert("aws-crypto-public-key", "x").is_err());
        assert!(ec.insert("", "x").is_err());
    }

    #[test]
    fn building_from_pairs_refuses_reserved_empty_and_duplicate_keys() {
        for bad in [
            &[("aws-crypto-public-key", "forged")][..],
            &[("a", "1"), ("aws-crypto-anything", "x")],
            &[("", "x")],
            &[("a", "1"), ("a", "2")],
        ] {
            assert!(
                matches!(
                    EncryptionContext::from_pairs(bad.iter().copied()),
                    Err(Error::InvalidArgument(_))
                ),
                "{bad:?}"
            );
        }
        let ec = EncryptionContext::from_pairs(vec![("a".to_owned(), "1".to_owned())]).unwrap();
        assert_eq!(ec.get("a"), Some("1"));
    }

    #[test]
    fn require_reports_missing_and_different() {
        let pairs = |p| EncryptionContext::from_pairs(p).unwrap();
        let ec = pairs([("a", "1")]);
        ec.require(&pairs([("a", "1")])).unwrap();
        assert!(matches!(
            ec.require(&pairs([("a", "2")])),
            Err(Error::ContextMismatch(_))
        ));
        assert!(matches!(
            ec.require(&pairs([("b", "1")])),
            Err(Error::ContextMismatch(_))
        ));
    }

    proptest! {
        #[test]
        fn round_trip(pairs in proptest::collection::btree_map("\\PC{1,12}", "\\PC{0,12}", 0..8)) {
            let ec = EncryptionContext(pairs);
            let bytes = ec.to_bytes().unwrap();
            prop_assert_eq!(EncryptionContext::from_bytes(&bytes).unwrap(), ec);
        }
    }
}
