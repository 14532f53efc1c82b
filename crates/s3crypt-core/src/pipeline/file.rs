//! The file pipeline: workers read their own batches of a regular file with positional reads,
//! seal or open them, and write them in order (whoever finishes the batch whose turn it is).
#![cfg(unix)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};

use super::{
    final_plaintext, guarded, open_regular_frames, seal_batch, stream::decrypt_opened,
    stream::read_header, write_finished, Finished, Geometry, PipelineOptions, FILE_BATCH_BYTES,
};
use crate::decrypt::{DecryptOptions, DecryptSummary, OpenedHeader};
use crate::encrypt::{EncryptSummary, Encryptor};
use crate::error::{Error, Result};
use crate::key::{MessageKey, FINAL_MARKER, FINAL_OVERHEAD, FINAL_PREFIX, REGULAR_OVERHEAD};
use crate::keyring::Keyring;

/// Wakes every worker parked on the condvar when a worker unwinds (its output, progress or
/// signer callback panicked while it held the lock): they find the lock poisoned and stop, and
/// the scope passes the panic on, instead of waiting for a turn that never comes.
struct WakeOnPanic<'a>(&'a Condvar);

impl Drop for WakeOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.notify_all();
        }
    }
}

/// The writing side shared by the workers: the next batch to write, finished batches waiting for
/// their turn, and buffers written on their owner's behalf.
struct Turn<'o, B, P> {
    /// The batch to write next.
    next: u64,
    /// Finished (or failed) batches that wait for `next` to reach them, with their owner.
    pending: BTreeMap<u64, (usize, Result<Finished>)>,
    /// Per worker: its buffers that another worker wrote out.
    returned: Vec<Vec<Vec<u8>>>,
    /// The first failure (of the lowest failing batch: batches are written, or fail, in order).
    error: Option<Error>,
    plaintext: u64,
    output: &'o mut (dyn Write + Send),
    on_bytes: B,
    on_batch: P,
}

impl<B: FnMut(&[u8]), P: FnMut(u64)> Turn<'_, B, P> {
    /// Writes every pending batch whose turn has come, in order; hands each buffer back to its
    /// owner (`me`'s into `mine`). Stops at the first failure.
    fn drain(&mut self, me: usize, mine: &mut Vec<Vec<u8>>) {
        while self.error.is_none() {
            let Some((owner, result)) = self.pending.remove(&self.next) else {
                return;
            };
            let written = result.and_then(|f| {
                write_finished(self.output, &f, &mut self.on_bytes)?;
                if f.last {
                    self.output.flush()?;
                }
                Ok(f)
            });
            match written {
                Ok(f) => {
                    self.plaintext += f.plaintext;
                    (self.on_batch)(f.plaintext);
                    self.next += 1;
                    match owner == me {
                        true => mine.push(f.buf),
                        false => {
                            if let Some(r) = self.returned.get_mut(owner) {
                                r.push(f.buf);
                            }
                        }
                    }
                }
                Err(e) => self.error = Some(e),
            }
        }
    }
}

/// Buffers each worker of [`run_positional`] owns: one being filled while the other waits for its
/// turn to be written.
const BUFFERS_PER_WORKER: usize = 2;

/// Runs `nbatches` batches on `threads` workers (no reader or writer thread). Each worker takes
/// one of its own buffers, claims the next batch index, fills and processes the buffer (`work`:
/// positional reads), and queues the batch; whichever worker finds the next batch in turn writes
/// it (and any that follow it in the queue), handing the buffers back to their owners. A worker
/// waits only when both its buffers are queued. A worker holds a buffer before it claims an
/// index, so the lowest unwritten batch is always being processed and the pipeline cannot
/// deadlock; a failed batch is reported once every batch before it was written, and nothing after
/// it is written. Memory: `threads × 2` buffers.
fn run_positional<B, P>(
    nbatches: u64,
    threads: usize,
    output: &mut (dyn Write + Send),
    work: &(dyn Fn(u64, Vec<u8>) -> Result<Finished> + Sync),
    on_bytes: B,
    on_batch: P,
) -> Result<u64>
where
    B: FnMut(&[u8]) + Send,
    P: FnMut(u64) + Send,
{
    // (No more workers than batches.)
    let workers = usize::try_from((threads.max(1) as u64).min(nbatches.max(1))).unwrap_or(1);
    let claim = AtomicU64::new(0);
    let turn = Mutex::new(Turn {
        next: 0,
        pending: BTreeMap::new(),
        returned: vec![Vec::new(); workers],
        error: None,
        plaintext: 0,
        output,
        on_bytes,
        on_batch,
    });
    let cv = Condvar::new();
    std::thread::scope(|s| {
        for me in 0..workers {
            let (claim, turn, cv) = (&claim, &turn, &cv);
            s.spawn(move || {
                // Declared first: dropped after any lock guard while unwinding.
                let _wake = WakeOnPanic(cv);
                // Refilled batch after batch: they stay in this core's cache.
                let mut mine: Vec<Vec<u8>> = vec![Vec::new(); BUFFERS_PER_WORKER];
                loop {
                    let buf = match mine.pop() {
                        Some(b) => b,
                        None => {
                            let Ok(mut t) = turn.lock() else { return };
                            loop {
                                if t.error.is_some() {
                                    return;
                                }
                                if let Some(b) = t.returned.get_mut(me).and_then(Vec::pop) {
                                    break b;
                                }
                                t = match cv.wait(t) {
                                    Ok(t) => t,
                                    Err(_) => return,
                                };
                            }
                        }
                    };
                    let index = claim.fetch_add(1, Ordering::Relaxed);
                    if index >= nbatches {
                        return;
                    }
                    let result = guarded(|| work(index, buf));
                    let Ok(mut t) = turn.lock() else { return };
                    if t.error.is_some() {
                        // An earlier batch failed: nothing after it is written.
                        return;
                    }
                    t.pending.insert(index, (me, result));
                    let before = t.next;
                    t.drain(me, &mut mine);
                    let (wrote, stop) = (t.next != before, t.error.is_some());
                    drop(t);
                    if wrote || stop {
                        // Owners waiting for a buffer, or for the end.
                        cv.notify_all();
                    }
                    if stop {
                        return;
                    }
                }
            });
        }
    });
    let t = turn.into_inner().map_err(|_| {
        Error::Io(std::io::Error::other(
            "a pipeline worker stopped unexpectedly",
        ))
    })?;
    match t.error {
        Some(e) => Err(e),
        None if t.next == nbatches => Ok(t.plaintext),
        None => Err(Error::Io(std::io::Error::other(
            "a pipeline worker stopped unexpectedly",
        ))),
    }
}

/// The geometry of the file pipelines: batches of at most [`FILE_BATCH_BYTES`].
fn file_geometry(frame_length: u32, opts: &PipelineOptions) -> Geometry {
    Geometry::new(
        frame_length,
        opts.threads,
        opts.batch_bytes.min(FILE_BATCH_BYTES),
    )
}

/// A `Read` over a file from a given offset, with positional reads (the file's own cursor is
/// neither used nor moved).
struct ReadAt<'a> {
    file: &'a std::fs::File,
    pos: u64,
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = std::os::unix::fs::FileExt::read_at(self.file, buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

fn shrank() -> Error {
    Error::Io(std::io::Error::other(
        "the input file shrank while it was being read",
    ))
}

/// Fills the plaintext region of each of the first `count` frame slots of `buf` from consecutive
/// file bytes starting at `offset`, with vectored positional reads (`preadv`).
fn read_frames_at(
    file: &std::fs::File,
    g: &Geometry,
    buf: &mut [u8],
    count: usize,
    mut offset: u64,
) -> Result<()> {
    let mut slices: Vec<std::io::IoSliceMut<'_>> = buf[..count * g.slot]
        .chunks_mut(g.slot)
        .map(|c| {
            let r = g.frame_plaintext(0);
            std::io::IoSliceMut::new(&mut c[r])
        })
        .collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        match rustix::io::preadv(file, rest, offset) {
            Ok(0) => return Err(shrank()),
            Ok(n) => {
                offset += n as u64;
                std::io::IoSliceMut::advance_slices(&mut rest, n);
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(Error::Io(e.into())),
        }
    }
    Ok(())
}

/// Reads exactly `buf.len()` bytes at `offset`.
fn read_exact_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> Result<()> {
    use std::os::unix::fs::FileExt;
    file.read_exact_at(buf, offset).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            shrank()
        } else {
            Error::Io(e)
        }
    })
}

/// Encrypts a regular file, from offset 0 to its length when called, into `output` (the file's
/// cursor is not used).
///
/// Like [`super::encrypt`], but the workers read their own frames with positional reads, so
/// reading (a kernel copy) is spread over all threads, each frame is sealed while it is still in
/// the CPU cache, and batches are written in order by the workers themselves. The output is
/// byte-for-byte the layout [`super::encrypt`] produces (an empty final frame when `len` is a
/// multiple of the frame length). Memory: `2 × threads × max(256 KiB, frame length + 40)`.
///
/// # Errors
/// As [`super::encrypt`]; [`Error::Io`] if the file shrinks while it is read.
pub fn encrypt_file(
    enc: Encryptor,
    file: &std::fs::File,
    output: &mut (dyn Write + Send),
    opts: &PipelineOptions,
    progress: impl FnMut(u64) + Send,
) -> Result<EncryptSummary> {
    let len = file.metadata()?.len();
    enc.ensure_unused()?;
    Encryptor::check_declared_length(enc.max_plaintext_len, len)?;
    let g = file_geometry(enc.header.frame_length, opts);
    let frame = g.frame as u64;
    let regular = len / frame;
    let final_len = (len % frame) as usize;
    if regular >= u64::from(FINAL_MARKER) {
        return Err(Error::InvalidArgument(
            "input needs more than 2^32 - 1 frames; use a larger frame length".into(),
        ));
    }
    let per_batch = g.per_batch as u64;
    // Batches of `per_batch` regular frames; the final frame rides with the last batch.
    let nbatches = regular / per_batch + 1;
    let Encryptor {
        key,
        header,
        header_bytes,
        mut signer,
        ..
    } = enc;
    output.write_all(&header_bytes)?;
    if let Some(s) = &mut signer {
        s.update(&header_bytes);
    }
    let (key, g) = (&key, &g);
    let work = |index: u64, mut buf: Vec<u8>| -> Result<Finished> {
        let first = index * per_batch;
        let count = per_batch.min(regular - first) as usize;
        let last = index + 1 == nbatches;
        buf.resize(
            count * g.slot + if last { FINAL_OVERHEAD + final_len } else { 0 },
            0,
        );
        // One vectored positional read places every frame's plaintext in its slot.
        read_frames_at(file, g, &mut buf, count, first * frame)?;
        if last {
            let f = &mut buf[count * g.slot..];
            read_exact_at(file, &mut f[final_plaintext(0, final_len)], regular * frame)?;
        }
        // (first + 1 + count fits in u32: regular < FINAL_MARKER was checked.)
        Ok(seal_batch(
            key,
            g,
            buf,
            (first + 1) as u32,
            count,
            last.then_some(final_len),
        ))
    };
    let on_bytes = |bytes: &[u8]| {
        if let Some(s) = &mut signer {
            s.update(bytes);
        }
    };
    let plaintext = run_positional(nbatches, opts.threads, output, &work, on_bytes, progress)?;
    super::finish_signature(signer, output)?;
    Ok(EncryptSummary {
        header_len: header_bytes.len() as u64,
        plaintext_len: plaintext,
        frames: regular + 1,
        message_id: header.message_id,
    })
}

/// Decrypts a message held in a regular file (from offset 0; the file's cursor is not used) into
/// `output`.
///
/// For unsigned suites whose frame layout matches the file length, workers read, open and write
/// their own frames (see [`encrypt_file`]); otherwise (signed suites, whose signature needs every
/// byte hashed in order, or a file whose length or final frame does not fit a valid layout) this
/// is [`super::decrypt`] over the file, which also reports the precise error. Either way a batch is
/// written only after every batch before it, and only once it authenticated.
///
/// # Errors
/// As [`super::decrypt`].
pub fn decrypt_file(
    keyring: &dyn Keyring,
    options: &DecryptOptions,
    file: &std::fs::File,
    output: &mut (dyn Write + Send),
    opts: &PipelineOptions,
    progress: impl FnMut(u64) + Send,
) -> Result<DecryptSummary> {
    let total = file.metadata()?.len();
    let mut reader = ReadAt { file, pos: 0 };
    let (opened, rest) = read_header(&mut reader, keyring, options)?;
    let header_len = opened.parsed.len() as u64;
    let fast = |opened: &OpenedHeader| -> Option<crate::range::MessageLayout> {
        if opened.verifier.is_some() {
            return None;
        }
        let layout =
            crate::range::MessageLayout::new(header_len, opened.parsed.header.frame_length, total)
                .ok()?;
        let final_at = header_len
            + layout.regular_frames * (u64::from(layout.frame_length) + REGULAR_OVERHEAD as u64);
        let mut prefix = [0u8; FINAL_PREFIX];
        read_exact_at(file, &mut prefix, final_at).ok()?;
        let n = MessageKey::final_content_len(&prefix, layout.frame_length).ok()?;
        (n == layout.final_len).then_some(layout)
    };
    let Some(layout) = fast(&opened) else {
        // Continue the stream where the header read stopped.
        return decrypt_opened(opened, rest, reader, output, opts, progress);
    };
    let OpenedHeader { parsed, key, .. } = opened;
    let g = file_geometry(layout.frame_length, opts);
    let per_batch = g.per_batch as u64;
    let regular = layout.regular_frames;
    let nbatches = regular / per_batch + 1;
    let (key, g) = (&key, &g);
    let final_len = layout.final_len as usize;
    let work = |index: u64, mut buf: Vec<u8>| -> Result<Finished> {
        let first = index * per_batch;
        let count = per_batch.min(regular - first) as usize;
        let last = index + 1 == nbatches;
        buf.resize(
            count * g.slot + if last { FINAL_OVERHEAD + final_len } else { 0 },
            0,
        );
        // The batch's frames are contiguous in the file: one positional read.
        read_exact_at(file, &mut buf, header_len + first * g.slot as u64)?;
        let mut out = open_regular_frames(key, g, &mut buf, (first + 1) as u32, count)?;
        let mut plaintext = (count * g.frame) as u64;
        if last {
            let start = count * g.slot;
            key.open_final((regular + 1) as u32, &mut buf[start..])?;
            out.push(final_plaintext(start, final_len));
            plaintext += final_len as u64;
        }
        Ok(Finished {
            buf,
            out,
            plaintext,
            last,
            extra: Vec::new(),
        })
    };
    let plaintext = run_positional(nbatches, opts.threads, output, &work, |_| {}, progress)?;
    Ok(DecryptSummary {
        header: parsed,
        plaintext_len: plaintext,
        frames: regular + 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on its own thread; `None` if it did not finish within `secs` seconds.
    fn within<T: Send + 'static>(
        secs: u64,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Option<std::thread::Result<T>> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
        });
        rx.recv_timeout(std::time::Duration::from_secs(secs)).ok()
    }

    struct PanickingWriter {
        calls: usize,
        panic_at: usize,
    }

    impl Write for PanickingWriter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.calls += 1;
            if self.calls == self.panic_at {
                std::thread::sleep(std::time::Duration::from_millis(200));
                panic!("output panicked");
            }
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Batch 0 is slow, so the worker holding batch 1 is parked on the condvar when batch 0's
    /// write panics: it must wake and stop, and the panic reach the caller.
    #[test]
    fn a_panicking_output_does_not_hang_the_workers() {
        let r = within(10, || {
            let work = |index: u64, mut buf: Vec<u8>| -> Result<Finished> {
                if index == 0 {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                buf.clear();
                buf.extend_from_slice(&index.to_be_bytes());
                Ok(Finished {
                    buf,
                    out: std::iter::once(0..8).collect(),
                    plaintext: 8,
                    last: index == 3,
                    extra: Vec::new(),
                })
            };
            let mut w = PanickingWriter {
                calls: 0,
                panic_at: 1,
            };
            run_positional(4, 2, &mut w, &work, |_| {}, |_| {})
        });
        let finished = r.expect("run_positional hung after its output panicked");
        assert!(finished.is_err(), "the panic did not reach the caller");
    }

    /// Batches are written in order whatever order the workers finish them in, and an error
    /// stops the output exactly before its batch.
    #[test]
    fn batches_are_written_in_order_and_stop_exactly_at_an_error() {
        for threads in [1, 2, 3, 16] {
            for failing in [None, Some(0), Some(5), Some(19)] {
                let work = |index: u64, mut buf: Vec<u8>| -> Result<Finished> {
                    // Later batches finish first.
                    std::thread::sleep(std::time::Duration::from_micros((20 - index) * 200));
                    if Some(index) == failing {
                        return Err(Error::Authentication);
                    }
                    buf.clear();
                    buf.push(index as u8);
                    Ok(Finished {
                        buf,
                        out: std::iter::once(0..1).collect(),
                        plaintext: 1,
                        last: index == 19,
                        extra: Vec::new(),
                    })
                };
                let mut out = Vec::new();
                let r = run_positional(20, threads, &mut out, &work, |_| {}, |_| {});
                let upto = failing.unwrap_or(20) as u8;
                assert_eq!(out, (0..upto).collect::<Vec<u8>>(), "{threads} threads");
                assert_eq!(r.is_ok(), failing.is_none());
            }
        }
    }
}
