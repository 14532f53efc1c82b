//! Transport pieces below the operations: ranged fetches with resume and retry, multipart
//! uploads and their guard, HEAD requests with SSE-C candidates, and the buffer pool.

pub(crate) mod fetch;
pub(crate) mod head;
pub(crate) mod multipart;
pub(crate) mod pool;

use crate::error::{Error, Result};

/// Runs CPU work (sealing, opening, hashing, key unwrapping that may block) on tokio's blocking
/// pool, never on the async threads.
///
/// A task that panics is [`Error::Internal`]; the closure's own error (the core's, an I/O error)
/// is converted.
pub(crate) async fn blocking<T, E>(f: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T>
where
    T: Send + 'static,
    E: Into<Error> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(Error::from)?
        .map_err(Into::into)
}
