//! A small ingestion service: producers hand records to a writer loop that stores each one as an
//! encrypted object, 32 at a time, through one shared client (AWS KMS with data-key caching).
//! Throttling and other transient failures are retried with backoff; anything else is reported
//! per record and the loop goes on.
//!
//! ```text
//! S3CRYPT_BUCKET=my-bucket S3CRYPT_KMS_KEY=arn:aws:kms:us-east-1:111122223333:key/… \
//!     cargo run --example ingest -- 10000
//! ```
//!
//! Credentials, region and endpoint come from the usual AWS environment (`AWS_PROFILE`,
//! `AWS_REGION`, `AWS_ENDPOINT_URL` for an S3-compatible server, ...). `cargo test` runs this
//! example's test against a local moto server (S3 and KMS).

use std::time::{Duration, Instant};

use bytes::Bytes;
use s3crypt::keyring::CacheLimits;
use s3crypt::location::Binding;
use s3crypt::{Client, EncryptionContext, Error};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// One record to store.
#[derive(Debug)]
pub struct Record {
    /// Object key.
    pub key: String,
    /// Its tenant, bound into the object's authenticated encryption context.
    pub tenant: String,
    /// The bytes.
    pub body: Bytes,
}

/// What the loop did.
#[derive(Debug, Default)]
pub struct Report {
    /// Records stored.
    pub stored: usize,
    /// Records that failed for good (each printed).
    pub failed: usize,
    /// Attempts retried after a transient failure.
    pub retries: usize,
    /// Wall-clock time.
    pub elapsed: Duration,
}

/// How many puts run at once.
pub const IN_FLIGHT: usize = 32;

/// The data-key cache: one KMS `GenerateDataKey` serves up to 10,000 objects or 5 minutes.
pub fn cache_limits() -> CacheLimits {
    CacheLimits::new(Duration::from_secs(300))
        .with_max_messages(10_000)
        .with_max_bytes(10 << 30)
}

/// Stores one record, retrying transient failures (S3 `SlowDown`, KMS throttling, 5xx, no
/// response) with exponential backoff; returns the retries it took.
async fn store(client: &Client, bucket: &str, record: &Record) -> Result<usize, Error> {
    let mut context = EncryptionContext::new();
    context.insert("tenant", &record.tenant)?;
    let mut retries = 0;
    loop {
        let put = client
            .put_object()
            .bucket(bucket)
            .key(&record.key)
            .context(context.clone())
            .content_type("application/json")
            // `Bytes` is cheap to clone: the retry resends the same record.
            .body(record.body.clone())
            .send()
            .await;
        match put {
            Ok(_) => return Ok(retries),
            Err(e) if e.is_retryable() && retries < 6 => {
                // Throttled: back off harder than for a dropped connection.
                let base = if e.is_throttling() { 200 } else { 50 };
                tokio::time::sleep(Duration::from_millis(base << retries)).await;
                retries += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The service loop: takes records from `rx` until every producer is gone, with at most
/// [`IN_FLIGHT`] puts running; returns when all of them finished.
pub async fn ingest(client: Client, bucket: String, mut rx: mpsc::Receiver<Record>) -> Report {
    let started = Instant::now();
    let mut report = Report::default();
    let mut running: JoinSet<(String, Result<usize, Error>)> = JoinSet::new();
    let tally = |report: &mut Report, (key, r): (String, Result<usize, Error>)| match r {
        Ok(retries) => {
            report.stored += 1;
            report.retries += retries;
        }
        Err(e) => {
            report.failed += 1;
            eprintln!("{key}: {e} ({:?})", e.fault());
        }
    };
    while let Some(record) = rx.recv().await {
        while running.len() >= IN_FLIGHT {
            if let Some(Ok(done)) = running.join_next().await {
                tally(&mut report, done);
            }
        }
        let (client, bucket) = (client.clone(), bucket.clone());
        running.spawn(async move {
            let r = store(&client, &bucket, &record).await;
            (record.key, r)
        });
    }
    while let Some(done) = running.join_next().await {
        match done {
            Ok(done) => tally(&mut report, done),
            Err(e) => {
                report.failed += 1;
                eprintln!("a writer task failed: {e}");
            }
        }
    }
    report.elapsed = started.elapsed();
    report
}

/// Produces `n` small JSON records.
pub fn produce(n: usize, tx: mpsc::Sender<Record>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for i in 0..n {
            let tenant = format!("tenant-{}", i % 4);
            let body = format!(
                r#"{{"seq":{i},"tenant":"{tenant}","reading":{}}}"#,
                i * 7 % 1000
            );
            let record = Record {
                key: format!("events/{tenant}/{i:08}.json"),
                tenant,
                body: Bytes::from(body),
            };
            if tx.send(record).await.is_err() {
                return;
            }
        }
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bucket = std::env::var("S3CRYPT_BUCKET").map_err(|_| "set S3CRYPT_BUCKET")?;
    let kms_key = std::env::var("S3CRYPT_KMS_KEY").map_err(|_| "set S3CRYPT_KMS_KEY")?;
    let n: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1000);

    // One client for the whole service: cheap to clone, safe to share.
    let client = s3crypt::from_env()
        .kms_key(kms_key)
        .data_key_cache(cache_limits())
        // Caching needs objects that share an encryption context: bind objects to the bucket
        // only. The price: someone who can write to the bucket (without any key) could swap two
        // objects within it; the tenant in the context still keeps tenants apart.
        .location_binding(Binding::Bucket)
        .load()
        .await?;

    let (tx, rx) = mpsc::channel(1024);
    let producer = produce(n, tx);
    let report = ingest(client, bucket, rx).await;
    producer.await?;
    println!(
        "stored {} objects in {:.2?} ({:.0}/s), {} failed, {} retries",
        report.stored,
        report.elapsed,
        report.stored as f64 / report.elapsed.as_secs_f64(),
        report.failed,
        report.retries
    );
    if report.failed > 0 {
        std::process::exit(1);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use s3crypt_test_support::servers::{start, Kind};

    /// Caching without bucket binding would cache nothing: refused, not silently useless.
    #[tokio::test]
    async fn a_cache_with_key_binding_is_refused() {
        let conf = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .build();
        let keyring = s3crypt::keyring::RawAesKeyring::new(
            "ns",
            "k",
            s3crypt::keyring::WrappingKey::generate(),
        )
        .unwrap();
        let e = s3crypt::from_env()
            .sdk_config(conf)
            .keyring(keyring)
            .data_key_cache(cache_limits())
            .load()
            .await
            .unwrap_err();
        assert!(e.to_string().contains("Binding::Bucket"), "{e}");
    }

    /// The service loop against moto (S3 and KMS): every record stored and readable with its
    /// tenant bound, through a client made by `s3crypt::from_env()`, and the data-key cache
    /// spares KMS almost every call.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_service_loop_stores_every_record_and_caches_data_keys() {
        let Some(server) = start(Kind::Moto) else {
            return;
        };
        server
            .s3()
            .create_bucket()
            .bucket("ingest")
            .send()
            .await
            .unwrap();
        let arn = server
            .kms()
            .create_key()
            .send()
            .await
            .unwrap()
            .key_metadata
            .unwrap()
            .arn
            .unwrap();
        let conf = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .endpoint_url(&server.endpoint)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::SharedCredentialsProvider::new(
                aws_sdk_s3::config::Credentials::new("testing", "testing", None, None, "tests"),
            ))
            .build();
        let client = s3crypt::from_env()
            .sdk_config(conf)
            .kms_key(arn)
            .data_key_cache(cache_limits())
            .location_binding(Binding::Bucket)
            .load()
            .await
            .unwrap();
        server.start_recording();

        const N: usize = 300;
        let (tx, rx) = mpsc::channel(64);
        let producer = produce(N, tx);
        let report = ingest(client.clone(), "ingest".into(), rx).await;
        producer.await.unwrap();
        assert_eq!((report.stored, report.failed), (N, 0), "{report:?}");

        // KMS: one GenerateDataKey per context (4 tenants in one bucket), not one per object.
        let generate = server
            .recorded()
            .iter()
            .filter(|(_, _, h)| {
                h.get("x-amz-target")
                    .is_some_and(|t| t.ends_with("GenerateDataKey"))
            })
            .count();
        println!("GenerateDataKey calls for {N} objects: {generate}");
        assert!(
            (4..=8).contains(&generate),
            "{generate} GenerateDataKey calls for {N} objects"
        );

        for i in [0usize, 1, 150, N - 1] {
            let tenant = format!("tenant-{}", i % 4);
            let mut want = EncryptionContext::new();
            want.insert("tenant", &tenant).unwrap();
            let out = client
                .get_object()
                .bucket("ingest")
                .key(format!("events/{tenant}/{i:08}.json"))
                .required_context(want)
                .send()
                .await
                .unwrap();
            let body = out.body.collect().await.unwrap();
            assert!(
                body.starts_with(format!(r#"{{"seq":{i},"#).as_bytes()),
                "{body:?}"
            );
        }
    }
}
