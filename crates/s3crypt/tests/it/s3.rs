//! Put/get round trips, ranges, location binding, tampering and aborts, on every server.

use std::sync::Arc;

use aws_sdk_s3::primitives::ByteStream;
use s3crypt::{ByteRange, Client, Encryption, Transfer};
use s3crypt_core::keyring::raw_aes::{RawAesKeyring, WrappingKey};
use s3crypt_core::{Keyring, Suite};

use crate::servers::{start, Kind, Server};

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 7 + 3) % 251) as u8).collect()
}

fn keyring() -> Arc<dyn Keyring> {
    Arc::new(
        RawAesKeyring::new("s3crypt-test", "key-1", WrappingKey::from_bytes([0x11; 32])).unwrap(),
    )
}

const MIB: usize = 1 << 20;

/// 5 MiB parts, 4 in flight.
const SMALL_PARTS: Transfer = Transfer::new()
    .with_part_size(5 * MIB)
    .with_multipart_threshold(5 * MIB)
    .with_concurrency(4)
    .with_download_concurrency(4);

fn client(server: &Server, suite: Suite, frame: u32) -> Client {
    Client::builder()
        .s3_client(server.s3())
        .keyring(keyring())
        .transfer(SMALL_PARTS)
        .encryption(Encryption::new().with_suite(suite).with_frame_length(frame))
        .build()
        .unwrap()
}

async fn bucket(server: &Server, name: &str) {
    server
        .s3()
        .create_bucket()
        .bucket(name)
        .send()
        .await
        .unwrap();
}

async fn put_all(
    c: &Client,
    bucket: &str,
    key: &str,
    pt: &[u8],
) -> Result<s3crypt::PutOutput, s3crypt::Error> {
    put_with(c, bucket, key, pt, false).await
}

async fn put_with(
    c: &Client,
    bucket: &str,
    key: &str,
    pt: &[u8],
    sse_c: bool,
) -> Result<s3crypt::PutOutput, s3crypt::Error> {
    c.put_object()
        .bucket(bucket)
        .key(key)
        .sse_c(sse_c)
        .body(s3crypt::Body::from_reader(std::io::Cursor::new(
            pt.to_vec(),
        )))
        .send()
        .await
}

/// Downloads the whole object twice: as a stream, in order, and into a file at offsets
/// ([`s3crypt::PlaintextStream::write_at`]). Both must agree: the same plaintext, or failing
/// with the same class of error.
async fn get_all(c: &Client, bucket: &str, key: &str) -> Result<Vec<u8>, s3crypt::Error> {
    let streamed = async {
        let out = c.get_object().bucket(bucket).key(key).send().await?;
        let mut v = Vec::new();
        out.body.write_to(&mut v).await?;
        Ok::<_, s3crypt::Error>(v)
    }
    .await;
    let positional = async {
        let out = c.get_object().bucket(bucket).key(key).send().await?;
        read_at(out.body).await
    }
    .await;
    match (streamed, positional) {
        (Ok(a), Ok(b)) => {
            assert!(
                a == b,
                "s3://{bucket}/{key}: the two ways of reading differ"
            );
            Ok(a)
        }
        (Err(a), Err(b)) => {
            assert_eq!(a.class(), b.class(), "s3://{bucket}/{key}: {a} / {b}");
            Err(a)
        }
        (a, b) => panic!(
            "s3://{bucket}/{key}: streamed {:?}, positional {:?}",
            a.map(|v| v.len()),
            b.map(|v| v.len())
        ),
    }
}

/// The plaintext written into a new file by [`s3crypt::PlaintextStream::write_at`], checked
/// against the count it returns and the progress it reported.
async fn read_at(body: s3crypt::PlaintextStream) -> Result<Vec<u8>, s3crypt::Error> {
    let file = Arc::new(tempfile::tempfile().unwrap());
    let mut seen = 0u64;
    let n = body.write_at(Arc::clone(&file), |len| seen += len).await?;
    assert_eq!(seen, n, "progress reported");
    let mut v = Vec::new();
    std::io::Read::read_to_end(&mut &*file, &mut v).unwrap();
    assert_eq!(v.len() as u64, n, "bytes in the file");
    Ok(v)
}

fn servers() -> Vec<Server> {
    [Kind::Moto, Kind::S3sFs]
        .into_iter()
        .filter_map(start)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips_across_sizes_parts_and_suites() {
    for server in servers() {
        bucket(&server, "roundtrip").await;
        let cases = [
            (
                Suite::DEFAULT,
                65536,
                vec![
                    0,
                    1,
                    65535,
                    65536,
                    65537,
                    5 * MIB - 1,
                    5 * MIB,
                    5 * MIB + 1,
                    // Inputs ending exactly at, just before and just after a part boundary.
                    10 * MIB - 1,
                    10 * MIB,
                    10 * MIB + 1,
                    11 * MIB + 3,
                ],
            ),
            (
                Suite::Aes256GcmHkdfSha512CommitEcdsaP384,
                4096,
                vec![0, 4097, 6 * MIB + 5, 10 * MIB],
            ),
            (
                Suite::ChaCha20Poly1305HkdfSha512Commit,
                16384,
                vec![10 * MIB],
            ),
        ];
        for (suite, frame, sizes) in cases {
            let c = client(&server, suite, frame);
            for n in sizes {
                let key = format!("obj-{}-{n}", suite.id());
                let pt = pattern(n);
                let put = put_all(&c, "roundtrip", &key, &pt).await.unwrap();
                assert_eq!(put.plaintext_length, n as u64);
                assert_eq!(
                    put.parts > 1,
                    n > 5 * MIB,
                    "{:?} {n}: {} parts",
                    server.kind,
                    put.parts
                );
                let info = c
                    .head_object()
                    .bucket("roundtrip")
                    .key(&key)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(info.suite, suite);
                assert_eq!(info.frame_length, frame);
                if !suite.is_signed() {
                    assert_eq!(info.plaintext_length, Some(n as u64));
                }
                let back = get_all(&c, "roundtrip", &key).await.unwrap();
                assert!(
                    back == pt,
                    "{:?} {suite} {n}: plaintext differs",
                    server.kind
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranged_gets_equal_the_slice() {
    for server in servers() {
        bucket(&server, "ranges").await;
        let c = client(&server, Suite::DEFAULT, 4096);
        let n = 12 * MIB + 1234; // several download pieces
        let pt = pattern(n);
        put_all(&c, "ranges", "r", &pt).await.unwrap();
        let len = n as u64;
        let mut seed = 0x2545F4914F6CDD1Du64;
        let mut specs = vec![
            ByteRange::From(0, Some(0)),
            ByteRange::From(len - 1, None),
            ByteRange::Suffix(5000),
            ByteRange::From(4095, Some(4096)),
            ByteRange::From(10, Some(len * 2)),
        ];
        for _ in 0..12 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let a = seed % len;
            let b = a + (seed >> 20) % 300_000;
            specs.push(ByteRange::From(a, Some(b)));
        }
        for spec in specs {
            let get = || c.get_object().bucket("ranges").key("r").range(spec);
            let out = get().send().await.unwrap();
            let served = out.range.clone().unwrap();
            let mut v = Vec::new();
            out.body.write_to(&mut v).await.unwrap();
            let slice = &pt[served.start as usize..served.end as usize];
            assert!(v[..] == *slice, "{spec:?}");
            // The same range into a file, at offsets from the range's start.
            let body = get().send().await.unwrap().body;
            assert!(
                read_at(body).await.unwrap() == *slice,
                "{spec:?} at offsets"
            );
            let want = spec.resolve(len);
            assert_eq!(served.start, want.start);
            assert_eq!(served.end, want.end.min(len));
        }
        let e = c
            .get_object()
            .bucket("ranges")
            .key("r")
            .range(ByteRange::From(len, None))
            .send()
            .await
            .unwrap_err();
        assert_eq!(e.class(), "range", "{e}");
    }
}

/// A positional sink that records what it is told and can be made to fail its n-th write.
struct Recorder {
    file: std::fs::File,
    allocated: std::sync::Mutex<Vec<u64>>,
    writes: std::sync::atomic::AtomicUsize,
    fail_at: Option<usize>,
}

impl Recorder {
    fn new(fail_at: Option<usize>) -> Arc<Self> {
        Arc::new(Self {
            file: tempfile::tempfile().unwrap(),
            allocated: Default::default(),
            writes: Default::default(),
            fail_at,
        })
    }

    fn contents(&self) -> Vec<u8> {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut &self.file, &mut v).unwrap();
        v
    }

    fn allocated(&self) -> Vec<u64> {
        self.allocated.lock().unwrap().clone()
    }
}

impl s3crypt::PositionalSink for Recorder {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        let i = self
            .writes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if Some(i) == self.fail_at {
            return Err(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                "the disk is full",
            ));
        }
        std::os::unix::fs::FileExt::write_all_at(&self.file, buf, offset)
    }

    fn allocate(&self, len: u64) -> std::io::Result<()> {
        self.allocated.lock().unwrap().push(len);
        Ok(())
    }
}

/// Sends `req` and writes its body into `sink` at offsets.
async fn write_into(req: s3crypt::GetObject, sink: &Arc<Recorder>) -> Result<u64, s3crypt::Error> {
    req.send()
        .await?
        .body
        .write_at(Arc::clone(sink), |_| {})
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_at_offsets_reserve_space_and_stop_at_a_write_error() {
    for server in servers() {
        bucket(&server, "offsets").await;
        let c = client(&server, Suite::DEFAULT, 4096);
        let pt = pattern(12 * MIB + 1234);
        put_all(&c, "offsets", "big", &pt).await.unwrap();
        let get = || c.get_object().bucket("offsets").key("big");

        // In parallel pieces: every byte lands, and the length is reserved (once the final
        // frame verified).
        let sink = Recorder::new(None);
        let n = write_into(get(), &sink).await.unwrap();
        assert_eq!(n, pt.len() as u64);
        assert_eq!(sink.allocated(), [pt.len() as u64]);
        assert!(sink.contents() == pt, "{:?}", server.kind);
        let writes = sink.writes.load(std::sync::atomic::Ordering::SeqCst);
        assert!(writes > 12 * 16, "{writes} writes: at most 64 KiB each");

        // A range: its length, at offsets from its start.
        let sink = Recorder::new(None);
        let range = ByteRange::From(3 * MIB as u64 + 17, Some(9 * MIB as u64));
        write_into(get().range(range), &sink).await.unwrap();
        assert_eq!(sink.allocated(), [6 * MIB as u64 - 16]);
        assert!(sink.contents() == pt[3 * MIB + 17..=9 * MIB]);

        // A failing write stops the download with that error.
        let e = write_into(get(), &Recorder::new(Some(5)))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, s3crypt::Error::Io(io) if io.kind() == std::io::ErrorKind::StorageFull),
            "{e}"
        );

        // An object made longer by someone without the key reserves nothing: the final frame,
        // read first, does not verify.
        let (meta, good) = raw_get(&server, "offsets", "big").await;
        let mut padded = good.clone();
        padded.resize(good.len() + 64 * MIB, 0);
        raw_put(&server, "offsets", "big", meta.clone(), padded).await;
        let sink = Recorder::new(None);
        let e = write_into(get(), &sink).await.unwrap_err();
        assert!(
            matches!(e.class(), "authentication" | "malformed" | "truncated"),
            "{e}"
        );
        assert!(sink.allocated().is_empty(), "{:?}", sink.allocated());
        // A stream that failed stays failed: what is left of it is not a complete transfer.
        let mut body = get().send().await.unwrap().body;
        while let Some(r) = body.next().await {
            if r.is_err() {
                break;
            }
        }
        assert!(body.write_at(Recorder::new(None), |_| {}).await.is_err());
        raw_put(&server, "offsets", "big", meta, good).await;

        // A stream already being read is written in order from where the reader stopped, each
        // byte at its own offset; nothing before that is touched.
        let mut body = get().send().await.unwrap().body;
        let first = body.next().await.unwrap().unwrap();
        assert!(!first.is_empty());
        let sink = Recorder::new(None);
        let n = body.write_at(Arc::clone(&sink), |_| {}).await.unwrap();
        assert_eq!(n + first.len() as u64, pt.len() as u64);
        assert!(sink.allocated().is_empty());
        let v = sink.contents();
        assert!(v[first.len()..] == pt[first.len()..]);
        assert!(v[..first.len()].iter().all(|&b| b == 0));

        // A signed message is read in order through one decryptor, into the file all the same.
        let signed = client(&server, Suite::Aes256GcmHkdfSha512CommitEcdsaP384, 4096);
        put_all(&signed, "offsets", "signed", &pt).await.unwrap();
        let sink = Recorder::new(None);
        let req = signed.get_object().bucket("offsets").key("signed");
        write_into(req, &sink).await.unwrap();
        assert!(sink.allocated().is_empty());
        assert!(sink.contents() == pt);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moved_or_substituted_objects_are_refused() {
    for server in servers() {
        bucket(&server, "loc").await;
        let c = client(&server, Suite::DEFAULT, 65536);
        put_all(&c, "loc", "a", b"for a").await.unwrap();
        put_all(&c, "loc", "b", b"for b").await.unwrap();
        // Someone with write access but no key copies a's bytes (and metadata) over b.
        let raw = server
            .s3()
            .get_object()
            .bucket("loc")
            .key("a")
            .send()
            .await
            .unwrap();
        let meta = raw.metadata().cloned();
        let bytes = raw.body.collect().await.unwrap().into_bytes();
        server
            .s3()
            .put_object()
            .bucket("loc")
            .key("b")
            .set_metadata(meta)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .unwrap();
        let e = get_all(&c, "loc", "b").await.unwrap_err();
        assert_eq!(e.class(), "context", "{e}");
        // The explicit override reads it (it is authentic, just somewhere else).
        let out = c
            .get_object()
            .bucket("loc")
            .key("b")
            .allow_moved(true)
            .send()
            .await
            .unwrap();
        let mut v = Vec::new();
        out.body.write_to(&mut v).await.unwrap();
        assert_eq!(v, b"for a");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_object_fails_authentication() {
    for server in servers() {
        bucket(&server, "tamper").await;
        let c = client(&server, Suite::DEFAULT, 4096);
        // Small objects are read through one streaming decryptor; objects larger than one
        // ranged GET (5 MiB here) in pieces decrypted in parallel: both must refuse every change.
        for n in [200_000, 12 * MIB + 1234] {
            let pt = pattern(n);
            put_all(&c, "tamper", "t", &pt).await.unwrap();
            let (meta, good) = raw_get(&server, "tamper", "t").await;
            let h = c
                .head_object()
                .bucket("tamper")
                .key("t")
                .send()
                .await
                .unwrap()
                .header_length as usize;
            let slot = 4096 + s3crypt_core::key::REGULAR_OVERHEAD;
            // Half the frames, then a well-formed empty final frame (marker, sequence number,
            // IV, zero length) with a made-up tag: a length that fits the metadata, so only
            // reading that final frame shows the message was cut.
            let half = (good.len() - h) / slot / 2;
            type Edit = Box<dyn Fn(&mut Vec<u8>)>;
            let edits: [(&str, Edit); 7] = [
                (
                    "cut after a frame and given an empty final frame",
                    Box::new(move |b| {
                        b.truncate(h + half * slot);
                        let seq = u32::try_from(half + 1).unwrap().to_be_bytes();
                        b.extend_from_slice(&[0xff; 4]);
                        b.extend_from_slice(&seq);
                        b.extend_from_slice(&[0; 8]);
                        b.extend_from_slice(&seq);
                        b.extend_from_slice(&[0; 4 + 16]);
                    }),
                ),
                (
                    "a flipped body byte",
                    Box::new(|b| {
                        let i = b.len() / 2;
                        b[i] ^= 0x01;
                    }),
                ),
                (
                    "a flipped final tag byte",
                    Box::new(|b| {
                        let i = b.len() - 1;
                        b[i] ^= 0x80;
                    }),
                ),
                (
                    "the last byte cut off",
                    Box::new(|b| {
                        b.pop();
                    }),
                ),
                ("a byte appended", Box::new(|b| b.push(0))),
                (
                    "a whole frame removed",
                    Box::new(move |b| {
                        b.drain(h + 3 * slot..h + 4 * slot);
                    }),
                ),
                (
                    "two frames swapped",
                    Box::new(move |b| {
                        let second = b[h + slot..h + 2 * slot].to_vec();
                        b.copy_within(h..h + slot, h + slot);
                        b[h..h + slot].copy_from_slice(&second);
                    }),
                ),
            ];
            for (what, edit) in edits {
                let mut bytes = good.clone();
                edit(&mut bytes);
                raw_put(&server, "tamper", "t", meta.clone(), bytes).await;
                let e = match get_all(&c, "tamper", "t").await {
                    Ok(v) => panic!(
                        "{:?}, {n} bytes, {what}: accepted, {} bytes returned",
                        server.kind,
                        v.len()
                    ),
                    Err(e) => e,
                };
                assert!(
                    matches!(e.class(), "authentication" | "malformed" | "truncated"),
                    "{:?}, {n} bytes, {what}: {e}",
                    server.kind
                );
            }
            // The untouched bytes still decrypt: the failures above were the edits'.
            raw_put(&server, "tamper", "t", meta, good).await;
            assert_eq!(get_all(&c, "tamper", "t").await.unwrap(), pt);
        }
        // Metadata that calls a signed message unsigned changes nothing: the header decides,
        // and the message is read in order, signature included.
        let signed = client(&server, Suite::Aes256GcmHkdfSha512CommitEcdsaP384, 4096);
        let pt = pattern(12 * MIB + 1234);
        put_all(&signed, "tamper", "s", &pt).await.unwrap();
        let (meta, body) = raw_get(&server, "tamper", "s").await;
        let mut meta = meta.unwrap();
        meta.insert("s3crypt-suite".into(), "0x0478".into());
        raw_put(&server, "tamper", "s", Some(meta), body).await;
        let info = signed
            .head_object()
            .bucket("tamper")
            .key("s")
            .send()
            .await
            .unwrap();
        assert_eq!(info.suite, Suite::DEFAULT, "the metadata was not rewritten");
        assert_eq!(get_all(&signed, "tamper", "s").await.unwrap(), pt);
    }
}

/// The stored bytes and metadata of an object, as S3 has them. (s3s-fs answers a whole-object
/// GET of a multipart upload with a checksum that is not the object's: this read skips the SDK's
/// check; what the bytes are is checked by decrypting them.)
async fn raw_get(
    server: &Server,
    bucket: &str,
    key: &str,
) -> (Option<std::collections::HashMap<String, String>>, Vec<u8>) {
    let raw = server
        .s3()
        .get_object()
        .bucket(bucket)
        .key(key)
        .customize()
        .config_override(
            aws_sdk_s3::config::Builder::default().response_checksum_validation(
                aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
            ),
        )
        .send()
        .await
        .unwrap();
    let meta = raw.metadata().cloned();
    (
        meta,
        raw.body.collect().await.unwrap().into_bytes().to_vec(),
    )
}

/// Stores `bytes` with `meta` as the object, bypassing s3crypt.
async fn raw_put(
    server: &Server,
    bucket: &str,
    key: &str,
    meta: Option<std::collections::HashMap<String, String>>,
    bytes: Vec<u8>,
) {
    server
        .s3()
        .put_object()
        .bucket(bucket)
        .key(key)
        .set_metadata(meta)
        .body(ByteStream::from(bytes))
        .send()
        .await
        .unwrap();
}

/// A body that fails after `ok` bytes.
struct Failing {
    left: usize,
}

impl tokio::io::AsyncRead for Failing {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.left == 0 {
            return std::task::Poll::Ready(Err(std::io::Error::other("disk on fire")));
        }
        let n = buf.remaining().min(self.left).min(1 << 16);
        buf.put_slice(&vec![7u8; n]);
        self.left -= n;
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_upload_is_aborted_and_leaves_nothing() {
    for server in servers() {
        bucket(&server, "abort").await;
        let c = client(&server, Suite::DEFAULT, 65536);
        let e = c
            .put_object()
            .bucket("abort")
            .key("x")
            .body(s3crypt::Body::from_reader(Failing { left: 12 * MIB }))
            .send()
            .await
            .unwrap_err();
        assert_eq!(e.class(), "io", "{e}");
        let e = c
            .head_object()
            .bucket("abort")
            .key("x")
            .send()
            .await
            .unwrap_err();
        assert_eq!(e.class(), "not-found", "{e}");
        if server.kind == Kind::Moto {
            // s3s-fs has no ListMultipartUploads.
            let l = server
                .s3()
                .list_multipart_uploads()
                .bucket("abort")
                .send()
                .await
                .unwrap();
            assert!(
                l.uploads().is_empty(),
                "orphaned multipart uploads: {:?}",
                l.uploads()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_esdk_decrypts_objects_downloaded_raw() {
    // Interoperability holds through S3: the stored body is a plain ESDK message.
    let Some(python) = std::env::var_os("S3CRYPT_TEST_PYTHON") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "S3CRYPT_TEST_PYTHON must be set in CI"
        );
        eprintln!("skipped: S3CRYPT_TEST_PYTHON is not set");
        return;
    };
    for server in servers() {
        bucket(&server, "interop").await;
        let dir = tempfile::tempdir().unwrap();
        let mut vectors = Vec::new();
        let cases = [
            (Suite::DEFAULT, 65536, 0usize),
            (Suite::DEFAULT, 65536, 7 * MIB + 9),
            (Suite::Aes256GcmHkdfSha512CommitEcdsaP384, 4096, 6 * MIB),
            (Suite::DEFAULT, 4096, 12_345),
        ];
        for (i, (suite, frame, n)) in cases.into_iter().enumerate() {
            let c = client(&server, suite, frame);
            let key = format!("o{i}");
            let mut ctx = s3crypt_core::EncryptionContext::new();
            ctx.insert("purpose", "interop").unwrap();
            c.put_object()
                .bucket("interop")
                .key(&key)
                .context(ctx)
                .body(s3crypt::Body::from_reader(std::io::Cursor::new(pattern(n))))
                .send()
                .await
                .unwrap();
            let raw = server
                .s3()
                .get_object()
                .bucket("interop")
                .key(&key)
                .send()
                .await
                .unwrap();
            let bytes = raw.body.collect().await.unwrap().into_bytes();
            std::fs::write(dir.path().join(&key), &bytes).unwrap();
            vectors.push(serde_json::json!({
                "id": format!("{:?}-{key}", server.kind), "ciphertext": key, "keys": ["k1"], "expect": "ok",
                "plaintext_len": n, "suite": format!("0x{:04X}", suite.id()), "frame_length": frame,
                "context": {"purpose": "interop", "s3crypt:bucket": "interop", "s3crypt:key": key},
            }));
        }
        let manifest = serde_json::json!({
            "generator": "s3crypt S3 tests",
            "keys": {"k1": {"namespace": "s3crypt-test", "name": "key-1", "key_hex": "11".repeat(32)}},
            "vectors": vectors,
        });
        std::fs::write(
            dir.path().join("manifest.json"),
            serde_json::to_vec(&manifest).unwrap(),
        )
        .unwrap();
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../test-vectors/tools/check_decrypt.py");
        let out = std::process::Command::new(&python)
            .arg(script)
            .arg(dir.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{:?}: Python ESDK rejected objects from S3:\n{stdout}{}",
            server.kind,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout
                .lines()
                .last()
                .unwrap_or_default()
                .starts_with("4 passed, 0 failed"),
            "{stdout}"
        );
    }
}

/// The SSE-C headers of every recorded S3 request for an object of `bucket` (but DELETEs, which
/// take none), checked against `want(key)`; returns how many requests of each (object key,
/// method) carried them.
fn check_sse_c_headers(
    server: &Server,
    bucket: &str,
    want: impl Fn(&str) -> (String, String),
) -> std::collections::BTreeMap<(String, String), usize> {
    let mut seen = std::collections::BTreeMap::new();
    for (method, url, h) in server.recorded() {
        let path = url
            .split("://")
            .nth(1)
            .and_then(|r| r.split_once('/'))
            .map(|(_, p)| p)
            .unwrap_or_default();
        let path = path.split('?').next().unwrap();
        let Some(key) = path.strip_prefix(&format!("{bucket}/")) else {
            continue;
        };
        if method == "DELETE" {
            continue;
        }
        let (key_b64, md5_b64) = want(key);
        assert_eq!(
            h.get("x-amz-server-side-encryption-customer-algorithm")
                .map(String::as_str),
            Some("AES256"),
            "{method} {url}"
        );
        assert_eq!(
            h.get("x-amz-server-side-encryption-customer-key"),
            Some(&key_b64),
            "{method} {url}"
        );
        assert_eq!(
            h.get("x-amz-server-side-encryption-customer-key-md5"),
            Some(&md5_b64),
            "{method} {url}"
        );
        *seen.entry((key.to_owned(), method)).or_insert(0) += 1;
    }
    seen
}

async fn put_sse_c(
    c: &Client,
    bucket: &str,
    key: &str,
    pt: &[u8],
) -> Result<s3crypt::PutOutput, s3crypt::Error> {
    put_with(c, bucket, key, pt, true).await
}

async fn get_sse_c(c: &Client, bucket: &str, key: &str, range: Option<ByteRange>) -> Vec<u8> {
    let mut req = c.get_object().bucket(bucket).key(key).sse_c(true);
    if let Some(r) = range {
        req = req.range(r);
    }
    let out = req.send().await.unwrap();
    let mut v = Vec::new();
    out.body.write_to(&mut v).await.unwrap();
    v
}

#[cfg(feature = "kms")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_c_keys_from_a_kms_hmac_key() {
    use aws_sdk_kms::primitives::Blob;
    use aws_sdk_kms::types::{KeySpec, KeyUsageType, MacAlgorithmSpec};
    use base64::Engine as _;
    use md5::Digest as _;
    use s3crypt::sse_c::KmsSseC;
    use s3crypt_kms::KmsHmacKey;
    // moto serves S3 and KMS on one endpoint; its recorder shows the headers S3 requests carried.
    let Some(server) = start(Kind::Moto) else {
        return;
    };
    bucket(&server, "ssekms").await;
    let kms = server.kms();
    let hmac_key = kms
        .create_key()
        .key_spec(KeySpec::Hmac256)
        .key_usage(KeyUsageType::GenerateVerifyMac)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .arn
        .unwrap();
    let source =
        |arn: &str| Arc::new(KmsSseC::new([KmsHmacKey::new(kms.clone(), arn).unwrap()]).unwrap());
    let c = Client::builder()
        .s3_client(server.s3())
        .keyring(keyring())
        .transfer(SMALL_PARTS)
        .sse_c(source(&hmac_key))
        .build()
        .unwrap();
    server.start_recording();
    let small = pattern(1000);
    let big = pattern(5 * MIB + 1);
    for (key, pt) in [("small", &small), ("dir/big", &big)] {
        put_sse_c(&c, "ssekms", key, pt).await.unwrap();
        assert!(&get_sse_c(&c, "ssekms", key, None).await == pt);
        assert_eq!(
            get_sse_c(&c, "ssekms", key, Some(ByteRange::Suffix(10))).await[..],
            pt[pt.len() - 10..]
        );
    }
    // The documented derivation, computed here with KMS directly: HMAC-SHA-256 under the key of
    // "s3crypt/sse-c/v1" || u16 len || bucket || u16 len || object key.
    let mut expected = std::collections::HashMap::new();
    for key in ["small", "dir/big"] {
        let mut m = b"s3crypt/sse-c/v1".to_vec();
        for part in ["ssekms", key] {
            m.extend_from_slice(&(part.len() as u16).to_be_bytes());
            m.extend_from_slice(part.as_bytes());
        }
        let mac = kms
            .generate_mac()
            .key_id(&hmac_key)
            .mac_algorithm(MacAlgorithmSpec::HmacSha256)
            .message(Blob::new(m))
            .send()
            .await
            .unwrap()
            .mac
            .unwrap()
            .into_inner();
        assert_eq!(mac.len(), 32);
        let b64 = base64::engine::general_purpose::STANDARD;
        expected.insert(key, (b64.encode(&mac), b64.encode(md5::Md5::digest(&mac))));
    }
    assert_ne!(expected["small"], expected["dir/big"], "a key per object");
    let seen = check_sse_c_headers(&server, "ssekms", |k| expected[k].clone());
    for key in ["small", "dir/big"] {
        assert!(
            seen.get(&(key.into(), "HEAD".into())).copied().unwrap_or(0) >= 2
                && seen.get(&(key.into(), "GET".into())).copied().unwrap_or(0) >= 2,
            "{seen:?}"
        );
    }
    assert_eq!(
        seen.get(&("small".into(), "PUT".into())),
        Some(&1),
        "{seen:?}"
    );
    assert_eq!(
        seen.get(&("dir/big".into(), "PUT".into())),
        Some(&2),
        "{seen:?}"
    );

    // A key that cannot make MACs: a keyring-class error naming the key, nothing uploaded.
    let symmetric = kms.create_key().send().await.unwrap();
    let symmetric = symmetric.key_metadata.unwrap().arn.unwrap();
    let bad = Client::builder()
        .s3_client(server.s3())
        .keyring(keyring())
        .sse_c(source(&symmetric))
        .build()
        .unwrap();
    let e = put_sse_c(&bad, "ssekms", "never", b"x").await.unwrap_err();
    assert_eq!(e.class(), "keyring", "{e}");
    assert!(format!("{e}").contains(&symmetric), "{e}");
    assert!(server
        .s3()
        .head_object()
        .bucket("ssekms")
        .key("never")
        .send()
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_c_headers_on_every_request_with_a_key_per_object() {
    use s3crypt::sse_c::{LocalSseC, SseCKey};
    // moto does not enforce SSE-C; its request recorder shows what every request carried.
    let Some(server) = start(Kind::Moto) else {
        return;
    };
    bucket(&server, "sse").await;
    let secret = [0x5Au8; 32];
    let c = Client::builder()
        .s3_client(server.s3())
        .keyring(keyring())
        .transfer(SMALL_PARTS)
        .sse_c(Arc::new(
            LocalSseC::new([secret, [0x11; 32]].map(zeroize::Zeroizing::new)).unwrap(),
        ))
        .build()
        .unwrap();
    server.start_recording();
    let small = pattern(1000);
    let big = pattern(6 * MIB + 7);
    put_sse_c(&c, "sse", "small", &small).await.unwrap();
    let put = put_sse_c(&c, "sse", "big", &big).await.unwrap();
    assert_eq!(put.parts, 2);
    for (key, pt) in [("small", &small), ("big", &big)] {
        assert!(&get_sse_c(&c, "sse", key, None).await == pt);
        assert_eq!(
            get_sse_c(&c, "sse", key, Some(ByteRange::Suffix(10))).await[..],
            pt[pt.len() - 10..]
        );
    }
    let seen = check_sse_c_headers(&server, "sse", |key| {
        let want = SseCKey::derive(&secret, "sse", key);
        (want.key_base64().to_string(), want.md5_base64())
    });
    // PUT, HEAD and GETs for the small object; create, 2 parts, complete, HEAD, GETs for the big one.
    assert!(
        seen.get(&("small".into(), "PUT".into())) == Some(&1),
        "{seen:?}"
    );
    assert!(
        seen.get(&("big".into(), "PUT".into())) == Some(&2),
        "{seen:?}"
    );
    assert!(
        seen.get(&("big".into(), "POST".into())) == Some(&2),
        "{seen:?}"
    );
    for key in ["small", "big"] {
        assert!(
            seen.get(&(key.into(), "HEAD".into())).copied().unwrap_or(0) >= 2,
            "{seen:?}"
        );
        assert!(
            seen.get(&(key.into(), "GET".into())).copied().unwrap_or(0) >= 3,
            "{seen:?}"
        );
    }
    assert_ne!(
        SseCKey::derive(&secret, "sse", "small").key_base64(),
        SseCKey::derive(&secret, "sse", "big").key_base64()
    );

    // Plain HTTP to anything but loopback: refused before anything is sent.
    let remote = aws_sdk_s3::Client::from_conf(
        server
            .s3()
            .config()
            .to_builder()
            .endpoint_url("http://s3crypt-test.invalid:9")
            .build(),
    );
    let c = Client::builder()
        .s3_client(remote)
        .keyring(keyring())
        .sse_c(Arc::new(
            LocalSseC::new([zeroize::Zeroizing::new(secret)]).unwrap(),
        ))
        .build()
        .unwrap();
    let e = put_sse_c(&c, "sse", "x", b"x").await.unwrap_err();
    assert!(
        format!("{e}").contains("refusing to send SSE-C keys over http"),
        "{e}"
    );
}

/// An SSE-C key source that counts the keys it derives.
#[derive(Debug)]
struct CountedSseC(s3crypt::sse_c::LocalSseC, std::sync::atomic::AtomicUsize);

impl s3crypt::sse_c::SseCSource for CountedSseC {
    fn candidates(&self) -> usize {
        self.0.candidates()
    }

    fn key<'a>(
        &'a self,
        index: usize,
        bucket: &'a str,
        key: &'a str,
    ) -> s3crypt::sse_c::KeyFuture<'a> {
        self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.0.key(index, bucket, key)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_c_on_copy_move_and_rewrap() {
    use s3crypt::sse_c::{LocalSseC, SseCKey};
    use std::sync::atomic::Ordering;
    // moto does not enforce SSE-C; its request recorder shows what every request carried. It
    // appends each request (body included) to its file in two writes, so concurrent large
    // requests can interleave: one request at a time here.
    let one_at_a_time = SMALL_PARTS.with_concurrency(1).with_download_concurrency(1);
    let Some(server) = start(Kind::Moto) else {
        return;
    };
    bucket(&server, "ssecp").await;
    let secret = [0x3Cu8; 32];
    let source = Arc::new(CountedSseC(
        LocalSseC::new([zeroize::Zeroizing::new(secret)]).unwrap(),
        Default::default(),
    ));
    let c = Client::builder()
        .s3_client(server.s3())
        .keyring(keyring())
        .transfer(one_at_a_time)
        .sse_c(source.clone())
        .build()
        .unwrap();
    let small = pattern(1000);
    let big = pattern(11 * MIB + 5);
    put_sse_c(&c, "ssecp", "small", &small).await.unwrap();
    put_sse_c(&c, "ssecp", "big", &big).await.unwrap();
    server.start_recording();
    let copy = |from: &str, to: &str| {
        c.copy_object()
            .source("ssecp", from)
            .destination("ssecp", to)
            .sse_c(true, true)
    };
    // Key-bound objects are re-encrypted: the source read with its key, the copy written with
    // its own.
    let out = copy("big", "big-copy").send().await.unwrap();
    assert!(out.parts >= 2, "a multipart upload: {out:?}");
    assert_eq!(out.mode, s3crypt::CopyMode::Reencrypted);
    // A bucket-bound object copied within its bucket is copied by S3, each side with its key.
    let loose = Client::builder()
        .s3_client(server.s3())
        .keyring(keyring())
        .transfer(one_at_a_time)
        .sse_c(source.clone())
        .location_binding(s3crypt::location::Binding::Bucket)
        .build()
        .unwrap();
    put_sse_c(&loose, "ssecp", "loose", &big).await.unwrap();
    let out = loose
        .copy_object()
        .source("ssecp", "loose")
        .destination("ssecp", "loose-copy")
        .sse_c(true, true)
        .send()
        .await
        .unwrap();
    assert_eq!(out.mode, s3crypt::CopyMode::ServerSide);
    copy("small", "small-moved")
        .delete_source(true)
        .send()
        .await
        .unwrap();
    // Rewrap in place: one key derivation (for the HEAD) serves the whole rewrap.
    let before = source.1.load(Ordering::SeqCst);
    let other: Arc<dyn Keyring> = Arc::new(
        RawAesKeyring::new("s3crypt-test", "other", WrappingKey::from_bytes([9; 32])).unwrap(),
    );
    c.copy_object()
        .source("ssecp", "big")
        .wrap_with(other)
        .sse_c(true, true)
        .send()
        .await
        .unwrap();
    assert_eq!(source.1.load(Ordering::SeqCst) - before, 1, "derivations");
    for (key, pt) in [("big-copy", &big), ("small-moved", &small), ("big", &big)] {
        assert!(&get_sse_c(&c, "ssecp", key, None).await == pt, "{key}");
    }
    assert!(get_sse_c(&loose, "ssecp", "loose-copy", None).await == big);

    let derive = |key: &str| {
        let k = SseCKey::derive(&secret, "ssecp", key);
        (k.key_base64().to_string(), k.md5_base64())
    };
    let seen = check_sse_c_headers(&server, "ssecp", derive);
    // Part copies carry the source's key in the copy-source headers.
    let mut part_copies = 0;
    for (method, url, h) in server.recorded() {
        let Some(from) = h.get("x-amz-copy-source") else {
            continue;
        };
        let from = from.trim_start_matches('/');
        let from = from
            .strip_prefix("ssecp/")
            .unwrap_or_else(|| panic!("{from}"));
        let (key, md5) = derive(from.split('?').next().unwrap());
        assert_eq!(
            h.get("x-amz-copy-source-server-side-encryption-customer-algorithm")
                .map(String::as_str),
            Some("AES256"),
            "{method} {url}"
        );
        assert_eq!(
            h.get("x-amz-copy-source-server-side-encryption-customer-key"),
            Some(&key),
            "{method} {url}"
        );
        assert_eq!(
            h.get("x-amz-copy-source-server-side-encryption-customer-key-md5"),
            Some(&md5),
            "{method} {url}"
        );
        part_copies += 1;
    }
    assert!(part_copies >= 1, "{seen:?}");
    for key in ["big-copy", "small-moved", "big", "loose-copy"] {
        assert!(
            seen.get(&(key.into(), "PUT".into())).copied().unwrap_or(0) >= 1,
            "{key}: {seen:?}"
        );
    }
    assert!(
        server
            .recorded()
            .iter()
            .any(|(m, url, _)| m == "DELETE"
                && url.split('?').next().unwrap().ends_with("/ssecp/small")),
        "the move deleted its source"
    );
}

/// `on_progress` counts each part's plaintext once S3 acknowledged it: the sum is the object's
/// plaintext, in as many steps as parts (one for a single PUT).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_counts_acknowledged_parts() {
    let Some(server) = servers().into_iter().next() else {
        return;
    };
    bucket(&server, "progress").await;
    let c = client(&server, Suite::default(), 64 * 1024);
    for (n, parts) in [(3 * MIB + 5, 1usize), (12 * MIB + 7, 3)] {
        let calls = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = calls.clone();
        let out = c
            .put_object()
            .bucket("progress")
            .key(format!("p{n}"))
            .body(s3crypt::Body::from_reader(std::io::Cursor::new(pattern(n))))
            .on_progress(move |b| seen.lock().unwrap().push(b))
            .send()
            .await
            .unwrap();
        let calls = calls.lock().unwrap().clone();
        assert_eq!(calls.iter().sum::<u64>(), n as u64, "{calls:?}");
        assert_eq!(calls.len(), parts, "{calls:?}");
        assert_eq!(out.parts as usize, parts);
    }
}
