//! Driving a download: ranged GETs `download_concurrency` ahead, decrypted on the blocking pool
//! (in parallel pieces for unsigned messages, through one decryptor in order otherwise), fed to
//! a channel the [`super::PlaintextStream`] reads, or written at their offsets.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use bytes::Bytes;
use s3crypt_core::range::{aligned_steps, RangeDecryptor};
use s3crypt_core::{DecryptOptions, Decryptor, Header};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::plan::{piece_shape, range_len};
use super::sink::{reserve, write_piece, PositionalSink, StopOnDrop, Turns};
use crate::error::{Error, Result};
use crate::metadata::ObjectInfo;
use crate::transport::blocking;
use crate::transport::fetch::{AbortOnDrop, Fetch};
use crate::transport::pool::Recycled;
use s3crypt_core::range::ByteRange;

/// Messages up to this size are decrypted on the async task when the keyring does not block (see
/// [`Fetch::streamed`]): opening one frame costs microseconds.
const SMALL_INLINE: u64 = 64 << 10;

/// What a running download sends its reader.
pub(super) enum Msg {
    Data(Bytes),
    Done,
    Err(Error),
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

/// A download not yet started.
pub(super) struct Job {
    pub(super) fetch: Fetch,
    pub(super) what: What,
}

/// What a download fetches.
pub(super) enum What {
    /// The whole object, as its metadata describes it, with its first bytes if they were
    /// fetched already.
    Whole {
        info: ObjectInfo,
        options: DecryptOptions,
        prefix: Bytes,
    },
    /// Plaintext `served` of an opened message.
    Range {
        rd: Arc<RangeDecryptor>,
        served: Range<u64>,
    },
    /// The whole object of `size` bytes, known to need the streaming decryptor, with its first
    /// bytes if they were fetched already.
    Streamed {
        size: u64,
        options: DecryptOptions,
        prefix: Bytes,
    },
}

/// Runs `work` on its own task, feeding the returned channel: an error ends it with that error,
/// and a reader that goes away stops the work.
fn spawn<F>(work: impl FnOnce(mpsc::Sender<Msg>) -> F) -> mpsc::Receiver<Msg>
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
    rx
}

/// Starts `what`, its plaintext delivered in order through the returned channel.
pub(super) fn ordered(fetch: Fetch, what: What) -> mpsc::Receiver<Msg> {
    match what {
        What::Whole {
            info,
            options,
            prefix,
        } => spawn(move |tx| async move { fetch.whole_into(&info, options, prefix, &tx).await }),
        What::Range { rd, served } => {
            spawn(move |tx| async move { fetch.pieces(&rd, served, &tx).await })
        }
        What::Streamed {
            size,
            options,
            prefix,
        } => spawn(move |tx| async move { fetch.streamed(size, options, prefix, &tx).await }),
    }
}

impl Fetch {
    /// Whether the whole message can be read in parallel pieces: for an unsigned message larger
    /// than one ranged GET, its header is fetched and opened, and the opened message and its
    /// whole plaintext range are returned. The layout comes from the object's size and the
    /// authenticated header, so a complete, untruncated message is still required. `None`
    /// leaves the message to one [`Decryptor`] in order: signed messages (the signature covers
    /// everything), small ones, and headers the metadata misplaces.
    pub(super) async fn parallel(
        &self,
        info: &ObjectInfo,
        options: &DecryptOptions,
        prefix: &Bytes,
    ) -> Result<Option<(Arc<RangeDecryptor>, Range<u64>)>> {
        if info.suite.is_signed() || info.size <= range_len(self.shared.transfer.part_size) {
            return Ok(None);
        }
        let header_bytes = match usize::try_from(info.header_length) {
            Ok(n) if n <= prefix.len() => prefix.slice(..n),
            _ => self.bytes(0..info.header_length).await?,
        };
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
    pub(super) async fn whole_into(
        &self,
        info: &ObjectInfo,
        options: DecryptOptions,
        prefix: Bytes,
        tx: &mpsc::Sender<Msg>,
    ) -> Result<()> {
        match self.parallel(info, &options, &prefix).await? {
            Some((rd, served)) => self.pieces(&rd, served, tx).await,
            None => self.streamed(info.size, options, prefix, tx).await,
        }
    }

    /// The whole message in order through one [`Decryptor`], fetched `concurrency` ranges ahead
    /// (after `prefix`, its first bytes if they were fetched already). The last chunk is
    /// decrypted and the message finished in one step; a chunk of a small message with a keyring
    /// that does not block is decrypted on the calling task (a hand-off to the blocking pool would
    /// cost more than the work).
    pub(super) async fn streamed(
        &self,
        size: u64,
        options: DecryptOptions,
        prefix: Bytes,
        tx: &mpsc::Sender<Msg>,
    ) -> Result<()> {
        let chunk = range_len(self.shared.transfer.part_size);
        let concurrency = self.shared.transfer.download_concurrency;
        // Inline only for unsigned suites (a signature check costs a millisecond); the header in
        // the prefix says which (unauthenticated, which only decides where the work runs).
        let inline = size <= SMALL_INLINE
            && !self.shared.keyring.may_block()
            && Header::read(&prefix, &options.limits).is_ok_and(|p| !p.header.suite.is_signed());
        let mut dec = Some(Decryptor::new(self.shared.keyring.clone(), options));
        let mut pending: VecDeque<AbortOnDrop<Bytes>> = VecDeque::new();
        let mut next = (prefix.len() as u64).min(size);
        let mut first = (!prefix.is_empty()).then_some(prefix);
        loop {
            while pending.len() < concurrency && next < size {
                let r = next..(next + chunk).min(size);
                next = r.end;
                let f = self.clone();
                pending.push_back(AbortOnDrop(tokio::spawn(async move { f.bytes(r).await })));
            }
            let data = match first.take() {
                Some(p) => p,
                None => {
                    let Some(mut h) = pending.pop_front() else {
                        break;
                    };
                    // A reader that went away stops the download now, not at the next send.
                    tokio::select! {
                        r = &mut h.0 => r??,
                        () = tx.closed() => return Ok(()),
                    }
                }
            };
            let last = pending.is_empty() && next >= size;
            let d = dec
                .take()
                .ok_or_else(|| Error::Internal("decryptor lost".into()))?;
            let pool = self.pool.clone();
            let step = move || -> Result<(Option<Decryptor>, Vec<u8>)> {
                let mut out = Vec::with_capacity(data.len());
                let mut d = d;
                let r = d.update(&data, &mut out);
                if let Ok(b) = data.try_into_mut() {
                    pool.put(b);
                }
                r?;
                if last {
                    d.finish(&mut out)?;
                    return Ok((None, out));
                }
                Ok((Some(d), out))
            };
            let (d, out) = if inline {
                step()?
            } else {
                blocking(step).await?
            };
            if !out.is_empty() && tx.send(Msg::Data(Bytes::from(out))).await.is_err() {
                return Ok(());
            }
            match d {
                Some(d) => dec = Some(d),
                None => return Ok(()),
            }
        }
        // Nothing came (an empty object): the decryptor reports what is missing.
        let d = dec
            .take()
            .ok_or_else(|| Error::Internal("decryptor lost".into()))?;
        let out = blocking(move || {
            let mut out = Vec::new();
            d.finish(&mut out).map(|_| out)
        })
        .await?;
        if !out.is_empty() {
            let _ = tx.send(Msg::Data(Bytes::from(out))).await;
        }
        Ok(())
    }

    /// Opens a parsed header for range decryption (unwrapping the data key off the async
    /// threads: a keyring may block).
    pub(super) async fn open(
        &self,
        parsed: s3crypt_core::ParsedHeader,
        options: DecryptOptions,
        size: u64,
    ) -> Result<Arc<RangeDecryptor>> {
        let keyring = self.shared.keyring.clone();
        let rd =
            blocking(move || RangeDecryptor::new(parsed, keyring.as_ref(), &options, size)).await?;
        Ok(Arc::new(rd))
    }

    /// Opens the message for plaintext range `r`: the opened message and the range served.
    pub(super) async fn range(
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
    pub(super) async fn pieces(
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
                    let pool = f.pool.clone();
                    f.piece(rd, plan, move |buf| Ok(Recycled::bytes(buf, &pool)))
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
    pub(super) async fn pieces_at<S: PositionalSink>(
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
                    blocking(move || {
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
    pub(super) fn piece_shape(&self, rd: &RangeDecryptor) -> (u64, usize) {
        piece_shape(
            rd.header().header.frame_length,
            range_len(self.shared.transfer.part_size),
            self.shared.transfer.download_concurrency,
        )
    }

    /// One piece: its ciphertext fetched, then on a blocking thread authenticated and decrypted in
    /// place, and the plaintext (the front of the buffer) handed to `then`.
    pub(super) async fn piece<T: Send + 'static>(
        &self,
        rd: Arc<RangeDecryptor>,
        plan: s3crypt_core::range::RangePlan,
        then: impl FnOnce(bytes::BytesMut) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let mut ct = self.bytes_mut(plan.ciphertext.clone()).await?;
        blocking(move || {
            let n = rd.decrypt_in_place(&plan, &mut ct)?;
            ct.truncate(n);
            then(ct)
        })
        .await
    }
}
