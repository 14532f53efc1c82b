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

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
pub use s3crypt_core::range::ByteRange;
use s3crypt_core::range::{aligned_steps, RangeDecryptor};
use s3crypt_core::{DecryptOptions, Decryptor, EncryptionContext, Header};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

use crate::client::{not_found_or, Client};
use crate::error::{service, Error, Result};
use crate::location;
use crate::metadata::ObjectInfo;

/// A download being configured (see [`Client::get_object`]).
#[derive(Debug)]
pub struct GetObject {
    client: Client,
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

enum Msg {
    Data(Bytes),
    Done,
    Err(Error),
}

/// Authenticated plaintext. [`PlaintextStream::next`] yields it in order and returns `None` only
/// after the whole message (or range) verified; an interrupted transfer is an error, never a
/// silent end. [`PlaintextStream::write_at`] instead writes it into a file at its offsets, pieces
/// in parallel and in any order, which is faster for large objects.
///
/// The transfer starts when the body is first read (or written).
pub struct PlaintextStream {
    state: State,
}

enum State {
    /// Not started: what to download.
    Ready(Box<Job>),
    Running {
        rx: mpsc::Receiver<Msg>,
        finished: bool,
        /// Whether the stream ended with an error.
        failed: bool,
        /// Plaintext bytes handed out so far.
        delivered: u64,
        /// Received but not yet handed out (reads through `AsyncRead` smaller than a chunk).
        leftover: Bytes,
    },
    /// Only while the state changes.
    Over,
}

/// A download not yet started.
struct Job {
    fetch: Fetch,
    what: What,
}

enum What {
    /// The whole object, as HEAD described it.
    Whole {
        info: ObjectInfo,
        options: DecryptOptions,
    },
    /// Plaintext `served` of an opened message.
    Range {
        rd: Arc<RangeDecryptor>,
        served: Range<u64>,
    },
    /// The whole object of `size` bytes, known to need the streaming decryptor.
    Streamed { size: u64, options: DecryptOptions },
}

impl std::fmt::Debug for PlaintextStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.state {
            State::Ready(_) => f.write_str("PlaintextStream(not started)"),
            State::Over => f.write_str("PlaintextStream(over)"),
            State::Running {
                finished,
                delivered,
                ..
            } => f
                .debug_struct("PlaintextStream")
                .field("delivered", delivered)
                .field("finished", finished)
                .finish(),
        }
    }
}

/// Where [`PlaintextStream::write_at`] puts plaintext: positional writes, made from several
/// threads at once and in any order (a regular file, say).
pub trait PositionalSink: Send + Sync + 'static {
    /// Writes all of `buf` at byte `offset`. Called on a blocking thread.
    ///
    /// # Errors
    /// Any I/O error; the download stops with it.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()>;

    /// Told once, early in a parallel download, how many bytes will be written, so that it may
    /// reserve the space: a full disk then fails the download at its start rather than near its
    /// end, and writes go to blocks already allocated. For a range that reaches the end of the
    /// object the length is only known (the final frame authenticated) after the piece holding
    /// it was written; for a shorter range it is the range's, before any write. Called on a
    /// blocking thread. The default (and `std::fs::File`'s) does nothing; the `s3crypt` CLI
    /// reserves with `fallocate`.
    ///
    /// # Errors
    /// Any I/O error (no space, say); the download stops with it.
    fn allocate(&self, len: u64) -> std::io::Result<()> {
        let _ = len;
        Ok(())
    }
}

impl PositionalSink for std::fs::File {
    #[cfg(unix)]
    fn write_all_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(self, buf, offset)
    }

    #[cfg(windows)]
    fn write_all_at(&self, mut buf: &[u8], mut offset: u64) -> std::io::Result<()> {
        use std::os::windows::fs::FileExt;
        while !buf.is_empty() {
            match self.seek_write(buf, offset) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    buf = &buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Data(b) => write!(f, "Data({} bytes)", b.len()),
            Msg::Done => f.write_str("Done"),
            Msg::Err(e) => write!(f, "Err({e})"),
        }
    }
}

impl PlaintextStream {
    fn ready(fetch: Fetch, what: What) -> Self {
        Self {
            state: State::Ready(Box::new(Job { fetch, what })),
        }
    }

    /// An error if the stream already ended with one (reported by [`PlaintextStream::next`]):
    /// what is left of it must not pass for a complete transfer.
    fn not_failed(&self) -> Result<()> {
        match self.state {
            State::Running { failed: true, .. } => Err(Error::Io(std::io::Error::other(
                "the download already failed",
            ))),
            _ => Ok(()),
        }
    }

    /// Starts the transfer, in order, if it has not started yet.
    fn start(&mut self) {
        self.state = match std::mem::replace(&mut self.state, State::Over) {
            State::Ready(job) => job.fetch.ordered(job.what),
            other => other,
        };
    }

    /// The next chunk of authenticated plaintext; `None` once everything verified.
    pub async fn next(&mut self) -> Option<Result<Bytes>> {
        std::future::poll_fn(|cx| self.poll_chunk(cx)).await
    }

    /// The next chunk (what a partial `AsyncRead` left over first); `None` once everything
    /// verified. A stream that failed keeps failing: `None` is never its answer.
    fn poll_chunk(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Bytes>>> {
        use std::task::Poll;
        self.start();
        let State::Running {
            rx,
            finished,
            failed,
            delivered,
            leftover,
        } = &mut self.state
        else {
            return Poll::Ready(None);
        };
        if !leftover.is_empty() {
            let b = std::mem::take(leftover);
            *delivered += b.len() as u64;
            return Poll::Ready(Some(Ok(b)));
        }
        if *finished {
            return Poll::Ready(failed.then(|| {
                Err(Error::Io(std::io::Error::other(
                    "the download already failed",
                )))
            }));
        }
        Poll::Ready(match std::task::ready!(rx.poll_recv(cx)) {
            Some(Msg::Data(b)) => {
                *delivered += b.len() as u64;
                Some(Ok(b))
            }
            Some(Msg::Done) => {
                *finished = true;
                None
            }
            Some(Msg::Err(e)) => {
                (*finished, *failed) = (true, true);
                Some(Err(e))
            }
            None => {
                (*finished, *failed) = (true, true);
                Some(Err(Error::Io(std::io::Error::other(
                    "the download stopped before the object was verified",
                ))))
            }
        })
    }

    /// The plaintext as an `AsyncRead` (this stream implements it; the method is for symmetry
    /// with the SDK's `ByteStream::into_async_read`).
    pub fn into_async_read(self) -> impl tokio::io::AsyncRead + Send + Unpin {
        self
    }

    /// All of the plaintext in memory, once the whole message (or range) verified.
    ///
    /// # Errors
    /// Any download or decryption error; nothing is returned then.
    pub async fn collect(mut self) -> Result<Bytes> {
        self.not_failed()?;
        let mut out = bytes::BytesMut::new();
        while let Some(chunk) = self.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out.freeze())
    }

    /// Writes all of the plaintext to `w` and flushes it; returns the bytes written.
    ///
    /// # Errors
    /// Any download or decryption error, or [`Error::Io`] if writing fails. On error, `w` may
    /// hold authenticated plaintext from before the failure: write files under a temporary name.
    pub async fn write_to<W: AsyncWrite + Unpin>(mut self, w: &mut W) -> Result<u64> {
        self.not_failed()?;
        let mut n = 0;
        while let Some(chunk) = self.next().await {
            let chunk = chunk?;
            w.write_all(&chunk).await?;
            n += chunk.len() as u64;
        }
        w.flush().await?;
        Ok(n)
    }

    /// Writes the plaintext into `sink`, each byte at its offset in the served plaintext (the
    /// object's, or the range's: its first byte goes to offset 0), and returns the bytes
    /// written. `progress` sees each piece's length once it is written.
    ///
    /// A large unsigned message is fetched in frame-aligned pieces, `download_concurrency` at a
    /// time; each is authenticated, decrypted in place and written on the blocking pool as soon as
    /// it arrives, in whatever order pieces finish, so a slow request never holds up the others.
    /// Other messages (signed, small, or a stream already being read) are written in order.
    /// Bytes already taken with [`PlaintextStream::next`] are not written again.
    ///
    /// `sink` should start empty: bytes beyond the plaintext's length are left as they are.
    ///
    /// # Errors
    /// Any download or decryption error, or [`Error::Io`] if a write fails or the stream already
    /// failed. On error, `sink` may hold authenticated plaintext at scattered offsets: write
    /// files under a temporary name and remove them on error. Pieces still on the blocking pool
    /// when this returns (or is dropped) stop before their next write; a write under way (at
    /// most half a MiB) may still land in the sink, which they hold until then, just after.
    pub async fn write_at<S: PositionalSink>(
        mut self,
        sink: Arc<S>,
        mut progress: impl FnMut(u64) + Send,
    ) -> Result<u64> {
        self.state = match std::mem::replace(&mut self.state, State::Over) {
            State::Ready(job) => {
                let Job { fetch, what } = *job;
                let what = match what {
                    What::Range { rd, served } => {
                        return fetch.pieces_at(&rd, served, sink, progress).await
                    }
                    What::Whole { info, options } => match fetch.parallel(&info, &options).await? {
                        Some((rd, served)) => {
                            return fetch.pieces_at(&rd, served, sink, progress).await
                        }
                        // (Without asking for the header again.)
                        None => What::Streamed {
                            size: info.size,
                            options,
                        },
                    },
                    streamed @ What::Streamed { .. } => streamed,
                };
                fetch.ordered(what)
            }
            started => started,
        };
        // In order, one chunk at a time off the async threads.
        self.not_failed()?;
        let State::Running { delivered, .. } = &self.state else {
            return Ok(0);
        };
        let (mut at, mut n) = (*delivered, 0);
        while let Some(chunk) = self.next().await {
            let chunk = chunk?;
            let len = chunk.len() as u64;
            let sink = Arc::clone(&sink);
            tokio::task::spawn_blocking(move || write_chunked(sink.as_ref(), &chunk, at)).await??;
            at += len;
            n += len;
            progress(len);
        }
        Ok(n)
    }
}

/// The authenticated plaintext as a `Stream` of `Bytes` chunks, like the AWS SDK's `ByteStream`
/// (use it with `futures::StreamExt`, `axum::body::Body::from_stream`, ...). It ends (`None`)
/// only after the whole message (or range) verified; an error is the last item.
impl futures_core::Stream for PlaintextStream {
    type Item = Result<Bytes>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let State::Running { finished, .. } = &this.state else {
            return this.poll_chunk(cx);
        };
        // After an error has been reported, a stream ends.
        if *finished {
            if let State::Running { leftover, .. } = &this.state {
                if leftover.is_empty() {
                    return std::task::Poll::Ready(None);
                }
            }
        }
        this.poll_chunk(cx)
    }
}

/// Reads the authenticated plaintext in order, for consumers that take an `AsyncRead` (e.g. an
/// upload: [`crate::PutObject::body`]). The end of the stream (`Ok(0)`) comes only after the whole
/// message (or range) verified. Errors arrive as `io::Error`s that carry the [`Error`]
/// (`Error::from` gives it back; [`std::io::Error::get_ref`] shows it).
impl tokio::io::AsyncRead for PlaintextStream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        let this = self.get_mut();
        // (An empty chunk must not read as the end: wait for one with bytes.)
        let next = loop {
            match std::task::ready!(this.poll_chunk(cx)) {
                Some(Ok(chunk)) if chunk.is_empty() => continue,
                other => break other,
            }
        };
        match next {
            Some(Ok(mut chunk)) => {
                let n = chunk.len().min(buf.remaining());
                buf.put_slice(&chunk.split_to(n));
                // What did not fit comes first next time (and counts as delivered then).
                if let State::Running {
                    leftover,
                    delivered,
                    ..
                } = &mut this.state
                {
                    *delivered -= chunk.len() as u64;
                    *leftover = chunk;
                }
                Poll::Ready(Ok(()))
            }
            Some(Err(e)) => Poll::Ready(Err(std::io::Error::other(e))),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl GetObject {
    pub(crate) fn new(client: Client) -> Self {
        Self {
            client,
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
    /// [`Error::NotFound`], [`Error::Service`], [`Error::NotEncrypted`] (ranges need s3crypt
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
            self.client.inner.binding,
            self.allow_moved,
        )?;
        let (info, sse) = head(
            &self.client,
            &bucket,
            &key,
            self.version_id.as_deref(),
            self.sse_c,
        )
        .await?;
        let fetch = Fetch {
            client: self.client.clone(),
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
                body: PlaintextStream::ready(fetch, What::Whole { info, options }),
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

impl Fetch {
    /// Opens the whole object for reading as a copy's source: the header is read, parsed and
    /// opened (unwrapping the data key once for unsigned messages; signed ones and empty
    /// plaintexts are read by the streaming decryptor, which opens the header again).
    pub(crate) async fn open_whole(
        self,
        info: &ObjectInfo,
        options: DecryptOptions,
    ) -> Result<OpenedSource> {
        let header_bytes = self.bytes(0..info.header_length).await?;
        let parsed = Header::read(&header_bytes, &options.limits)?;
        if parsed.len() as u64 != info.header_length {
            return Err(Error::NotEncrypted {
                bucket: self.bucket.clone(),
                key: self.key.clone(),
                reason: "its header length metadata does not match its header".into(),
            });
        }
        let size = info.size;
        if !parsed.header.suite.is_signed() {
            let rd = self.open(parsed, options.clone(), size).await?;
            let header = rd.header().header.clone();
            let len = rd.layout().plaintext_len();
            // The whole plaintext as one range that reaches the end: the final frame is read and
            // verified whatever the size says.
            let what = if len > 0 {
                What::Range { rd, served: 0..len }
            } else {
                What::Streamed { size, options }
            };
            return Ok(OpenedSource {
                header,
                plaintext_len: Some(len),
                body: PlaintextStream::ready(self, what),
            });
        }
        let keyring = self.client.inner.keyring.clone();
        let opts = options.clone();
        let opened = tokio::task::spawn_blocking(move || {
            s3crypt_core::OpenedHeader::open(parsed, keyring.as_ref(), &opts)
        })
        .await??;
        Ok(OpenedSource {
            header: opened.header().clone(),
            plaintext_len: None,
            body: PlaintextStream::ready(self, What::Streamed { size, options }),
        })
    }
}

/// HEAD of the object to read; with `sse_c`, tried with each candidate SSE-C key until S3 accepts
/// one, which is returned (with its candidate number) for the object's other requests.
pub(crate) async fn head(
    client: &Client,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
    sse_c: bool,
) -> Result<(ObjectInfo, Option<(usize, Arc<crate::sse_c::SseCKey>)>)> {
    if !sse_c {
        return Ok((client.head_with(bucket, key, version_id, None).await?, None));
    }
    let source = crate::sse_c::source(client.inner.sse_c.as_ref())?;
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
        match client.head_with(bucket, key, version_id, Some(&k)).await {
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

enum BodyError {
    /// The request failed after the SDK's own retries, or the answer is wrong: final.
    Request(Error),
    /// The body broke off: resumable.
    Body(String),
}

/// A fetch task that is cancelled when its handle is dropped (a failed or abandoned download
/// must not leave ranged GETs running).
struct AbortOnDrop<T>(JoinHandle<Result<T>>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[derive(Clone)]
pub(crate) struct Fetch {
    pub(crate) client: Client,
    pub(crate) bucket: String,
    pub(crate) key: String,
    pub(crate) version_id: Option<String>,
    pub(crate) etag: Option<String>,
    pub(crate) sse: Option<Arc<crate::sse_c::SseCKey>>,
    pub(crate) pool: Pool,
}

/// Ciphertext bytes per ranged GET of a whole-object download (at most; smaller when the part
/// size is). Memory is about `download_concurrency × DOWNLOAD_RANGE` of ciphertext in flight.
pub const DOWNLOAD_RANGE: usize = 8 << 20;

/// Recycles ciphertext buffers across a download's ranged GETs (bounded count, no page faults
/// or allocator growth per range).
#[derive(Clone, Default)]
pub(crate) struct Pool(Arc<std::sync::Mutex<Vec<bytes::BytesMut>>>);

/// Buffers a pool keeps at most; more are freed (a download has at most `download_concurrency`
/// ranges in flight and a few waiting for the reader).
const POOL_MAX: usize = 32;

impl Pool {
    fn get(&self, cap: usize) -> bytes::BytesMut {
        let mut b = self
            .0
            .lock()
            .ok()
            .and_then(|mut p| p.pop())
            .unwrap_or_default();
        b.clear();
        b.reserve(cap);
        b
    }

    fn put(&self, b: bytes::BytesMut) {
        if let Ok(mut p) = self.0.lock() {
            if p.len() < POOL_MAX {
                p.push(b);
            }
        }
    }
}

/// A buffer handed to the reader as [`Bytes`] that returns to its download's [`Pool`] when the
/// reader drops it, so a download reuses a few buffers instead of faulting in fresh memory for
/// every range. The pool is held weakly: once the download is over, buffers are simply freed (a
/// reader keeping one chunk does not keep the pool's other buffers alive).
struct Recycled {
    buf: bytes::BytesMut,
    pool: std::sync::Weak<std::sync::Mutex<Vec<bytes::BytesMut>>>,
}

impl AsRef<[u8]> for Recycled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Recycled {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.upgrade() {
            Pool(pool).put(std::mem::take(&mut self.buf));
        }
    }
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
    async fn bytes_mut(&self, r: Range<u64>) -> Result<bytes::BytesMut> {
        if r.start >= r.end {
            return Ok(bytes::BytesMut::new());
        }
        let want = usize::try_from(r.end - r.start)
            .map_err(|_| Error::InvalidArgument("range too large for memory".into()))?;
        let mut buf = self.pool.get(want);
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
        let req = self.client.inner.s3.get_object();
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

    /// Ciphertext bytes per ranged GET (at most).
    fn chunk(&self) -> u64 {
        self.client
            .inner
            .transfer
            .part_size
            .clamp(1 << 20, DOWNLOAD_RANGE) as u64
    }

    /// Runs `work` on its own task, feeding a [`PlaintextStream`]: an error ends the stream with
    /// that error, and a reader that goes away stops the work.
    fn stream<F>(work: impl FnOnce(mpsc::Sender<Msg>) -> F) -> PlaintextStream
    where
        F: std::future::Future<Output = Result<()>> + Send + 'static,
    {
        // Two decrypted chunks wait for the reader at most; fetching runs `concurrency` ahead.
        let (tx, rx) = mpsc::channel(2);
        let fut = work(tx.clone());
        tokio::spawn(async move {
            match fut.await {
                Ok(()) => {
                    let _ = tx.send(Msg::Done).await;
                }
                Err(e) => {
                    let _ = tx.send(Msg::Err(e)).await;
                }
            }
        });
        PlaintextStream {
            state: State::Running {
                rx,
                finished: false,
                failed: false,
                delivered: 0,
                leftover: Bytes::new(),
            },
        }
    }

    /// Starts `what`, its plaintext delivered in order through a channel.
    fn ordered(self, what: What) -> State {
        let body = match what {
            What::Whole { info, options } => {
                Self::stream(move |tx| async move { self.whole_into(&info, options, &tx).await })
            }
            What::Range { rd, served } => {
                Self::stream(move |tx| async move { self.pieces(&rd, served, &tx).await })
            }
            What::Streamed { size, options } => {
                Self::stream(move |tx| async move { self.streamed(size, options, &tx).await })
            }
        };
        body.state
    }

    /// Whether the whole message can be read in parallel pieces: for an unsigned message larger
    /// than one ranged GET, its header is fetched and opened, and the opened message and its
    /// whole plaintext range are returned. The layout comes from the object's size and the
    /// authenticated header, so a complete, untruncated message is still required. `None`
    /// leaves the message to one [`Decryptor`] in order: signed messages (the signature covers
    /// everything), small ones, and headers the metadata misplaces.
    async fn parallel(
        &self,
        info: &ObjectInfo,
        options: &DecryptOptions,
    ) -> Result<Option<(Arc<RangeDecryptor>, Range<u64>)>> {
        if info.suite.is_signed() || info.size <= self.chunk() {
            return Ok(None);
        }
        let header_bytes = self.bytes(0..info.header_length).await?;
        // The metadata is not authenticated: the header decides. A header that does not parse
        // from the bytes the metadata points at (or a signed one) is left to the streaming
        // decryptor, which needs no metadata and reports what is wrong.
        let parsed = Header::read(&header_bytes, &options.limits)
            .ok()
            .filter(|p| !p.header.suite.is_signed());
        let Some(parsed) = parsed else {
            return Ok(None);
        };
        let rd = self.open(parsed, options.clone(), info.size).await?;
        let len = rd.layout().plaintext_len();
        // (A large message with no plaintext can only be a crafted one: the streaming decryptor
        // reads it like any other.)
        Ok((len > 0).then_some((rd, 0..len)))
    }

    /// The whole message, in order: in parallel pieces (see [`Fetch::parallel`] and
    /// [`Fetch::pieces`]) or through one [`Decryptor`].
    async fn whole_into(
        &self,
        info: &ObjectInfo,
        options: DecryptOptions,
        tx: &mpsc::Sender<Msg>,
    ) -> Result<()> {
        match self.parallel(info, &options).await? {
            Some((rd, served)) => self.pieces(&rd, served, tx).await,
            None => self.streamed(info.size, options, tx).await,
        }
    }

    /// The whole message in order through one [`Decryptor`], fetched `concurrency` ranges ahead.
    async fn streamed(
        &self,
        size: u64,
        options: DecryptOptions,
        tx: &mpsc::Sender<Msg>,
    ) -> Result<()> {
        let chunk = self.chunk();
        let concurrency = self.client.inner.transfer.download_concurrency;
        let mut dec = Some(Decryptor::new(self.client.inner.keyring.clone(), options));
        let mut pending: VecDeque<AbortOnDrop<Bytes>> = VecDeque::new();
        let mut next = 0u64;
        loop {
            while pending.len() < concurrency && next < size {
                let r = next..(next + chunk).min(size);
                next = r.end;
                let f = self.clone();
                pending.push_back(AbortOnDrop(tokio::spawn(async move { f.bytes(r).await })));
            }
            let Some(mut h) = pending.pop_front() else {
                break;
            };
            // A reader that went away stops the download now, not at the next send.
            let data = tokio::select! {
                r = &mut h.0 => r??,
                () = tx.closed() => return Ok(()),
            };
            let mut d = dec
                .take()
                .ok_or_else(|| Error::Internal("decryptor lost".into()))?;
            let pool = self.pool.clone();
            let (d, out) = tokio::task::spawn_blocking(move || {
                let mut out = Vec::with_capacity(data.len());
                let r = d.update(&data, &mut out);
                if let Ok(b) = data.try_into_mut() {
                    pool.put(b);
                }
                r.map(|()| (d, out))
            })
            .await??;
            dec = Some(d);
            if !out.is_empty() && tx.send(Msg::Data(Bytes::from(out))).await.is_err() {
                return Ok(());
            }
        }
        let d = dec
            .take()
            .ok_or_else(|| Error::Internal("decryptor lost".into()))?;
        let out = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            d.finish(&mut out).map(|_| out)
        })
        .await??;
        if !out.is_empty() {
            let _ = tx.send(Msg::Data(Bytes::from(out))).await;
        }
        Ok(())
    }

    /// Opens a parsed header for range decryption (unwrapping the data key off the async
    /// threads: a keyring may block).
    async fn open(
        &self,
        parsed: s3crypt_core::ParsedHeader,
        options: DecryptOptions,
        size: u64,
    ) -> Result<Arc<RangeDecryptor>> {
        let keyring = self.client.inner.keyring.clone();
        let rd = tokio::task::spawn_blocking(move || {
            RangeDecryptor::new(parsed, keyring.as_ref(), &options, size)
        })
        .await??;
        Ok(Arc::new(rd))
    }

    /// Opens the message for plaintext range `r`: the opened message and the range served.
    async fn range(
        &self,
        info: &ObjectInfo,
        r: ByteRange,
        options: DecryptOptions,
    ) -> Result<(Arc<RangeDecryptor>, Range<u64>)> {
        let header_bytes = self.bytes(0..info.header_length).await?;
        let parsed = Header::read(&header_bytes, &options.limits)?;
        let rd = self.open(parsed, options, info.size).await?;
        let want = r.resolve(rd.layout().plaintext_len());
        // Fail early (416-style) before anything is fetched.
        let served = rd.plan(want)?.plaintext;
        Ok((rd, served))
    }

    /// Plaintext `served` (a non-empty range of an unsigned message) fetched and authenticated in
    /// frame-aligned pieces of about one download range each, `concurrency` ahead, each decrypted
    /// in place on a blocking thread (pieces in parallel), released in order: memory stays
    /// bounded whatever the range, and plaintext is never copied out of the buffer it arrived in.
    async fn pieces(
        &self,
        rd: &Arc<RangeDecryptor>,
        served: Range<u64>,
        tx: &mpsc::Sender<Msg>,
    ) -> Result<()> {
        let (span, concurrency) = self.piece_shape(rd);
        let mut pending: VecDeque<AbortOnDrop<Bytes>> = VecDeque::new();
        let mut pieces = aligned_steps(served, span);
        loop {
            while pending.len() < concurrency {
                let Some(piece) = pieces.next() else {
                    break;
                };
                let plan = rd.plan(piece)?;
                let (f, rd) = (self.clone(), rd.clone());
                pending.push_back(AbortOnDrop(tokio::spawn(async move {
                    let pool = Arc::downgrade(&f.pool.0);
                    f.piece(rd, plan, move |buf| {
                        Ok(Bytes::from_owner(Recycled { buf, pool }))
                    })
                    .await
                })));
            }
            let Some(mut h) = pending.pop_front() else {
                return Ok(());
            };
            let out = tokio::select! {
                r = &mut h.0 => r??,
                () = tx.closed() => return Ok(()),
            };
            if tx.send(Msg::Data(out)).await.is_err() {
                return Ok(());
            }
        }
    }

    /// Plaintext `served` (a non-empty range of an unsigned message) written into `sink` at its
    /// offsets (less `served.start`): the same pieces as [`Fetch::pieces`], each written on its
    /// blocking thread right after it authenticated, in whatever order they finish. Returns the
    /// bytes written.
    async fn pieces_at<S: PositionalSink>(
        &self,
        rd: &Arc<RangeDecryptor>,
        served: Range<u64>,
        sink: Arc<S>,
        mut progress: impl FnMut(u64) + Send,
    ) -> Result<u64> {
        let (span, concurrency) = self.piece_shape(rd);
        let len = served.end - served.start;
        // The space to reserve is the plaintext's length. For a range that reaches the end of the
        // message, that length comes from the object's size (which anyone who can write the
        // object chooses) until the piece holding the final frame verified: that piece goes
        // first, and the reservation waits for it. A range that stops short has the length the
        // caller asked for.
        let mut tail = (served.end == rd.layout().plaintext_len())
            .then(|| ((served.end - 1) / span * span).max(served.start)..served.end);
        if tail.is_none() {
            reserve(&sink, len).await?;
        }
        let mut body = aligned_steps(
            served.start..tail.as_ref().map_or(served.end, |t| t.start),
            span,
        );
        // Pieces still running on the blocking pool when this ends (an error, or the caller
        // giving up: dropping the set aborts only the async side) stop before their next write.
        let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
        let mut tasks: JoinSet<Result<(u64, bool)>> = JoinSet::new();
        let mut written = 0;
        // One write at a time: a file system locks the file for a buffered write anyway, and a
        // writer waiting for that lock spins on the CPU, while one waiting here sleeps.
        let gate = Arc::new(std::sync::Mutex::new(()));
        loop {
            while tasks.len() < concurrency {
                let Some((piece, is_tail)) = tail
                    .take()
                    .map(|t| (t, true))
                    .or_else(|| body.next().map(|p| (p, false)))
                else {
                    break;
                };
                let plan = rd.plan(piece)?;
                let (f, rd, sink) = (self.clone(), rd.clone(), sink.clone());
                let (gate, stop) = (gate.clone(), stop.0.clone());
                let base = served.start;
                tasks.spawn(async move {
                    let mut ct = f.bytes_mut(plan.ciphertext.clone()).await?;
                    let pool = f.pool.clone();
                    tokio::task::spawn_blocking(move || {
                        let out = Turns {
                            sink: sink.as_ref(),
                            gate: &gate,
                            stop: &stop,
                            base,
                        };
                        let r = write_piece(&rd, &plan, &mut ct, &out);
                        pool.put(ct);
                        r.map(|n| (n, is_tail))
                    })
                    .await
                    .map_err(Error::from)?
                });
            }
            let Some(done) = tasks.join_next().await else {
                return Ok(written);
            };
            let (n, was_tail) = done??;
            if was_tail {
                // The final frame verified: the message is as long as its layout says.
                reserve(&sink, len).await?;
            }
            written += n;
            progress(n);
        }
    }

    /// Frame-aligned pieces for `rd`: plaintext bytes per piece, and how many pieces run at once.
    fn piece_shape(&self, rd: &RangeDecryptor) -> (u64, usize) {
        let slot =
            u64::from(rd.header().header.frame_length) + s3crypt_core::key::REGULAR_OVERHEAD as u64;
        let frames = (self.chunk() / slot).max(1);
        let span = frames * u64::from(rd.header().header.frame_length);
        // Frames larger than a download range make pieces larger too: keep the bytes in flight
        // (not the count of pieces) at `download_concurrency` ranges' worth.
        let piece = frames * slot;
        let concurrency = usize::try_from(
            (self.client.inner.transfer.download_concurrency as u64 * self.chunk() / piece).max(1),
        )
        .unwrap_or(1);
        (span, concurrency)
    }

    /// One piece: its ciphertext fetched, then on a blocking thread authenticated and decrypted in
    /// place, and the plaintext (the front of the buffer) handed to `then`.
    async fn piece<T: Send + 'static>(
        &self,
        rd: Arc<RangeDecryptor>,
        plan: s3crypt_core::range::RangePlan,
        then: impl FnOnce(bytes::BytesMut) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let mut ct = self.bytes_mut(plan.ciphertext.clone()).await?;
        tokio::task::spawn_blocking(move || {
            let n = rd.decrypt_in_place(&plan, &mut ct)?;
            ct.truncate(n);
            then(ct)
        })
        .await
        .map_err(Error::from)?
    }
}

/// Plaintext decrypted and written per step of [`write_piece`]: small enough that what was just
/// decrypted is still in the CPU's cache when it is copied into the file (one decrypt-then-write
/// pass over a whole piece costs noticeably more: the copy then reads it back from memory).
const WRITE_STEP: u64 = 512 << 10;

/// Bytes per write call. Larger writes make the page cache allocate large folios, and on virtual
/// machines that hand free memory back to the host, the first touch of such fresh memory is
/// costly: on the 2-core VM of `scripts/bench-s3`, 512 KiB writes cost 1.28 s of system time per
/// GiB downloaded against 0.87 s for 32 or 64 KiB writes (the size `cp`-like tools use).
const WRITE_CHUNK: usize = 64 << 10;

/// Writes `buf` at `offset` in writes of at most [`WRITE_CHUNK`] bytes.
fn write_chunked<S: PositionalSink + ?Sized>(
    sink: &S,
    buf: &[u8],
    offset: u64,
) -> std::io::Result<()> {
    let mut offset = offset;
    for w in buf.chunks(WRITE_CHUNK) {
        sink.write_all_at(w, offset)?;
        offset += w.len() as u64;
    }
    Ok(())
}

/// Where a piece of [`Fetch::pieces_at`] writes: the sink, at offsets less `base`, one writer at
/// a time (`gate`), unless the download is over (`stop`).
struct Turns<'a, S: ?Sized> {
    sink: &'a S,
    gate: &'a std::sync::Mutex<()>,
    stop: &'a AtomicBool,
    base: u64,
}

/// Sets its flag when dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Reserves `len` bytes in `sink` (see [`PositionalSink::allocate`]), off the async threads.
async fn reserve<S: PositionalSink>(sink: &Arc<S>, len: u64) -> Result<()> {
    let s = Arc::clone(sink);
    tokio::task::spawn_blocking(move || s.allocate(len)).await??;
    Ok(())
}

/// Authenticates and decrypts `ct` (the ciphertext of `plan`) in place, a few frames at a time,
/// writing each step's plaintext at its offset right after it verified. Returns the bytes
/// written.
fn write_piece<S: PositionalSink + ?Sized>(
    rd: &RangeDecryptor,
    plan: &s3crypt_core::range::RangePlan,
    ct: &mut [u8],
    out: &Turns<'_, S>,
) -> Result<u64> {
    let frame = u64::from(rd.header().header.frame_length);
    // Steps end on multiples of `step` (whole frames), so no frame is in two steps even when
    // the piece starts inside a frame.
    let step = (WRITE_STEP / frame).max(1) * frame;
    for part in aligned_steps(plan.plaintext.clone(), step) {
        let sub = rd.plan(part)?;
        let from = usize::try_from(sub.ciphertext.start - plan.ciphertext.start)
            .map_err(|_| Error::InvalidArgument("piece too large".into()))?;
        let to = usize::try_from(sub.ciphertext.end - plan.ciphertext.start)
            .map_err(|_| Error::InvalidArgument("piece too large".into()))?;
        let buf = ct
            .get_mut(from..to)
            .ok_or_else(|| Error::InvalidArgument("the piece's ciphertext is short".into()))?;
        let n = rd.decrypt_in_place(&sub, buf)?;
        // (A writer that panicked poisons the gate; what it guards is only the turn to write.)
        let _turn = out
            .gate
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if out.stop.load(Ordering::SeqCst) {
            return Err(Error::Cancelled);
        }
        write_chunked(out.sink, &buf[..n], sub.plaintext.start - out.base)?;
    }
    Ok(plan.plaintext.end - plan.plaintext.start)
}
