//! Running the asynchronous KMS client for synchronous callers.
//!
//! The keyring interface of `s3crypt-core` is synchronous (the core has no async runtime), while
//! `aws-sdk-kms` is async. Keyrings are called from anywhere: plain threads (the CLI's local
//! encrypt and decrypt), tokio's blocking pool (the S3 client seals in `spawn_blocking`), and, by
//! mistake, directly from an async task. The bridge must work in all of these and never deadlock.
//!
//! **Design.** One process-wide tokio runtime with a single worker thread (`s3crypt-kms`), created
//! on first use, runs every KMS request. A synchronous call spawns its request future onto that
//! runtime and waits for the answer on a `std` channel. Why this and not the alternatives:
//!
//! * `Handle::current().block_on(..)` inside `spawn_blocking` works on a multi-thread runtime, but
//!   on a `current_thread` runtime the I/O driver belongs to the thread that runs `block_on` of the
//!   *caller's* runtime; and called from an async task it panics ("cannot start a runtime from
//!   within a runtime"). A private runtime has its own driver, whatever thread waits.
//! * A runtime per keyring would multiply threads (a multi-keyring of several KMS keys) and could
//!   not be dropped inside an async context (tokio panics); a `static` runtime is never dropped.
//! * The clients the keyring uses are built by the keyring from the caller's configuration (see
//!   `clients.rs`), so they get their own HTTP connection pool. Connections are therefore opened
//!   and driven by this runtime only, never by a caller's runtime that may be blocked waiting for
//!   the keyring: a connection pooled by the caller's `current_thread` runtime cannot make
//!   progress while that runtime's only thread waits here (measured with a keep-alive server: a
//!   shared pool stalled such a call for seconds before the HTTP client gave up on the
//!   connection; the private pool does not stall). A caller-supplied `http_client` in the
//!   configuration is kept, and with it whatever pool it has.
//!
//! The waiting thread blocks, so async code should call keyrings through `spawn_blocking` (as the
//! `s3crypt` crate does); a direct call from an async task blocks that task's worker for the
//! duration of the KMS request but still completes. If the request task panics, the channel closes
//! and the caller gets an error instead of waiting forever; how long a request may take is bounded
//! by the client's timeout and retry configuration (see [`crate::recommended_retry_config`]).

use std::future::Future;
use std::sync::OnceLock;

use s3crypt_core::Error;

static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();

/// The name of the runtime's threads (its worker and its blocking pool).
const THREAD_NAME: &str = "s3crypt-kms";

fn runtime() -> Result<&'static tokio::runtime::Runtime, Error> {
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .max_blocking_threads(4)
                .thread_name(THREAD_NAME)
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| Error::keyring(format!("cannot start the AWS KMS worker thread: {e}")))
}

/// Runs `fut` on the KMS runtime and blocks the calling thread until it finishes.
///
/// # Errors
/// [`Error::Keyring`] if the runtime cannot start, if called on one of the runtime's own threads
/// (waiting there could deadlock it), or if the task did not finish (it panicked).
pub(crate) fn block_on<F>(fut: F) -> Result<F::Output, Error>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    if std::thread::current().name() == Some(THREAD_NAME) {
        return Err(Error::keyring(
            "an AWS KMS keyring was called from inside its own worker thread".to_owned(),
        ));
    }
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime()?.spawn(async move {
        // The receiver is gone only if the caller's thread went away; nothing to report then.
        let _ = tx.send(fut.await);
    });
    rx.recv().map_err(|_| {
        Error::keyring("the AWS KMS request was abandoned (its task panicked)".to_owned())
    })
}

/// Runs `fut` on the KMS runtime and awaits it from any executor (for the async constructors, so
/// that the clients' credential and region providers open their connections on this runtime too).
///
/// # Errors
/// [`Error::Keyring`] if the runtime cannot start or the task panicked.
pub(crate) async fn spawn<F>(fut: F) -> Result<F::Output, Error>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    runtime()?
        .spawn(fut)
        .await
        .map_err(|e| Error::keyring(format!("the AWS KMS task failed: {e}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn blocks_from_plain_threads_and_from_inside_runtimes() {
        assert_eq!(block_on(async { 7 }).unwrap(), 7);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // Directly inside a current_thread runtime's task: blocks it, but the work runs elsewhere.
        let v = rt.block_on(async {
            block_on(async {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                8
            })
            .unwrap()
        });
        assert_eq!(v, 8);
        let v = rt.block_on(async {
            tokio::task::spawn_blocking(|| block_on(async { 9 }).unwrap())
                .await
                .unwrap()
        });
        assert_eq!(v, 9);
        assert_eq!(rt.block_on(spawn(async { 10 })).unwrap(), 10);
    }

    #[test]
    fn a_call_from_the_worker_itself_is_an_error_not_a_deadlock() {
        let r = block_on(async { block_on(async { 1 }) }).unwrap();
        assert!(matches!(r, Err(Error::Keyring(_))));
    }

    #[test]
    fn a_panicking_task_is_an_error_not_a_hang() {
        let r = block_on(async {
            if std::hint::black_box(true) {
                panic!("boom");
            }
        });
        assert!(matches!(r, Err(Error::Keyring(_))));
    }
}
