//! The stream pipeline: a reader thread, worker threads, and the calling thread writing in order.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};

use super::{
    final_plaintext, finish_signature, guarded, open_regular_frames, seal_batch, write_finished,
    Finished, Geometry, PipelineOptions,
};
use crate::decrypt::{DecryptOptions, DecryptSummary, OpenedHeader};
use crate::encrypt::{EncryptSummary, Encryptor};
use crate::error::{Error, Malformed, Result};
use crate::key::{MessageKey, FINAL_MARKER, FINAL_OVERHEAD, FINAL_PREFIX, REGULAR_PREFIX};
use crate::keyring::Keyring;
use crate::signature::{Verifier, MAX_SIGNATURE_LEN};

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Appends to `buf` from `r` until it holds `limit` bytes or the input ends, growing the buffer
/// geometrically so that the allocation follows the data actually received.
fn read_growing(r: &mut impl Read, buf: &mut Vec<u8>, limit: usize) -> std::io::Result<()> {
    while buf.len() < limit {
        let start = buf.len();
        let want = (limit - start).min(start.max(64 << 10));
        buf.resize(start + want, 0);
        let n = read_full(r, &mut buf[start..])?;
        buf.truncate(start + n);
        if n < want {
            break;
        }
    }
    Ok(())
}

/// A unit of work: a batch of frames in a buffer.
struct Job {
    index: u64,
    buf: Vec<u8>,
    first_seq: u32,
    regular: usize,
    tail: Option<Tail>,
}

/// The end of a message, carried by the last job.
enum Tail {
    /// Encryption: the final frame's plaintext length (it sits after the regular frames).
    EncryptFinal(usize),
    /// Decryption: the final frame and footer bytes, plus the signature verifier.
    DecryptFinal {
        bytes: Vec<u8>,
        verifier: Option<Box<Verifier>>,
    },
}

/// What the reader made of one batch of input.
enum Batch {
    /// A batch of frames; more follow.
    More(Job),
    /// The batch that ends the message.
    Last(Job),
    /// The input cannot go on: the frames of `job` (if any) are still processed and released in
    /// order, then the error is reported.
    Fail(Option<Job>, Error),
}

/// Numbers the batches a reader cuts: the first frame sequence number of each, and the frames
/// counted so far.
struct Numbering<'a> {
    seq: u32,
    frames: &'a mut u64,
}

impl<'a> Numbering<'a> {
    fn new(frames: &'a mut u64) -> Self {
        Self { seq: 1, frames }
    }

    /// Whether `regular` more frames keep the sequence below the final frame marker.
    fn fits(&self, regular: usize) -> bool {
        u64::from(self.seq) + regular as u64 <= u64::from(FINAL_MARKER)
    }

    /// A job for batch `index` of `regular` frames (and the message's end when `tail` is given).
    fn job(&self, index: u64, buf: Vec<u8>, regular: usize, tail: Option<Tail>) -> Job {
        Job {
            index,
            buf,
            first_seq: self.seq,
            regular,
            tail,
        }
    }

    /// [`Numbering::job`], counted, as the batch the reader hands on.
    fn batch(&mut self, index: u64, buf: Vec<u8>, regular: usize, tail: Option<Tail>) -> Batch {
        let last = tail.is_some();
        *self.frames += regular as u64 + u64::from(last);
        let job = self.job(index, buf, regular, tail);
        // (fits() was checked: no overflow.)
        self.seq += regular as u32;
        if last {
            Batch::Last(job)
        } else {
            Batch::More(job)
        }
    }
}

struct Done {
    index: u64,
    result: Result<Finished>,
}

/// Writes finished batches in index order; returns the buffers to the pool.
fn write_in_order(
    done_rx: Receiver<Done>,
    mut give_back: impl FnMut(Vec<u8>),
    output: &mut dyn Write,
    mut on_bytes: impl FnMut(&[u8]),
    mut on_batch: impl FnMut(u64),
) -> Result<u64> {
    let mut pending = BTreeMap::new();
    let mut next = 0u64;
    let mut plaintext = 0;
    for done in done_rx {
        pending.insert(done.index, done.result);
        while let Some(result) = pending.remove(&next) {
            let f = result?;
            write_finished(output, &f, &mut on_bytes)?;
            plaintext += f.plaintext;
            on_batch(f.plaintext);
            next += 1;
            if f.last {
                output.flush()?;
                return Ok(plaintext);
            }
            give_back(f.buf);
        }
    }
    Err(Error::Io(std::io::Error::other(
        "a pipeline thread stopped unexpectedly",
    )))
}

/// Runs jobs until the job channel closes or the writer goes away. Each worker owns a handle to
/// the job receiver, so when every worker has stopped the reader's sends fail instead of blocking.
fn worker(
    jobs: &Mutex<Receiver<Job>>,
    done: &SyncSender<Done>,
    work: &(impl Fn(Job) -> Result<Finished> + Sync),
) {
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        let index = job.index;
        let result = guarded(|| work(job));
        if done.send(Done { index, result }).is_err() {
            return;
        }
    }
}

/// The stream pipeline shared by [`encrypt`] and [`decrypt`]: `read_batch` (on a reader thread)
/// fills pool buffers with batches, `work` (on `threads` workers) seals or opens them, and the
/// calling thread writes them in order. Returns the plaintext bytes written.
fn run_stream(
    g: &Geometry,
    threads: usize,
    mut read_batch: impl FnMut(u64, Vec<u8>) -> Batch + Send,
    work: impl Fn(Job) -> Result<Finished> + Sync,
    output: &mut dyn Write,
    on_bytes: impl FnMut(&[u8]),
    on_batch: impl FnMut(u64),
) -> Result<u64> {
    let (free_tx, free_rx) = sync_channel::<Vec<u8>>(g.pool);
    for _ in 0..g.pool {
        let _ = free_tx.send(Vec::new());
    }
    let (job_tx, job_rx) = sync_channel::<Job>(g.pool);
    let job_rx = Arc::new(Mutex::new(job_rx));
    let (done_tx, done_rx) = sync_channel::<Done>(g.pool);
    std::thread::scope(|s| {
        let reader_done = done_tx.clone();
        s.spawn(move || {
            for index in 0.. {
                let Ok(buf) = free_rx.recv() else { return };
                match read_batch(index, buf) {
                    Batch::More(job) => {
                        if job_tx.send(job).is_err() {
                            return;
                        }
                    }
                    Batch::Last(job) => {
                        let _ = job_tx.send(job);
                        return;
                    }
                    Batch::Fail(job, e) => {
                        let at = index + u64::from(job.is_some());
                        if let Some(job) = job {
                            let _ = job_tx.send(job);
                        }
                        let _ = reader_done.send(Done {
                            index: at,
                            result: Err(e),
                        });
                        return;
                    }
                }
            }
        });
        let work = &work;
        for _ in 0..threads.max(1) {
            let (done, job_rx) = (done_tx.clone(), Arc::clone(&job_rx));
            s.spawn(move || worker(&job_rx, &done, work));
        }
        drop((done_tx, job_rx));
        // Moved in: the pool's sender goes when the writer stops, which stops the reader.
        let give_back = move |buf| {
            let _ = free_tx.send(buf);
        };
        write_in_order(done_rx, give_back, output, on_bytes, on_batch)
    })
}

/// Encrypts all of `input` into `output` with `enc`, on `opts.threads` worker threads.
/// `progress` is called with the number of plaintext bytes of each batch written.
///
/// When the input length is a multiple of the frame length, the message ends with an empty final
/// frame (as the Python ESDK writes it); every ESDK reads both forms.
///
/// # Errors
/// [`Error::Io`] if reading or writing fails; [`Error::InvalidArgument`] if the input needs more
/// than 2^32 - 1 frames or holds more than the declared [`crate::EncryptOptions::plaintext_length`].
/// On error the output holds an incomplete message.
pub fn encrypt<R: Read + Send>(
    enc: Encryptor,
    mut input: R,
    output: &mut dyn Write,
    opts: &PipelineOptions,
    progress: impl FnMut(u64),
) -> Result<EncryptSummary> {
    enc.ensure_unused()?;
    let g = Geometry::new(enc.header.frame_length, opts.threads, opts.batch_bytes);
    let Encryptor {
        key,
        header,
        header_bytes,
        mut signer,
        max_plaintext_len,
        ..
    } = enc;
    output.write_all(&header_bytes)?;
    if let Some(s) = &mut signer {
        s.update(&header_bytes);
    }
    let (key, g) = (&key, &g);
    let mut frames = 0u64;
    let mut numbering = Numbering::new(&mut frames);
    let shift = FINAL_PREFIX - REGULAR_PREFIX;
    let mut read_total = 0u64;
    let read_batch = move |index, mut buf: Vec<u8>| {
        buf.resize(g.per_batch * g.slot + shift, 0);
        let mut regular = 0;
        let mut final_len = None;
        for f in 0..g.per_batch {
            let off = f * g.slot + REGULAR_PREFIX;
            let got = match read_full(&mut input, &mut buf[off..off + g.frame]) {
                Ok(n) => n,
                Err(e) => return Batch::Fail(None, e.into()),
            };
            read_total += got as u64;
            if let Err(e) = Encryptor::check_declared_length(max_plaintext_len, read_total) {
                return Batch::Fail(None, e);
            }
            if got < g.frame {
                // The final frame: its plaintext moves to the final frame's offset.
                buf.copy_within(off..off + got, off + shift);
                final_len = Some(got);
                break;
            }
            regular += 1;
        }
        if !numbering.fits(regular) {
            let e = Error::InvalidArgument(
                "input needs more than 2^32 - 1 frames; use a larger frame length".into(),
            );
            return Batch::Fail(None, e);
        }
        numbering.batch(index, buf, regular, final_len.map(Tail::EncryptFinal))
    };
    let work = |job: Job| {
        let final_len = match job.tail {
            Some(Tail::EncryptFinal(n)) => Some(n),
            _ => None,
        };
        Ok(seal_batch(
            key,
            g,
            job.buf,
            job.first_seq,
            job.regular,
            final_len,
        ))
    };
    let on_bytes = |bytes: &[u8]| {
        if let Some(s) = &mut signer {
            s.update(bytes);
        }
    };
    let plaintext = run_stream(
        g,
        opts.threads,
        read_batch,
        work,
        output,
        on_bytes,
        progress,
    )?;
    finish_signature(signer, output)?;
    Ok(EncryptSummary {
        header_len: header_bytes.len() as u64,
        plaintext_len: plaintext,
        frames,
        message_id: header.message_id,
    })
}

/// Reads and opens the header at the start of `input`; returns it with the bytes read past it.
///
/// # Errors
/// As [`crate::Header::read`] and [`OpenedHeader::open`]; [`Error::Io`] if reading fails.
pub fn read_header(
    input: &mut impl Read,
    keyring: &dyn Keyring,
    options: &DecryptOptions,
) -> Result<(OpenedHeader, Vec<u8>)> {
    let (parsed, rest) = crate::header::read_from(input, &options.limits)?;
    Ok((OpenedHeader::open(parsed, keyring, options)?, rest))
}

/// Opens the final frame and verifies the footer, returning the final plaintext range of `bytes`.
fn finish_tail(
    key: &MessageKey,
    frame_length: u32,
    seq: u32,
    bytes: &mut [u8],
    verifier: Option<Box<Verifier>>,
) -> Result<std::ops::Range<usize>> {
    let n = MessageKey::final_content_len(bytes, frame_length)? as usize;
    let total = FINAL_OVERHEAD + n;
    if bytes.len() < total {
        return Err(Error::Truncated("the final frame"));
    }
    let (frame, footer) = bytes.split_at_mut(total);
    let mut verifier = verifier;
    if let Some(v) = &mut verifier {
        v.update(frame);
    }
    key.open_final(seq, frame)?;
    match verifier {
        None if !footer.is_empty() => return Err(Malformed::TrailingData.into()),
        None => {}
        Some(v) => {
            if footer.len() < 2 {
                return Err(Error::Truncated("the signature"));
            }
            let len = usize::from(u16::from_be_bytes([footer[0], footer[1]]));
            if len > MAX_SIGNATURE_LEN {
                return Err(Error::Authentication);
            }
            if footer.len() < 2 + len {
                return Err(Error::Truncated("the signature"));
            }
            if footer.len() > 2 + len {
                return Err(Malformed::TrailingData.into());
            }
            v.verify(&footer[2..2 + len])?;
        }
    }
    Ok(final_plaintext(0, n))
}

/// Decrypts the message read from `input` into `output` on `opts.threads` worker threads.
/// `progress` is called with the number of plaintext bytes of each batch written.
///
/// Only authenticated plaintext is written. If an error is returned, `output` may hold the
/// plaintext of frames before the failure (each of which did authenticate); callers writing a
/// file should write to a temporary name and rename only on success.
///
/// # Errors
/// Any decryption error (see [`Error`]); [`Error::Io`] if reading or writing fails.
pub fn decrypt<R: Read + Send>(
    keyring: &dyn Keyring,
    options: &DecryptOptions,
    mut input: R,
    output: &mut dyn Write,
    opts: &PipelineOptions,
    progress: impl FnMut(u64),
) -> Result<DecryptSummary> {
    let (opened, rest) = read_header(&mut input, keyring, options)?;
    decrypt_opened(opened, rest, input, output, opts, progress)
}

/// The body of [`decrypt`], once the header was read and opened; `rest` holds the bytes read past
/// the header.
pub(super) fn decrypt_opened<R: Read + Send>(
    opened: OpenedHeader,
    rest: Vec<u8>,
    input: R,
    output: &mut dyn Write,
    opts: &PipelineOptions,
    progress: impl FnMut(u64),
) -> Result<DecryptSummary> {
    let OpenedHeader {
        parsed,
        key,
        verifier,
    } = opened;
    let frame_length = parsed.header.frame_length;
    let g = Geometry::new(frame_length, opts.threads, opts.batch_bytes);
    let mut input = std::io::Cursor::new(rest).chain(input);
    let (key, g) = (&key, &g);
    let mut frames = 0u64;
    let mut numbering = Numbering::new(&mut frames);
    let mut verifier = verifier.map(Box::new);
    let cap = g.per_batch * g.slot;
    let max_tail = FINAL_OVERHEAD + g.frame + 2 + MAX_SIGNATURE_LEN;
    let read_batch = move |index, mut buf: Vec<u8>| {
        // Grown as data arrives: a short message that declares large frames must not make us
        // allocate (pool × frame length) up front.
        buf.clear();
        if let Err(e) = read_growing(&mut input, &mut buf, cap) {
            return Batch::Fail(None, e.into());
        }
        let filled = buf.len();
        let mut off = 0;
        let mut final_at = None;
        while off + 4 <= filled {
            if buf[off..off + 4] == FINAL_MARKER.to_be_bytes() {
                final_at = Some(off);
                break;
            }
            if off + g.slot > filled {
                break;
            }
            off += g.slot;
        }
        let regular = off / g.slot;
        if !numbering.fits(regular) {
            return Batch::Fail(
                None,
                Malformed::Field("frame count (more than 2^32 - 1 frames)").into(),
            );
        }
        if let Some(v) = &mut verifier {
            v.update(&buf[..off]);
        }
        let tail = match final_at {
            Some(at) => {
                let mut bytes = buf[at..filled].to_vec();
                if bytes.len() > max_tail {
                    // The batch already holds more after the final frame than a final frame
                    // and a footer can be.
                    return Batch::Fail(None, Malformed::TrailingData.into());
                }
                if let Err(e) = read_growing(&mut input, &mut bytes, max_tail + 1) {
                    return Batch::Fail(None, e.into());
                }
                if bytes.len() > max_tail {
                    return Batch::Fail(None, Malformed::TrailingData.into());
                }
                Some(Tail::DecryptFinal {
                    bytes,
                    verifier: verifier.take(),
                })
            }
            None if filled < cap => {
                // The input ended without a final frame. Frames before the cut are still opened
                // (and released) in order; then the truncation is reported.
                let what = if filled == off {
                    "the message body (no final frame)"
                } else {
                    "a frame"
                };
                let job = numbering.job(index, buf, regular, None);
                return Batch::Fail(Some(job), Error::Truncated(what));
            }
            None => None,
        };
        numbering.batch(index, buf, regular, tail)
    };
    let work = |mut job: Job| {
        let out = open_regular_frames(key, g, &mut job.buf, job.first_seq, job.regular)?;
        let mut plaintext = (job.regular * g.frame) as u64;
        let mut extra = Vec::new();
        let last = job.tail.is_some();
        if let Some(Tail::DecryptFinal {
            mut bytes,
            verifier,
        }) = job.tail
        {
            let seq = job.first_seq + job.regular as u32;
            let r = finish_tail(key, frame_length, seq, &mut bytes, verifier)?;
            plaintext += r.len() as u64;
            bytes.truncate(r.end);
            bytes.drain(..r.start);
            extra = bytes;
        }
        Ok(Finished {
            buf: job.buf,
            out,
            plaintext,
            last,
            extra,
        })
    };
    let plaintext = run_stream(g, opts.threads, read_batch, work, output, |_| {}, progress)?;
    Ok(DecryptSummary {
        header: parsed,
        plaintext_len: plaintext,
        frames,
    })
}
