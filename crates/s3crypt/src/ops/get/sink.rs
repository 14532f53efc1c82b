//! Writing verified plaintext at its offsets (a file written by several threads at once).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use s3crypt_core::range::{aligned_steps, RangeDecryptor};

use crate::error::{Error, Result};
use crate::transport::blocking;

/// Where [`crate::PlaintextStream::write_at`] puts plaintext: positional writes, made from several
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
pub(super) fn write_chunked<S: PositionalSink + ?Sized>(
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
pub(super) struct Turns<'a, S: ?Sized> {
    pub(super) sink: &'a S,
    pub(super) gate: &'a std::sync::Mutex<()>,
    pub(super) stop: &'a AtomicBool,
    pub(super) base: u64,
}

/// Sets its flag when dropped.
pub(super) struct StopOnDrop(pub(super) Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Reserves `len` bytes in `sink` (see [`PositionalSink::allocate`]), off the async threads.
pub(super) async fn reserve<S: PositionalSink>(sink: &Arc<S>, len: u64) -> Result<()> {
    let s = Arc::clone(sink);
    blocking(move || s.allocate(len)).await?;
    Ok(())
}

/// Authenticates and decrypts `ct` (the ciphertext of `plan`) in place, a few frames at a time,
/// writing each step's plaintext at its offset right after it verified. Returns the bytes
/// written.
pub(super) fn write_piece<S: PositionalSink + ?Sized>(
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
        let buf = ct.get_mut(from..to).ok_or_else(|| {
            Error::Internal("a piece's ciphertext is shorter than its plan".into())
        })?;
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
