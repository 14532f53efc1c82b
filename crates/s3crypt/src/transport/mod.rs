//! Transport pieces below the operations: ranged fetches with resume and retry, multipart
//! uploads and their guard, HEAD requests with SSE-C candidates, and the buffer pool.

pub(crate) mod fetch;
pub(crate) mod head;
pub(crate) mod multipart;
pub(crate) mod pool;

use crate::error::{Error, Result};

/// Runs CPU work (sealing, opening, hashing, key unwrapping that may block) on tokio's blocking
/// pool, never on the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(Error::from)?
}
