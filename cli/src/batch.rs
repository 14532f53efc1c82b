//! Many objects at once: listing a prefix, running transfers a bounded number at a time, and
//! Ctrl-C.

use s3crypt::Client;

use crate::exit::Failure;
use crate::signals::Signal;

/// A HEAD of an object that answered 404 says neither whether the bucket or the key is missing:
/// asks S3 (HeadBucket) and says which. Other errors pass unchanged.
pub(crate) async fn which_missing(c: &Client, e: s3crypt::Error) -> s3crypt::Error {
    match e {
        s3crypt::Error::NotFound { bucket, key } => match c.bucket_exists(&bucket).await {
            Ok(false) => s3crypt::Error::NoSuchBucket { bucket },
            _ => s3crypt::Error::NotFound { bucket, key },
        },
        other => other,
    }
}

/// Completes on SIGINT, SIGTERM or SIGHUP (see [`crate::signals`]): the command stops
/// cooperatively from then on.
pub(crate) async fn interrupted() -> Signal {
    crate::signals::cooperate();
    crate::signals::received().await
}

/// Runs `jobs` transfers at a time; reports each failure; returns how many failed.
pub(crate) async fn run_all<F>(jobs: usize, items: Vec<(String, F)>) -> usize
where
    F: std::future::Future<Output = Result<(), Failure>> + Send + 'static,
{
    type Outcome = Result<(String, Result<(), Failure>), tokio::task::JoinError>;
    fn failed(r: Outcome) -> usize {
        match r {
            Ok((_, Ok(()))) => 0,
            Ok((name, Err(e))) => {
                eprintln!(
                    "s3crypt: {}: {}",
                    s3crypt_core::text::printable(&name, usize::MAX),
                    e.describe()
                );
                if crate::json_out::on() {
                    let (code, msg, hint) = e.summary();
                    let mut v = serde_json::json!({
                        "error": crate::json_out::error(code, e.class(), &msg, hint.as_deref())
                    });
                    // Items are named by their s3:// URL, or by key.
                    match crate::s3url::parse_url(&name) {
                        Ok((b, k)) => {
                            v["bucket"] = b.into();
                            v["key"] = k.into();
                        }
                        Err(_) => v["key"] = name.into(),
                    }
                    crate::json_out::emit(v);
                }
                1
            }
            Err(e) => {
                eprintln!("s3crypt: a transfer task failed: {e}");
                1
            }
        }
    }
    let mut set: tokio::task::JoinSet<(String, Result<(), Failure>)> = tokio::task::JoinSet::new();
    let mut n = 0;
    for (name, f) in items {
        while set.len() >= jobs.max(1) {
            if let Some(r) = set.join_next().await {
                n += failed(r);
            }
        }
        set.spawn(async move { (name, f.await) });
    }
    while let Some(r) = set.join_next().await {
        n += failed(r);
    }
    n
}

/// Listed keys that were left out (they do not decode, or lie outside the prefix), on stderr.
pub(crate) fn report_skipped(prefix: &str, skipped: &[String]) {
    for raw in skipped {
        eprintln!(
            "s3crypt: skipped a listed key that does not decode or is outside the prefix {}: {}",
            s3crypt_core::text::printable(prefix, 200),
            s3crypt_core::text::printable(raw, 200)
        );
    }
}

/// Every key under `prefix` (see [`s3crypt::listing`]).
pub(crate) async fn list_keys(
    c: &Client,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<String>, Failure> {
    let (objects, skipped) = c
        .list_objects()
        .bucket(bucket)
        .prefix(prefix)
        .send()?
        .collect()
        .await?;
    report_skipped(prefix, &skipped);
    Ok(objects.into_iter().map(|o| o.key).collect())
}

/// A cancellation signal for each copy, fired by [`finish`] on Ctrl-C.
pub(crate) fn cancel_signal(
    rx: &tokio::sync::watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut rx = rx.clone();
    async move {
        let _ = rx.wait_for(|c| *c).await;
    }
}

/// Runs single-object work, or `-r` work through `run_all`, until done or a signal (SIGINT, SIGTERM, SIGHUP). Then every
/// copy is told to stop (through `cancel`, see [`cancel_signal`]) and awaited: each aborts its
/// multipart upload before the command exits (the destination never appears half-written; a
/// move keeps its source).
pub(crate) async fn finish<F>(
    jobs: usize,
    items: Vec<(String, F)>,
    recursive: bool,
    cancel: tokio::sync::watch::Sender<bool>,
) -> Result<(), Failure>
where
    F: std::future::Future<Output = Result<(), Failure>> + Send + 'static,
{
    if !recursive {
        let Some((_, f)) = items.into_iter().next() else {
            return Ok(());
        };
        let mut f = std::pin::pin!(f);
        return tokio::select! {
            r = &mut f => r,
            sig = interrupted() => {
                let _ = cancel.send(true);
                let _ = f.await;
                Err(Failure::Interrupted(sig))
            }
        };
    }
    let mut work = std::pin::pin!(run_all(jobs, items));
    let failed = tokio::select! {
        n = &mut work => n,
        sig = interrupted() => {
            let _ = cancel.send(true);
            work.await;
            return Err(Failure::Interrupted(sig));
        }
    };
    if failed > 0 {
        return Err(Failure::Partial(failed));
    }
    Ok(())
}
