//! Transfers through a proxy that injects 500/503 SlowDown, connection resets (mid-request and
//! mid-response) and stalls: they retry and succeed, or fail cleanly leaving nothing behind.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::StalledStreamProtectionConfig;
use s3crypt::{ByteRange, Client, KeepKeys, Transfer};
use s3crypt_core::keyring::raw_aes::{RawAesKeyring, WrappingKey};

use crate::proxy::{Fault, Proxy, Request};
use crate::servers::{start, Kind, Server};

const MIB: usize = 1 << 20;

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 7 + 3) % 251) as u8).collect()
}

/// An S3 client for `endpoint` with short timeouts and quick retries, so the faults are
/// recovered from within the test's patience (production uses the SDK's defaults).
fn sdk(endpoint: &str) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .force_path_style(true)
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(4)
                .with_initial_backoff(Duration::from_millis(20)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .read_timeout(Duration::from_secs(2))
                .build(),
        )
        .stalled_stream_protection(
            StalledStreamProtectionConfig::enabled()
                .grace_period(Duration::from_secs(1))
                .build(),
        )
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

fn client(endpoint: &str) -> Client {
    let keyring = Arc::new(
        RawAesKeyring::new("s3crypt-test", "key-1", WrappingKey::from_bytes([0x22; 32])).unwrap(),
    );
    Client::builder()
        .s3_client(sdk(endpoint))
        .keyring(keyring)
        .transfer(
            Transfer::new()
                .with_part_size(5 * MIB)
                .with_multipart_threshold(5 * MIB)
                .with_concurrency(2)
                .with_download_concurrency(2),
        )
        .build()
        .unwrap()
}

async fn setup(kind: Kind, bucket: &str) -> Option<(Server, Proxy)> {
    let server = start(kind)?;
    server
        .s3()
        .create_bucket()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    let proxy = Proxy::start(&server.endpoint).await;
    Some((server, proxy))
}

async fn get_all(c: &Client, bucket: &str, key: &str) -> Result<Vec<u8>, s3crypt::Error> {
    let out = c.get_object().bucket(bucket).key(key).send().await?;
    let mut v = Vec::new();
    out.body.write_to(&mut v).await?;
    Ok(v)
}

/// Nothing under `key`, and (moto; s3s-fs cannot list them) no multipart upload left open.
async fn nothing_left(server: &Server, bucket: &str, key: &str) {
    let head = server
        .s3()
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await;
    assert!(head.is_err(), "an object became visible after a failure");
    if server.kind == Kind::Moto {
        let l = server
            .s3()
            .list_multipart_uploads()
            .bucket(bucket)
            .send()
            .await
            .unwrap();
        assert!(l.uploads().is_empty(), "orphaned: {:?}", l.uploads());
    }
}

fn is_create_multipart(r: &Request) -> bool {
    r.method == "POST" && (r.target.ends_with("?uploads") || r.target.contains("?uploads&"))
}

fn is_complete(r: &Request) -> bool {
    r.method == "POST" && r.target.contains("uploadId=")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_survive_throttling_resets_and_stalls() {
    for kind in [Kind::Moto, Kind::S3sFs] {
        let Some((_server, proxy)) = setup(kind, "faults").await else {
            continue;
        };
        let c = client(&proxy.endpoint);
        let data = pattern(12 * MIB + 5);
        let hits = [
            proxy.inject(1, Fault::Status(503, "SlowDown"), is_create_multipart),
            proxy.inject(2, Fault::Status(500, "InternalError"), |r| r.is_part(2)),
            proxy.inject(1, Fault::ResetRequest { after: MIB }, |r| r.is_part(1)),
            proxy.inject(1, Fault::StallHead(Duration::from_secs(30)), |r| {
                r.is_part(3)
            }),
            proxy.inject(1, Fault::Status(503, "SlowDown"), is_complete),
        ];
        c.put_object()
            .bucket("faults")
            .key("big")
            .body(s3crypt::Body::from_reader(std::io::Cursor::new(
                data.clone(),
            )))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        for (i, h) in hits.iter().enumerate() {
            assert!(
                h.load(Ordering::SeqCst) > 0,
                "{kind:?}: fault {i} never hit"
            );
        }
        assert_eq!(proxy.abandoned(), 1, "the stalled part was not given up");

        // A single PUT, throttled once.
        let small = proxy.inject(1, Fault::Status(503, "SlowDown"), |r| r.method == "PUT");
        c.put_object()
            .bucket("faults")
            .key("small")
            .body(s3crypt::Body::from_reader(std::io::Cursor::new(pattern(
                1000,
            ))))
            .send()
            .await
            .unwrap();
        assert_eq!(small.load(Ordering::SeqCst), 1);
        proxy.clear();
        assert!(
            get_all(&c, "faults", "big").await.unwrap() == data,
            "{kind:?}"
        );
        assert!(get_all(&c, "faults", "small").await.unwrap() == pattern(1000));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_resume_after_resets_and_stalls() {
    for kind in [Kind::Moto, Kind::S3sFs] {
        let Some((server, proxy)) = setup(kind, "faults").await else {
            continue;
        };
        let c = client(&proxy.endpoint);
        let data = pattern(12 * MIB + 5);
        c.put_object()
            .bucket("faults")
            .key("big")
            .body(s3crypt::Body::from_reader(std::io::Cursor::new(
                data.clone(),
            )))
            .send()
            .await
            .unwrap();
        // Each of the three ranged GETs (5 MiB of ciphertext each) meets trouble, some twice.
        let hits = [
            proxy.inject(1, Fault::Status(503, "SlowDown"), Request::is_ranged_get),
            proxy.inject(
                2,
                Fault::ResetResponse { after: MIB },
                Request::is_ranged_get,
            ),
            proxy.inject(
                1,
                Fault::StallResponse {
                    after: 2 * MIB,
                    stall: Duration::from_secs(60),
                },
                Request::is_ranged_get,
            ),
            proxy.inject(
                1,
                Fault::StallHead(Duration::from_secs(60)),
                Request::is_ranged_get,
            ),
            proxy.inject(2, Fault::ResetResponse { after: 0 }, Request::is_ranged_get),
        ];
        let got = get_all(&c, "faults", "big")
            .await
            .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        assert!(got == data, "{kind:?}: wrong plaintext after retries");
        for (i, h) in hits.iter().enumerate() {
            assert!(
                h.load(Ordering::SeqCst) > 0,
                "{kind:?}: fault {i} never hit"
            );
        }
        assert_eq!(proxy.abandoned(), 2, "{kind:?}: stalls not given up");
        // Resumed GETs ask for the rest of their range only.
        let resumed = proxy
            .requests()
            .iter()
            .filter(|r| r.starts_with("GET"))
            .count();
        assert!(resumed >= 3 + 7, "{kind:?}: {:?}", proxy.requests());

        // A plaintext range whose GET breaks off twice.
        proxy.inject(
            2,
            Fault::ResetResponse { after: 1000 },
            Request::is_ranged_get,
        );
        let out = c
            .get_object()
            .bucket("faults")
            .key("big")
            .range(ByteRange::parse("bytes=1000000-7000000").unwrap())
            .send()
            .await
            .unwrap();
        let mut v = Vec::new();
        out.body.write_to(&mut v).await.unwrap();
        assert!(v == data[1_000_000..=7_000_000], "{kind:?}");

        // Into a file at offsets (pieces in any order), the pieces meeting the same trouble.
        let hits = [
            proxy.inject(1, Fault::Status(503, "SlowDown"), Request::is_ranged_get),
            proxy.inject(
                2,
                Fault::ResetResponse { after: MIB },
                Request::is_ranged_get,
            ),
        ];
        let out = c
            .get_object()
            .bucket("faults")
            .key("big")
            .send()
            .await
            .unwrap();
        let file = Arc::new(tempfile::tempfile().unwrap());
        let n = out
            .body
            .write_at(Arc::clone(&file), |_| {})
            .await
            .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        assert_eq!(n, data.len() as u64);
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut &*file, &mut v).unwrap();
        assert!(v == data, "{kind:?}: wrong file after retries");
        assert!(
            hits.iter().all(|h| h.load(Ordering::SeqCst) > 0),
            "{kind:?}"
        );
        drop(server);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_failures_abort_and_leave_nothing() {
    for kind in [Kind::Moto, Kind::S3sFs] {
        let Some((server, proxy)) = setup(kind, "faults").await else {
            continue;
        };
        let c = client(&proxy.endpoint);

        // A part that always fails: the SDK's retries run out, the upload is aborted.
        let part = proxy.inject(usize::MAX, Fault::Status(500, "InternalError"), |r| {
            r.is_part(2)
        });
        let e = c
            .put_object()
            .bucket("faults")
            .key("a")
            .body(s3crypt::Body::from_reader(std::io::Cursor::new(pattern(
                12 * MIB,
            ))))
            .send()
            .await
            .unwrap_err();
        assert_eq!(e.class(), "service", "{kind:?}: {e}");
        assert_eq!(part.load(Ordering::SeqCst), 4, "{kind:?}: max attempts");
        nothing_left(&server, "faults", "a").await;
        proxy.clear();

        // CompleteMultipartUpload never reaches the server.
        proxy.inject(usize::MAX, Fault::ResetRequest { after: 0 }, is_complete);
        let e = c
            .put_object()
            .bucket("faults")
            .key("b")
            .body(s3crypt::Body::from_reader(std::io::Cursor::new(pattern(
                12 * MIB,
            ))))
            .send()
            .await
            .unwrap_err();
        // No response: a transport error (before errors were classed by fault, "service").
        assert_eq!(e.class(), "transport", "{kind:?}: {e}");
        assert!(e.is_retryable(), "{kind:?}: {e}");
        nothing_left(&server, "faults", "b").await;
        proxy.clear();

        // Interrupted while a part hangs: aborted, nothing visible.
        let hung = proxy.inject(usize::MAX, Fault::StallHead(Duration::from_secs(60)), |r| {
            r.is_part(2)
        });
        let e = c
            .put_object()
            .bucket("faults")
            .key("c")
            .body(s3crypt::Body::from_reader(std::io::Cursor::new(pattern(
                12 * MIB,
            ))))
            .cancel_on(once_hit(hung))
            .send()
            .await
            .unwrap_err();
        assert_eq!(e.class(), "cancelled", "{kind:?}: {e}");
        nothing_left(&server, "faults", "c").await;
        proxy.clear();

        // A download that keeps breaking off fails cleanly (an error, never a short success).
        c.put_object()
            .bucket("faults")
            .key("d")
            .body(s3crypt::Body::from_reader(std::io::Cursor::new(pattern(
                3 * MIB,
            ))))
            .send()
            .await
            .unwrap();
        proxy.inject(
            usize::MAX,
            Fault::ResetResponse { after: 100 },
            Request::is_ranged_get,
        );
        let e = get_all(&c, "faults", "d").await.unwrap_err();
        // A body that keeps breaking off: a transport error ("service" before errors were
        // classed by fault).
        assert_eq!(e.class(), "transport", "{kind:?}: {e}");
        assert!(e.is_retryable(), "{kind:?}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_rewrap_and_move_leave_readable_objects() {
    for kind in [Kind::Moto, Kind::S3sFs] {
        let Some((server, proxy)) = setup(kind, "faults").await else {
            continue;
        };
        let c = client(&proxy.endpoint);
        let other: Arc<dyn s3crypt_core::Keyring> = Arc::new(
            RawAesKeyring::new("s3crypt-test", "key-2", WrappingKey::from_bytes([0x33; 32]))
                .unwrap(),
        );
        let data = pattern(12 * MIB + 7);
        c.put_object()
            .bucket("faults")
            .key("obj")
            .body(s3crypt::Body::from_reader(std::io::Cursor::new(
                data.clone(),
            )))
            .send()
            .await
            .unwrap();
        // Each step of a rewrap or move (both re-encrypt) fails in turn: the source's reads, the
        // first part, a later part, the completion, and (for a move) the deletion of the source.
        type Matcher = Box<dyn Fn(&Request) -> bool + Send + Sync>;
        let steps: [(&str, Matcher); 4] = [
            ("header GET", Box::new(Request::is_ranged_get)),
            ("UploadPart", Box::new(|r: &Request| r.is_part(1))),
            ("UploadPart 2", Box::new(|r: &Request| r.is_part(2))),
            ("Complete", Box::new(is_complete)),
        ];
        for (what, matches) in steps {
            proxy.inject(usize::MAX, Fault::Status(500, "InternalError"), matches);
            let e = c
                .copy_object()
                .source("faults", "obj")
                .wrap_with(other.clone())
                .keep(KeepKeys::None)
                .send()
                .await
                .unwrap_err();
            assert_eq!(e.class(), "service", "{kind:?} {what}: {e}");
            let e = c
                .copy_object()
                .source("faults", "obj")
                .destination("faults", "moved")
                .delete_source(true)
                .send()
                .await
                .unwrap_err();
            assert_eq!(e.class(), "service", "{kind:?} {what}: {e}");
            proxy.clear();
            // The object is intact and still under the old key; nothing appeared at the target.
            assert!(
                get_all(&c, "faults", "obj").await.unwrap() == data,
                "{kind:?} {what}"
            );
            nothing_left(&server, "faults", "moved").await;
        }
        // A move whose final delete fails leaves both objects readable.
        proxy.inject(usize::MAX, Fault::Status(500, "InternalError"), |r| {
            r.method == "DELETE"
        });
        let e = c
            .copy_object()
            .source("faults", "obj")
            .destination("faults", "moved")
            .delete_source(true)
            .send()
            .await
            .unwrap_err();
        assert_eq!(e.class(), "service", "{kind:?}: {e}");
        proxy.clear();
        assert!(get_all(&c, "faults", "obj").await.unwrap() == data);
        assert!(get_all(&c, "faults", "moved").await.unwrap() == data);
    }
}

/// Resolves once a fault has been injected (a request is hanging), however loaded the machine is.
async fn once_hit(count: Arc<AtomicUsize>) {
    while count.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_move_aborts_and_keeps_its_source() {
    for kind in [Kind::Moto, Kind::S3sFs] {
        let Some((server, proxy)) = setup(kind, "faults").await else {
            continue;
        };
        let c = client(&proxy.endpoint);
        let data = pattern(12 * MIB);
        c.put_object()
            .bucket("faults")
            .key("src")
            .body(s3crypt::Body::from_reader(std::io::Cursor::new(
                data.clone(),
            )))
            .send()
            .await
            .unwrap();
        // An upload part hangs; the move is cancelled meanwhile.
        let hung = proxy.inject(usize::MAX, Fault::StallHead(Duration::from_secs(60)), |r| {
            r.is_part(2)
        });
        let e = c
            .copy_object()
            .source("faults", "src")
            .destination("faults", "dst")
            .delete_source(true)
            .cancel_on(once_hit(hung))
            .send()
            .await
            .unwrap_err();
        assert_eq!(e.class(), "cancelled", "{kind:?}: {e}");
        proxy.clear();
        nothing_left(&server, "faults", "dst").await;
        assert!(get_all(&c, "faults", "src").await.unwrap() == data);
    }
}

/// A whole-object download starts with one ranged GET that brings the metadata and the first
/// 256 KiB: objects up to that size take one request (no HEAD), larger ones reuse its header
/// bytes, and every size around the boundary (and the multi-piece path) still decrypts exactly.
/// An empty S3 object (a range on it is answered 416) falls back to HEAD and is reported as not
/// encrypted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_objects_are_read_with_one_request() {
    for kind in [Kind::Moto, Kind::S3sFs] {
        let Some((server, proxy)) = setup(kind, "first").await else {
            continue;
        };
        let c = client(&proxy.endpoint);
        let probe = 256 << 10;
        // The plaintext length whose stored object is exactly 256 KiB (same frame count nearby;
        // keys of one length: the key is in the header's context).
        let n0 = 200_000;
        let out = c
            .put_object()
            .bucket("first")
            .key("o0000000")
            .body(pattern(n0))
            .send()
            .await
            .unwrap();
        let exact = n0 + (probe - out.size as usize);
        for n in [1, 4096, exact - 1, exact, exact + 1, 11 * MIB + 3] {
            let data = pattern(n);
            let key = format!("o{n:07}");
            c.put_object()
                .bucket("first")
                .key(&key)
                .body(data.clone())
                .send()
                .await
                .unwrap();
            let before = proxy.requests().len();
            assert_eq!(
                get_all(&c, "first", &key).await.unwrap(),
                data,
                "{kind:?} {n}"
            );
            let reqs = proxy.requests()[before..].to_vec();
            assert!(
                reqs.iter().all(|r| r.starts_with("GET ")),
                "{kind:?} {n}: {reqs:?}"
            );
            if n <= exact {
                assert_eq!(reqs.len(), 1, "{kind:?} {n}: {reqs:?}");
            }
        }
        server
            .s3()
            .put_object()
            .bucket("first")
            .key("empty")
            .body(Vec::new().into())
            .send()
            .await
            .unwrap();
        let before = proxy.requests().len();
        let e = get_all(&c, "first", "empty").await.unwrap_err();
        assert!(
            matches!(e, s3crypt::Error::NotEncrypted { .. }),
            "{kind:?}: {e:?}"
        );
        let reqs = proxy.requests()[before..].to_vec();
        assert!(
            reqs.iter().any(|r| r.starts_with("HEAD ")),
            "{kind:?}: {reqs:?}"
        );
    }
}
