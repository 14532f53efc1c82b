//! `s3://bucket/key` URLs.

use std::path::Path;

use crate::exit::Failure;

/// Whether a path argument is an `s3://` URL.
pub(crate) fn is_s3_url(p: Option<&Path>) -> bool {
    p.and_then(Path::to_str)
        .is_some_and(|s| s.starts_with("s3://"))
}

/// Splits `s3://bucket/key` (the key may be empty).
pub(crate) fn parse_url(s: &str) -> Result<(String, String), Failure> {
    let rest = s
        .strip_prefix("s3://")
        .ok_or_else(|| Failure::Usage(format!("{s:?} is not an s3://bucket/key URL")))?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(Failure::Usage(format!("{s:?} has no bucket")));
    }
    Ok((bucket.to_owned(), key.to_owned()))
}

/// Splits `s3://bucket/key`, which must name an object.
pub(crate) fn object_url(s: &str) -> Result<(String, String), Failure> {
    let (b, k) = parse_url(s)?;
    if k.is_empty() {
        return Err(Failure::Usage(format!("{s:?} names no object key")));
    }
    Ok((b, k))
}

/// `p` as a key prefix that ends at a `/` (empty stays empty).
pub(crate) fn prefix_of(p: &str) -> String {
    if p.is_empty() || p.ends_with('/') {
        p.to_owned()
    } else {
        format!("{p}/")
    }
}
