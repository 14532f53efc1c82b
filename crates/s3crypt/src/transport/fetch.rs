//! Ranged GETs with resume and retry, into recycled buffers.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use tokio::task::JoinHandle;

use super::head::not_found_or;
use super::pool::Pool;
use crate::error::{service, Error, Result};
use crate::shared::Shared;

/// How many times a ranged GET whose body broke off is resumed before giving up.
const BODY_ATTEMPTS: u32 = 5;

/// 100 ms, 200 ms, 400 ms, … (capped at 5 s), with up to 50 % random jitter.
fn backoff(attempt: u32) -> std::time::Duration {
    let base = 100u64.saturating_mul(1 << attempt.min(6)).min(5_000);
    let jitter = rand_jitter(base / 2);
    std::time::Duration::from_millis(base - jitter)
}

fn rand_jitter(max: u64) -> u64 {
    // Jitter needs no cryptographic quality; the clock's nanoseconds spread concurrent retries.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()))
        .unwrap_or(0);
    if max == 0 {
        0
    } else {
        nanos % max
    }
}

/// An error and its sources, `a: b: c` (the SDK's body errors say little at the top level).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// How a ranged GET failed.
enum BodyError {
    /// The request failed after the SDK's own retries, or the answer is wrong: final.
    Request(Error),
    /// The body broke off: resumable.
    Body(String),
}

/// A fetch task that is cancelled when its handle is dropped (a failed or abandoned download
/// must not leave ranged GETs running).
pub(crate) struct AbortOnDrop<T>(pub(crate) JoinHandle<Result<T>>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Ranged GETs of one object version (pinned by ETag and version id), resumed when a body breaks
/// off, into buffers of the transfer's pool.
#[derive(Clone)]
pub(crate) struct Fetch {
    pub(crate) shared: Arc<Shared>,
    pub(crate) bucket: String,
    pub(crate) key: String,
    pub(crate) version_id: Option<String>,
    pub(crate) etag: Option<String>,
    pub(crate) sse: Option<Arc<crate::sse_c::SseCKey>>,
    pub(crate) pool: Pool,
}

impl Fetch {
    /// Ciphertext bytes `[start, end)` of the object seen by HEAD (pinned by ETag and version).
    ///
    /// The SDK retries failed requests (5xx, throttling, resets before the response); a body
    /// that breaks off mid-transfer (reset, or stalled past the SDK's stalled-stream limit) is
    /// resumed from the first byte not yet received, up to [`BODY_ATTEMPTS`] times with
    /// exponential backoff. A changed object (412) or any 4xx is never retried.
    pub(crate) async fn bytes(&self, r: Range<u64>) -> Result<Bytes> {
        self.bytes_mut(r).await.map(bytes::BytesMut::freeze)
    }

    /// As [`Fetch::bytes`], in a buffer the caller may decrypt in place.
    pub(crate) async fn bytes_mut(&self, r: Range<u64>) -> Result<bytes::BytesMut> {
        if r.start >= r.end {
            return Ok(bytes::BytesMut::new());
        }
        let want = usize::try_from(r.end - r.start)
            .map_err(|_| Error::InvalidArgument("range too large for memory".into()))?;
        let mut buf = self.pool.empty(want);
        let mut attempt = 0u32;
        loop {
            let before = buf.len();
            match self
                .get_into(r.start + buf.len() as u64, r.end, &mut buf)
                .await
            {
                Ok(()) => return Ok(buf),
                Err(BodyError::Request(e)) => return Err(e),
                // Everything arrived before the connection broke: nothing to resume.
                Err(BodyError::Body(_)) if buf.len() == want => return Ok(buf),
                Err(BodyError::Body(message)) => {
                    // Attempts count failures in a row without real progress; a body that
                    // delivered at least 1 MiB since the last failure starts a fresh count.
                    if buf.len() - before >= 1 << 20 {
                        attempt = 0;
                    }
                    attempt += 1;
                    if attempt >= BODY_ATTEMPTS {
                        return Err(Error::transport(
                            "GetObject",
                            format!("reading the body failed {attempt} times; last: {message}"),
                        ));
                    }
                    tokio::time::sleep(backoff(attempt)).await;
                }
            }
        }
    }

    /// One ranged GET of `[from, end)`, appended to `buf` as it arrives.
    async fn get_into(
        &self,
        from: u64,
        end: u64,
        buf: &mut bytes::BytesMut,
    ) -> std::result::Result<(), BodyError> {
        let req = self.shared.s3.get_object();
        let mut out = crate::sse_c::with_sse_c!(req, self.sse.as_deref())
            .bucket(&self.bucket)
            .key(&self.key)
            .set_version_id(self.version_id.clone())
            .set_if_match(self.etag.clone())
            .range(format!("bytes={from}-{}", end - 1))
            .send()
            .await
            .map_err(|e| {
                BodyError::Request(not_found_or(
                    &self.bucket,
                    &self.key,
                    service("GetObject", e),
                ))
            })?;
        let want = end - from;
        let mut got = 0u64;
        loop {
            match out.body.next().await {
                Some(Ok(chunk)) => {
                    got += chunk.len() as u64;
                    if got > want {
                        // A server that ignores the range: not something a retry fixes.
                        return Err(BodyError::Request(Error::bad_response(
                            "GetObject",
                            format!("asked for {want} bytes, got more"),
                        )));
                    }
                    buf.extend_from_slice(&chunk);
                }
                Some(Err(e)) => return Err(BodyError::Body(chain(&e))),
                None if got == want => return Ok(()),
                None => {
                    return Err(BodyError::Body(format!(
                        "the body ended after {got} of {want} bytes"
                    )))
                }
            }
        }
    }
}
