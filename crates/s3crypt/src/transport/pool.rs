//! One buffer pool for transfers: ciphertext buffers for ranged GETs and part buffers for
//! uploads are recycled within a transfer (bounded count, no page faults or allocator growth per
//! range or part).

use std::sync::Arc;

use bytes::BytesMut;

/// Recycles buffers across one transfer's requests. Buffers come back when the request that
/// sent them, or the reader that received them, is done with them.
#[derive(Clone, Default)]
pub(crate) struct Pool(Arc<std::sync::Mutex<Vec<BytesMut>>>);

/// Buffers a pool keeps at most; more are freed (a transfer has at most its concurrency in
/// flight and a few waiting for the reader or the sealer).
const POOL_MAX: usize = 32;

impl Pool {
    /// An empty buffer with room for `cap` bytes (a ranged GET appends to it).
    pub(crate) fn empty(&self, cap: usize) -> BytesMut {
        let mut b = self.take();
        b.clear();
        b.reserve(cap);
        b
    }

    /// A buffer of `len` bytes whose contents are unspecified: a recycled one keeps its old
    /// bytes (the caller overwrites every byte before it is sent), so no time is spent zeroing.
    pub(crate) fn filled(&self, len: usize) -> BytesMut {
        let mut b = self.take();
        b.resize(len, 0);
        b
    }

    fn take(&self) -> BytesMut {
        self.0
            .lock()
            .ok()
            .and_then(|mut p| p.pop())
            .unwrap_or_default()
    }

    /// Gives a buffer back.
    pub(crate) fn put(&self, b: BytesMut) {
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
pub(crate) struct Recycled {
    buf: BytesMut,
    pool: std::sync::Weak<std::sync::Mutex<Vec<BytesMut>>>,
}

impl Recycled {
    /// `buf` as `Bytes` that returns to `pool` when the last reference goes.
    pub(crate) fn bytes(buf: BytesMut, pool: &Pool) -> bytes::Bytes {
        bytes::Bytes::from_owner(Recycled {
            buf,
            pool: Arc::downgrade(&pool.0),
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_and_the_pool_stays_bounded() {
        let pool = Pool::default();
        let a = pool.filled(100);
        let ptr = a.as_ptr();
        pool.put(a);
        // A recycled buffer, not zeroed and not reallocated.
        let b = pool.filled(50);
        assert_eq!((b.as_ptr(), b.len()), (ptr, 50));
        let c = pool.empty(10);
        assert!(c.is_empty() && c.capacity() >= 10);
        for _ in 0..POOL_MAX + 10 {
            pool.put(BytesMut::with_capacity(1));
        }
        assert_eq!(pool.0.lock().unwrap().len(), POOL_MAX);
        // Bytes handed to a reader come back when the reader drops them, unless the transfer is
        // over.
        let pool = Pool::default();
        let bytes = Recycled::bytes(BytesMut::from(&b"abc"[..]), &pool);
        assert_eq!(&bytes[..], b"abc");
        drop(bytes);
        assert_eq!(pool.0.lock().unwrap().len(), 1);
        let bytes = Recycled::bytes(BytesMut::from(&b"abc"[..]), &pool);
        drop(pool);
        drop(bytes);
    }
}
