//! Decrypting downloads: the whole object (parallel ranged GETs, decrypted in order) or a
//! plaintext byte range (only the frames it needs).
//!
//! Plaintext is released only after the frames holding it authenticated; for signed suites the
//! final frame waits for the signature. The stream ends with an explicit end marker, so a reader
//! cannot mistake an interrupted transfer for a complete one.
//!
//! Unsigned messages larger than one ranged GET are planned from their authenticated header and
//! the object's size: frame-aligned pieces are fetched `download_concurrency` at a time and each is
//! decrypted in place on the blocking pool as soon as it arrives, so decryption runs in parallel
//! and plaintext is never copied out of the buffer the network filled. Read as a stream, pieces
//! are released in order; written into a file ([`PlaintextStream::write_at`]), each is written
//! at its offset as soon as it verified, in any order. Memory: about
//! `download_concurrency × min(part size, 8 MiB)` in flight (frames longer than that make fewer
//! pieces run at once), plus two pieces waiting for a stream's reader; buffers return to the
//! download's pool when they are written or the reader drops them.

mod drive;
pub(crate) mod plan;
mod sink;
mod stream;

use std::ops::Range;
use std::sync::Arc;

pub use s3crypt_core::range::ByteRange;
use s3crypt_core::{DecryptOptions, EncryptionContext, Header};

use self::drive::What;
pub use self::sink::PositionalSink;
pub use self::stream::PlaintextStream;
use crate::error::{Error, Result};
use crate::location;
use crate::metadata::ObjectInfo;
use crate::shared::Shared;
use crate::transport::blocking;
use crate::transport::fetch::Fetch;
use crate::transport::head::{first_bytes, head, FIRST_BYTES};
use crate::transport::pool::Pool;

/// A download being configured (see [`crate::Client::get_object`]).
#[derive(Debug)]
pub struct GetObject {
    shared: Arc<Shared>,
    bucket: Option<String>,
    key: Option<String>,
    version_id: Option<String>,
    range: Option<ByteRange>,
    required: EncryptionContext,
    allow_moved: bool,
    sse_c: bool,
}

/// A download: the object's metadata and its authenticated plaintext.
#[derive(Debug)]
#[non_exhaustive]
pub struct GetOutput {
    /// What the object's metadata says.
    pub info: ObjectInfo,
    /// The plaintext range served (the whole object unless a range was asked for).
    pub range: Option<Range<u64>>,
    /// The authenticated plaintext.
    pub body: PlaintextStream,
}

impl GetObject {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            bucket: None,
            key: None,
            version_id: None,
            range: None,
            required: EncryptionContext::new(),
            allow_moved: false,
            sse_c: false,
        }
    }

    /// The object is SSE-C encrypted: every request carries its SSE-C key, found by trying the
    /// client's SSE-C source's keys in order (see [`crate::sse_c`]).
    pub fn sse_c(mut self, yes: bool) -> Self {
        self.sse_c = yes;
        self
    }

    /// Bucket.
    pub fn bucket(mut self, b: impl Into<String>) -> Self {
        self.bucket = Some(b.into());
        self
    }

    /// Object key.
    pub fn key(mut self, k: impl Into<String>) -> Self {
        self.key = Some(k.into());
        self
    }

    /// A specific version (versioned buckets).
    pub fn version_id(mut self, v: impl Into<String>) -> Self {
        self.version_id = Some(v.into());
        self
    }

    /// Only this plaintext range.
    pub fn range(mut self, r: ByteRange) -> Self {
        self.range = Some(r);
        self
    }

    /// Pairs the object's encryption context must contain.
    pub fn required_context(mut self, c: EncryptionContext) -> Self {
        self.required = c;
        self
    }

    /// Accept an object whose authenticated location (bucket and key it was written to) differs
    /// from where it is read, e.g. after a plain S3 copy. Without this, such objects are
    /// refused: someone with write access but no key could otherwise substitute one object for
    /// another.
    pub fn allow_moved(mut self, yes: bool) -> Self {
        self.allow_moved = yes;
        self
    }

    /// Starts the download.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::NoSuchBucket`], [`Error::Service`], [`Error::NotEncrypted`] (ranges need s3crypt
    /// metadata), and decryption errors; later errors arrive through the [`PlaintextStream`].
    pub async fn send(mut self) -> Result<GetOutput> {
        let bucket = self
            .bucket
            .take()
            .ok_or_else(|| Error::InvalidArgument("no bucket".into()))?;
        let key = self
            .key
            .take()
            .ok_or_else(|| Error::InvalidArgument("no key".into()))?;
        let options = location::read_options(
            &self.required,
            &bucket,
            &key,
            self.shared.binding,
            self.allow_moved,
        )?;
        // A whole object without SSE-C starts with one ranged GET that brings the metadata and
        // the first bytes (small objects whole): one request instead of HEAD + GET.
        let first = match (&self.range, self.sse_c) {
            (None, false) => {
                first_bytes(
                    &self.shared,
                    &bucket,
                    &key,
                    self.version_id.as_deref(),
                    FIRST_BYTES,
                )
                .await?
            }
            _ => None,
        };
        let (info, sse, prefix) = match first {
            Some((info, prefix)) => (info, None, prefix),
            None => {
                let (info, sse) = head(
                    &self.shared,
                    &bucket,
                    &key,
                    self.version_id.as_deref(),
                    self.sse_c,
                )
                .await?;
                (info, sse, bytes::Bytes::new())
            }
        };
        let fetch = Fetch {
            shared: self.shared.clone(),
            bucket,
            key,
            version_id: self.version_id.clone(),
            etag: info.etag.clone(),
            sse: sse.map(|(_, k)| k),
            pool: Pool::default(),
        };
        match self.range {
            Some(r) => {
                let (rd, served) = fetch.range(&info, r, options).await?;
                Ok(GetOutput {
                    info,
                    range: Some(served.clone()),
                    body: PlaintextStream::ready(fetch, What::Range { rd, served }),
                })
            }
            None => Ok(GetOutput {
                info: info.clone(),
                range: None,
                body: PlaintextStream::ready(
                    fetch,
                    What::Whole {
                        info,
                        options,
                        prefix,
                    },
                ),
            }),
        }
    }
}

/// A copy's source, opened: its authenticated header, and its whole plaintext as a stream (not
/// started yet: nothing but the header has been downloaded).
pub(crate) struct OpenedSource {
    /// The header fields, authenticated (tag, key commitment, required context).
    pub(crate) header: Header,
    /// The plaintext's length, when the layout gives it (unsigned messages). The stream fails
    /// unless the final frame at that length verifies.
    pub(crate) plaintext_len: Option<u64>,
    /// The authenticated plaintext.
    pub(crate) body: PlaintextStream,
}

/// Opens the whole object for reading as a copy's source: the header is read, parsed and
/// opened (unwrapping the data key once for unsigned messages; signed ones and empty
/// plaintexts are read by the streaming decryptor, which opens the header again).
pub(crate) async fn open_whole(
    fetch: Fetch,
    info: &ObjectInfo,
    options: DecryptOptions,
) -> Result<OpenedSource> {
    let header_bytes = fetch.bytes(0..info.header_length).await?;
    let parsed = Header::read(&header_bytes, &options.limits)?;
    if parsed.len() as u64 != info.header_length {
        return Err(Error::NotEncrypted {
            bucket: fetch.bucket.clone(),
            key: fetch.key.clone(),
            reason: "its header length metadata does not match its header".into(),
        });
    }
    let size = info.size;
    if !parsed.header.suite.is_signed() {
        let rd = fetch.open(parsed, options.clone(), size).await?;
        let header = rd.header().header.clone();
        let len = rd.layout().plaintext_len();
        // The whole plaintext as one range that reaches the end: the final frame is read and
        // verified whatever the size says.
        let what = if len > 0 {
            What::Range { rd, served: 0..len }
        } else {
            What::Streamed {
                size,
                options,
                prefix: bytes::Bytes::new(),
            }
        };
        return Ok(OpenedSource {
            header,
            plaintext_len: Some(len),
            body: PlaintextStream::ready(fetch, what),
        });
    }
    let keyring = fetch.shared.keyring.clone();
    let opts = options.clone();
    let opened =
        blocking(move || s3crypt_core::OpenedHeader::open(parsed, keyring.as_ref(), &opts)).await?;
    Ok(OpenedSource {
        header: opened.header().clone(),
        plaintext_len: None,
        body: PlaintextStream::ready(
            fetch,
            What::Streamed {
                size,
                options,
                prefix: bytes::Bytes::new(),
            },
        ),
    })
}
