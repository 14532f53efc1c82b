//! S3 user metadata on s3crypt objects: what a reader needs to plan ranged reads without an extra
//! round trip, and the plaintext's content type and user metadata. Nothing secret.
//!
//! | metadata key (`x-amz-meta-…`) | value |
//! |---|---|
//! | `s3crypt-format` | `esdk-v2` (an AWS Encryption SDK message, version 2, framed) |
//! | `s3crypt-suite` | the suite id, e.g. `0x0478` |
//! | `s3crypt-frame-length` | plaintext bytes per frame |
//! | `s3crypt-header-length` | header length in bytes (where the first frame starts) |
//! | `s3crypt-content-type` | the plaintext's content type, if given |
//!
//! Metadata is *not* authenticated: readers use it only to plan requests, and everything it
//! claims is checked against the authenticated header. User metadata (`--meta k=v`) is stored
//! in clear beside it.

use std::collections::{BTreeMap, HashMap};

use crate::error::{Error, Result};
use s3crypt_core::range::MessageLayout;
use s3crypt_core::Suite;

/// Metadata key prefix reserved for s3crypt.
pub const PREFIX: &str = "s3crypt-";
/// Largest header length accepted from (unauthenticated) metadata: 4 MiB, far above any
/// header s3crypt writes (a header with the maximum 64 wrapped keys and a large context).
pub const MAX_HEADER_LENGTH: u64 = 4 << 20;
/// Format marker value.
pub const FORMAT: &str = "esdk-v2";

/// What s3crypt's metadata says about an object (unauthenticated until the header is read).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ObjectInfo {
    /// Ciphertext (stored) size in bytes.
    pub size: u64,
    /// Algorithm suite.
    pub suite: Suite,
    /// Plaintext bytes per frame.
    pub frame_length: u32,
    /// Header length in bytes.
    pub header_length: u64,
    /// Plaintext length (computed from the sizes; `None` for signed suites, whose footer length
    /// varies).
    pub plaintext_length: Option<u64>,
    /// The plaintext's content type.
    pub content_type: Option<String>,
    /// User metadata (s3crypt's own keys removed).
    pub user_metadata: BTreeMap<String, String>,
    /// Entity tag.
    pub etag: Option<String>,
    /// Version id, for versioned buckets.
    pub version_id: Option<String>,
}

/// The metadata to store for a new object.
pub(crate) fn for_new_object(
    suite: Suite,
    frame_length: u32,
    header_length: usize,
    content_type: Option<&str>,
    user: &BTreeMap<String, String>,
) -> HashMap<String, String> {
    let mut m: HashMap<String, String> = user.clone().into_iter().collect();
    m.insert(format!("{PREFIX}format"), FORMAT.into());
    m.insert(format!("{PREFIX}suite"), format!("0x{:04X}", suite.id()));
    m.insert(format!("{PREFIX}frame-length"), frame_length.to_string());
    m.insert(format!("{PREFIX}header-length"), header_length.to_string());
    if let Some(ct) = content_type {
        m.insert(format!("{PREFIX}content-type"), ct.into());
    }
    m
}

/// Checks user metadata keys: S3-safe, and not in s3crypt's namespace.
pub(crate) fn check_user_metadata(user: &BTreeMap<String, String>) -> Result<()> {
    for (k, v) in user {
        let lower = k.to_ascii_lowercase();
        if lower.starts_with(PREFIX) {
            return Err(Error::InvalidArgument(format!(
                "metadata key {k:?}: the prefix {PREFIX:?} is reserved"
            )));
        }
        if k.is_empty()
            || !k
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            return Err(Error::InvalidArgument(format!(
                "metadata key {k:?}: use letters, digits, '-', '_' or '.'"
            )));
        }
        if !v.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(Error::InvalidArgument(format!(
                "metadata value for {k:?}: printable ASCII only"
            )));
        }
    }
    Ok(())
}

/// Reads s3crypt's metadata from an object's metadata map.
pub(crate) fn parse(
    bucket: &str,
    key: &str,
    size: u64,
    meta: Option<&HashMap<String, String>>,
    etag: Option<&str>,
    version_id: Option<&str>,
) -> Result<ObjectInfo> {
    let not = |reason: String| Error::NotEncrypted {
        bucket: bucket.into(),
        key: key.into(),
        reason,
    };
    let empty = HashMap::new();
    let meta = meta.unwrap_or(&empty);
    let get = |name: &str| meta.get(&format!("{PREFIX}{name}")).map(String::as_str);
    match get("format") {
        Some(FORMAT) => {}
        Some(other) => return Err(not(format!("unknown s3crypt format {other:?}"))),
        None => return Err(not("no s3crypt metadata (x-amz-meta-s3crypt-format)".into())),
    }
    let suite = get("suite")
        .and_then(|s| s.parse::<Suite>().ok())
        .ok_or_else(|| not("invalid s3crypt-suite metadata".into()))?;
    let frame_length = get("frame-length")
        .and_then(|s| s.parse::<u32>().ok())
        .filter(|&f| f > 0)
        .ok_or_else(|| not("invalid s3crypt-frame-length metadata".into()))?;
    let header_length = get("header-length")
        .and_then(|s| s.parse::<u64>().ok())
        // Bounded: readers fetch this many bytes before anything is authenticated.
        .filter(|&h| h > 0 && h <= size && h <= MAX_HEADER_LENGTH)
        .ok_or_else(|| not("invalid s3crypt-header-length metadata".into()))?;
    let plaintext_length = if suite.is_signed() {
        None
    } else {
        Some(
            MessageLayout::new(header_length, frame_length, size)
                .map_err(|e| not(format!("its size does not fit its metadata ({e})")))?
                .plaintext_len(),
        )
    };
    let user_metadata = meta
        .iter()
        .filter(|(k, _)| !k.starts_with(PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(ObjectInfo {
        size,
        suite,
        frame_length,
        header_length,
        plaintext_length,
        content_type: get("content-type").map(str::to_owned),
        user_metadata,
        etag: etag.map(str::to_owned),
        version_id: version_id.map(str::to_owned),
    })
}
