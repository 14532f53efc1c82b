//! HEAD requests: an object's s3crypt metadata, with SSE-C candidate keys tried in turn.

use std::sync::Arc;

use crate::error::{service, Error, Result};
use crate::metadata::{self, ObjectInfo};
use crate::shared::Shared;

/// HEAD of the object to read; with `sse_c`, tried with each candidate SSE-C key until S3 accepts
/// one, which is returned (with its candidate number) for the object's other requests.
pub(crate) async fn head(
    shared: &Shared,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
    sse_c: bool,
) -> Result<(ObjectInfo, Option<(usize, Arc<crate::sse_c::SseCKey>)>)> {
    if !sse_c {
        return Ok((
            head_with(shared, bucket, key, version_id, None).await?,
            None,
        ));
    }
    let source = crate::sse_c::source(shared.sse_c.as_ref())?;
    let mut last = None;
    for i in 0..source.candidates() {
        // A candidate that cannot be derived (say, a KMS key the caller may not use) must
        // not hide an older one that works: remember the failure and go on.
        let k = match source.key(i, bucket, key).await {
            Ok(k) => k,
            Err(e) => {
                last = Some(e);
                continue;
            }
        };
        match head_with(shared, bucket, key, version_id, Some(&k)).await {
            Ok(info) => return Ok((info, Some((i, Arc::new(k))))),
            // A wrong SSE-C key is refused with 400 or 403: try the next one.
            Err(
                e @ Error::Service {
                    status: Some(400 | 403),
                    ..
                },
            ) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| Error::InvalidArgument("no SSE-C key".into())))
}

/// HEAD with an optional SSE-C key, parsed as s3crypt metadata.
pub(crate) async fn head_with(
    shared: &Shared,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
    sse: Option<&crate::sse_c::SseCKey>,
) -> Result<ObjectInfo> {
    let out = head_raw(shared, bucket, key, version_id, sse).await?;
    let size = out
        .content_length()
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or(0);
    metadata::parse(
        bucket,
        key,
        size,
        out.metadata(),
        out.e_tag(),
        out.version_id(),
    )
}

/// HEAD with an optional SSE-C key, whatever the object holds.
pub(crate) async fn head_raw(
    shared: &Shared,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
    sse: Option<&crate::sse_c::SseCKey>,
) -> Result<aws_sdk_s3::operation::head_object::HeadObjectOutput> {
    let req = shared
        .s3
        .head_object()
        .bucket(bucket)
        .key(key)
        .set_version_id(version_id.map(str::to_owned));
    crate::sse_c::with_sse_c!(req, sse)
        .send()
        .await
        .map_err(|e| not_found_or(bucket, key, service("HeadObject", e)))
}

/// Maps S3's `NoSuchBucket` to [`Error::NoSuchBucket`].
pub(crate) fn missing_bucket(bucket: &str, e: Error) -> Error {
    match e {
        Error::Service { code: Some(c), .. } if c == "NoSuchBucket" => Error::NoSuchBucket {
            bucket: bucket.into(),
        },
        other => other,
    }
}

/// Maps `NoSuchBucket` to [`Error::NoSuchBucket`], any other 404 to [`Error::NotFound`].
pub(crate) fn not_found_or(bucket: &str, key: &str, e: Error) -> Error {
    match missing_bucket(bucket, e) {
        Error::Service {
            status: Some(404), ..
        } => Error::NotFound {
            bucket: bucket.into(),
            key: key.into(),
        },
        other => other,
    }
}

/// Bytes [`first_bytes`] asks for: objects up to this size are read with one request, and larger
/// ones reuse the header from it (256 KiB: at most that much of a large object is fetched twice).
pub(crate) const FIRST_BYTES: u64 = 256 << 10;

/// An object's s3crypt metadata and its first `len` bytes in one ranged GET: what HEAD and then a
/// GET give, in one round trip (objects up to `len` bytes arrive whole). `Ok(None)` when that does
/// not work out and the caller should HEAD instead: an empty object (S3 answers a range on it with
/// 416), a server that ignores the range, a body that breaks off.
///
/// # Errors
/// As [`head_with`]: [`Error::NotFound`], [`Error::Service`], [`Error::NotEncrypted`].
pub(crate) async fn first_bytes(
    shared: &Shared,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
    len: u64,
) -> Result<Option<(ObjectInfo, bytes::Bytes)>> {
    let sent = shared
        .s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .set_version_id(version_id.map(str::to_owned))
        .range(format!("bytes=0-{}", len.max(1) - 1))
        .send()
        .await;
    let mut out = match sent {
        Ok(out) => out,
        Err(e) => {
            return match not_found_or(bucket, key, service("GetObject", e)) {
                Error::Service {
                    status: Some(416), ..
                } => Ok(None),
                e => Err(e),
            }
        }
    };
    // "bytes 0-4095/4096": the object's size after the slash.
    let Some(size) = out
        .content_range()
        .and_then(|r| r.rsplit_once('/'))
        .and_then(|(_, total)| total.parse::<u64>().ok())
    else {
        return Ok(None);
    };
    let info = metadata::parse(
        bucket,
        key,
        size,
        out.metadata(),
        out.e_tag(),
        out.version_id(),
    )?;
    let want = size.min(len);
    let mut body = bytes::BytesMut::with_capacity(usize::try_from(want).unwrap_or(0));
    while let Some(chunk) = out.body.next().await {
        match chunk {
            Ok(c) if (body.len() + c.len()) as u64 <= want => body.extend_from_slice(&c),
            // More than asked for, or a broken body: HEAD and ranged GETs (which resume) instead.
            _ => return Ok(None),
        }
    }
    Ok((body.len() as u64 == want).then(|| (info, body.freeze())))
}
