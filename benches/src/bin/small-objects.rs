//! Small-object throughput: COUNT objects of SIZE bytes stored through one shared client with
//! CONCURRENCY in flight, through s3crypt (encrypted) or plain `aws_sdk_s3` `put_object` calls
//! (the same loop, the same S3 configuration). Prints `MODE COUNT SECONDS OBJECTS_PER_S` for the
//! loop alone (client setup excluded). The S3 endpoint and credentials come from the AWS
//! environment (`AWS_ENDPOINT_URL`, ...); the keyring is a fresh local key.
//!
//! ```text
//! small-objects MODE BUCKET PREFIX [COUNT] [SIZE] [CONCURRENCY]    (MODE: s3crypt | plain)
//! ```

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::task::JoinSet;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "small-objects MODE BUCKET PREFIX [COUNT] [SIZE] [CONCURRENCY]";
    let mode = args.get(1).ok_or(usage)?.clone();
    let bucket = args.get(2).ok_or(usage)?.clone();
    let prefix = args.get(3).ok_or(usage)?.clone();
    let count: usize = args.get(4).map_or(Ok(10_000), |s| s.parse())?;
    let size: usize = args.get(5).map_or(Ok(4096), |s| s.parse())?;
    let concurrency: usize = args.get(6).map_or(Ok(32), |s| s.parse())?;

    // The same bytes for every object (content does not change the cost of either path).
    let body = Bytes::from((0..size).map(|i| (i * 31 % 251) as u8).collect::<Vec<u8>>());
    let conf = aws_config::load_from_env().await;
    let plain = aws_sdk_s3::Client::from_conf(s3crypt::s3_config(&conf, true));
    let encrypted = match mode.as_str() {
        "s3crypt" => Some(
            s3crypt::from_env()
                .sdk_config(conf.clone())
                .keyring(s3crypt::keyring::RawAesKeyring::new(
                    "bench",
                    "small-objects",
                    s3crypt::keyring::WrappingKey::generate(),
                )?)
                .load()
                .await?,
        ),
        "plain" => None,
        other => return Err(format!("unknown mode {other:?}: {usage}").into()),
    };

    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = JoinSet::new();
    for _ in 0..concurrency {
        let (next, body, bucket, prefix) =
            (next.clone(), body.clone(), bucket.clone(), prefix.clone());
        let (plain, encrypted) = (plain.clone(), encrypted.clone());
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, String>(());
                }
                let key = format!("{prefix}/{i:06}");
                match &encrypted {
                    Some(c) => c
                        .put_object()
                        .bucket(&bucket)
                        .key(key)
                        .body(body.clone())
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())?,
                    None => plain
                        .put_object()
                        .bucket(&bucket)
                        .key(key)
                        .body(body.clone().into())
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| aws_sdk_s3::error::DisplayErrorContext(e).to_string())?,
                }
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done??;
    }
    let secs = started.elapsed().as_secs_f64();
    println!("{mode} {count} {secs:.4} {:.1}", count as f64 / secs);
    Ok(())
}
