//! Finding messages that share a message id (advisory S3C-2026-01).
//!
//! Before the fix, `cp`, `mv` and `rewrap` wrote a new header under the source's message id and
//! data key, so the old and the new header were tagged under one AES-GCM key and nonce. Anyone
//! holding both (two objects, or two versions of one) can recover the GHASH key and forge that
//! message. This scan lists every object (and, where the bucket keeps them, every version) under
//! a prefix, reads only each one's header (a HEAD and one ranged GET), and groups them by message
//! id. A group whose headers differ is affected: re-encrypt its objects (`rewrap`, which now
//! writes a new data key and message id) and delete the old versions. A group whose headers are
//! byte-identical (a server-side copy that kept the header) is not.
//!
//! Only what was stored under the prefix is seen: copies elsewhere (other prefixes or buckets,
//! backups, caches) are not, and deleted versions are gone from the bucket but may survive
//! with whoever read them.

use std::collections::BTreeMap;

use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio::task::JoinSet;

use crate::error::{service, Error, Result};
use crate::listing::listed_key;
use crate::metadata::MAX_HEADER_LENGTH;
use crate::shared::Shared;
use crate::sse_c::SseCKey;
use crate::transport::fetch::Fetch;
use crate::transport::head::{head_raw, not_found_or};

/// One stored message: an object, or one version of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Object key.
    pub key: String,
    /// Version id (versioned buckets).
    pub version_id: Option<String>,
    /// SHA-256 of the header bytes (tag included): equal digests, equal headers.
    pub header_digest: [u8; 32],
}

/// Messages that share one message id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedMessageId {
    /// The message id.
    pub message_id: [u8; 32],
    /// Every stored message with this id.
    pub messages: Vec<StoredMessage>,
    /// How many different headers they have: more than one means the message's key tagged
    /// several headers, and the message can be forged by whoever reads two of them.
    pub distinct_headers: usize,
}

impl SharedMessageId {
    /// Whether the group is affected by the advisory (different headers under one id).
    pub fn affected(&self) -> bool {
        self.distinct_headers > 1
    }
}

/// What [`crate::Client::scan_message_ids`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageIdScan {
    /// Messages whose header was read.
    pub scanned: u64,
    /// Objects or versions whose first bytes are not a message header this build reads (other
    /// files in the bucket).
    pub not_messages: u64,
    /// Objects or versions that could not be read, with why (an SSE-C object without a matching
    /// key, a refused or failed request): the scan says nothing about them.
    pub skipped: Vec<(String, Option<String>, String)>,
    /// Every message id held by more than one stored message.
    pub shared: Vec<SharedMessageId>,
    /// Whether every version was listed (`false`: only current objects, e.g. on a server without
    /// versioning).
    pub all_versions: bool,
}

impl MessageIdScan {
    /// The groups affected by the advisory.
    pub fn affected(&self) -> impl Iterator<Item = &SharedMessageId> {
        self.shared.iter().filter(|g| g.affected())
    }
}

/// Objects read at once by a scan.
const SCAN_CONCURRENCY: usize = 16;

/// Reads the header of every object under `prefix` (and of every version, where the bucket
/// keeps versions) and reports the message ids held by more than one of them (see the
/// [module documentation](crate::audit)). Requests: the listing, then a HEAD and a ranged GET of the
/// header per object (two if the header is over 4 KiB), 16 at a time. Headers are read from
/// the object's first bytes, whatever its metadata says. With `sse_c`, each object is read
/// with the client's SSE-C keys, or without SSE-C if S3 refuses them all. No key is needed:
/// nothing is decrypted.
///
/// # Errors
/// [`Error::Service`] if the listing fails. Objects that cannot be read are reported in
/// [`MessageIdScan::skipped`], not as errors; objects that are not messages are counted in
/// [`MessageIdScan::not_messages`].
pub(crate) async fn scan_message_ids(
    shared: &Arc<Shared>,
    bucket: &str,
    prefix: &str,
    sse_c: bool,
) -> Result<MessageIdScan> {
    let (entries, all_versions) = list_versions(shared, bucket, prefix).await?;
    let mut scan = MessageIdScan {
        all_versions,
        ..Default::default()
    };
    let mut by_id: BTreeMap<[u8; 32], Vec<StoredMessage>> = BTreeMap::new();
    let mut tasks = JoinSet::new();
    let mut pending = entries.into_iter();
    loop {
        while tasks.len() < SCAN_CONCURRENCY {
            let Some((key, version)) = pending.next() else {
                break;
            };
            let (c, b) = (shared.clone(), bucket.to_owned());
            tasks.spawn(async move {
                let r = read_header(&c, &b, &key, version.as_deref(), sse_c).await;
                (key, version, r)
            });
        }
        let Some(done) = tasks.join_next().await else {
            break;
        };
        let (key, version_id, r) = done?;
        match r {
            Ok((message_id, header_digest)) => {
                scan.scanned += 1;
                by_id.entry(message_id).or_default().push(StoredMessage {
                    key,
                    version_id,
                    header_digest,
                });
            }
            Err(Error::Crypto(
                s3crypt_core::Error::Malformed(_)
                | s3crypt_core::Error::Unsupported(_)
                | s3crypt_core::Error::Truncated(_)
                | s3crypt_core::Error::LimitExceeded(_),
            )) => scan.not_messages += 1,
            Err(e) => scan.skipped.push((key, version_id, e.to_string())),
        }
    }
    for (message_id, mut messages) in by_id {
        if messages.len() < 2 {
            continue;
        }
        messages.sort_by(|a, b| (&a.key, &a.version_id).cmp(&(&b.key, &b.version_id)));
        let mut digests: Vec<[u8; 32]> = messages.iter().map(|m| m.header_digest).collect();
        digests.sort_unstable();
        digests.dedup();
        scan.shared.push(SharedMessageId {
            message_id,
            messages,
            distinct_headers: digests.len(),
        });
    }
    scan.skipped.sort();
    Ok(scan)
}

/// The message id and header digest of one stored message. The header is read from byte 0
/// whatever the object's metadata says (metadata is not authenticated and may be missing or
/// wrong): 4 KiB first, then up to [`metadata::MAX_HEADER_LENGTH`] if the header is longer. With
/// `sse_c`, the object is read with whichever of the client's SSE-C keys S3 accepts, or without
/// SSE-C if it refuses them all (the old `cp --sse-c` left pairs split between the two kinds).
async fn read_header(
    shared: &Arc<Shared>,
    bucket: &str,
    key: &str,
    version: Option<&str>,
    sse_c: bool,
) -> Result<([u8; 32], [u8; 32])> {
    let (size, etag, sse) = head_any(shared, bucket, key, version, sse_c).await?;
    let fetch = Fetch {
        shared: shared.clone(),
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        version_id: version.map(str::to_owned),
        etag,
        sse,
        pool: Default::default(),
    };
    let mut want = size.min(4096);
    loop {
        let bytes = fetch.bytes(0..want).await?;
        match s3crypt_core::Header::read(&bytes, &Default::default()) {
            Ok(parsed) => {
                let header = &bytes[..parsed.len()];
                return Ok((parsed.header.message_id, Sha256::digest(header).into()));
            }
            Err(s3crypt_core::Error::Truncated(_)) if want < size.min(MAX_HEADER_LENGTH) => {
                want = size.min(MAX_HEADER_LENGTH).min(want * 16);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// HEAD of a stored message (no s3crypt metadata needed): its size, ETag and the SSE-C key it
/// was read with, if any.
async fn head_any(
    shared: &Shared,
    bucket: &str,
    key: &str,
    version: Option<&str>,
    sse_c: bool,
) -> Result<(u64, Option<String>, Option<Arc<SseCKey>>)> {
    let head = |sse: Option<Arc<SseCKey>>| async move {
        let out = head_raw(shared, bucket, key, version, sse.as_deref()).await?;
        let size = out
            .content_length()
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0);
        Ok::<_, Error>((size, out.e_tag().map(str::to_owned), sse))
    };
    let refused = |e: &Error| {
        matches!(
            e,
            Error::Service {
                status: Some(400 | 403),
                ..
            }
        )
    };
    if sse_c {
        let source = crate::sse_c::source(shared.sse_c.as_ref())?;
        for i in 0..source.candidates() {
            let Ok(k) = source.key(i, bucket, key).await else {
                continue;
            };
            match head(Some(Arc::new(k))).await {
                Ok(found) => return Ok(found),
                Err(e) if refused(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }
    head(None).await.map_err(|e| match e {
        e @ Error::Service {
            status: Some(400), ..
        } if !sse_c => e.with_hint("an SSE-C object? scan with SSE-C keys"),
        other => other,
    })
}

/// Every (key, version) under `prefix`: all versions where the server lists them, else the
/// current objects (and `false`). Delete markers hold no message and are left out.
async fn list_versions(
    shared: &Arc<Shared>,
    bucket: &str,
    prefix: &str,
) -> Result<(Vec<(String, Option<String>)>, bool)> {
    let s3 = &shared.s3;
    let mut out = Vec::new();
    let (mut key_marker, mut version_marker) = (None, None);
    loop {
        let page = s3
            .list_object_versions()
            .bucket(bucket)
            .prefix(prefix)
            .encoding_type(aws_sdk_s3::types::EncodingType::Url)
            .set_key_marker(key_marker.take())
            .set_version_id_marker(version_marker.take())
            .send()
            .await;
        let page = match page {
            Ok(p) => p,
            // No versioning API (some S3-compatible servers): the current objects only.
            Err(e) if out.is_empty() && !matches!(service_status(&e), Some(403 | 404)) => {
                return Ok((list_current(shared, bucket, prefix).await?, false));
            }
            Err(e) => {
                return Err(not_found_or(
                    bucket,
                    prefix,
                    service("ListObjectVersions", e),
                ))
            }
        };
        let encoded = page.encoding_type() == Some(&aws_sdk_s3::types::EncodingType::Url);
        for v in page.versions() {
            let Some(k) = v.key().and_then(|k| listed_key(k, encoded, prefix)) else {
                continue;
            };
            // "null" is the version of objects written while versioning was off; the current one
            // is read without a version id (some servers refuse `versionId=null`).
            let version = match v.version_id() {
                Some("null") if v.is_latest() == Some(true) => None,
                other => other.map(str::to_owned),
            };
            out.push((k, version));
        }
        if page.is_truncated() != Some(true) {
            return Ok((out, true));
        }
        key_marker = page.next_key_marker().map(str::to_owned);
        version_marker = page.next_version_id_marker().map(str::to_owned);
        if key_marker.is_none() {
            return Ok((out, true));
        }
    }
}

fn service_status<E>(
    e: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

async fn list_current(
    shared: &Arc<Shared>,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<(String, Option<String>)>> {
    let (objects, _) = crate::ops::list::ListObjects::new(shared.clone())
        .bucket(bucket)
        .prefix(prefix)
        .send()?
        .collect()
        .await?;
    Ok(objects.into_iter().map(|o| (o.key, None)).collect())
}
