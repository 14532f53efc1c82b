//! The plaintext of a download as it verifies: a stream of chunks, an `AsyncRead`, or positional
//! writes into a file.

use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::drive::{ordered, Job, Msg, What};
use super::sink::{write_chunked, PositionalSink};
use crate::error::{Error, Result};
use crate::transport::blocking;
use crate::transport::fetch::Fetch;

/// Authenticated plaintext. [`PlaintextStream::next`] yields it in order and returns `None` only
/// after the whole message (or range) verified; an interrupted transfer is an error, never a
/// silent end. [`PlaintextStream::write_at`] instead writes it into a file at its offsets, pieces
/// in parallel and in any order, which is faster for large objects.
///
/// The transfer starts when the body is first read (or written).
pub struct PlaintextStream {
    pub(super) state: State,
}

pub(super) enum State {
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

/// A running download's state, reading what `rx` delivers.
fn running(rx: mpsc::Receiver<Msg>) -> State {
    State::Running {
        rx,
        finished: false,
        failed: false,
        delivered: 0,
        leftover: Bytes::new(),
    }
}

impl PlaintextStream {
    pub(super) fn ready(fetch: Fetch, what: What) -> Self {
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
            State::Ready(job) => running(ordered(job.fetch, job.what)),
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
                    What::Whole {
                        info,
                        options,
                        prefix,
                    } => match fetch.parallel(&info, &options, &prefix).await? {
                        Some((rd, served)) => {
                            return fetch.pieces_at(&rd, served, sink, progress).await
                        }
                        // (Without asking for the header again.)
                        None => What::Streamed {
                            size: info.size,
                            options,
                            prefix,
                        },
                    },
                    streamed @ What::Streamed { .. } => streamed,
                };
                running(ordered(fetch, what))
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
            blocking(move || write_chunked(sink.as_ref(), &chunk, at)).await?;
            at += len;
            n += len;
            progress(len);
        }
        Ok(n)
    }
}

impl From<PlaintextStream> for crate::body::Body {
    /// Another object's plaintext, as it verifies (re-encrypting a download).
    fn from(s: PlaintextStream) -> Self {
        Self::from_reader(s)
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
