//! Attacks on the fix for advisory S3C-2026-01 at the S3 level: copies, moves and rewraps driven
//! with lying metadata, truncated and extended objects, planted objects, concurrent writers,
//! hostile keyrings and caches, and the advisory scan driven past what it reads. Each test
//! asserts the defence (a failing test is a finding), except the `residual_risk_*` tests, which
//! demonstrate a risk the fix cannot close by itself.

use std::collections::{BTreeSet, HashMap};
use std::io::Cursor;
use std::sync::{Arc, Mutex};

use s3crypt::location::Binding;
use s3crypt::{ByteRange, Client, CopyMode, Encryption, KeepKeys, Transfer};
use s3crypt_core::keyring::multi::MultiKeyring;
use s3crypt_core::keyring::raw_aes::{key_name_of, RawAesKeyring, WrappingKey};
use s3crypt_core::keyring::{DataKey, DecryptionMaterials, EncryptionMaterials};
use s3crypt_core::{EncryptedDataKey, EncryptionContext, Header, Keyring, Suite};

use crate::proxy::{Fault, Proxy, Request};
use crate::servers::{start, Kind, Server};

const MIB: usize = 1 << 20;

const SMALL_PARTS: Transfer = Transfer::new()
    .with_part_size(5 * MIB)
    .with_multipart_threshold(5 * MIB)
    .with_concurrency(4)
    .with_download_concurrency(4);

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 7 + 3) % 251) as u8).collect()
}

fn key(name: &str, b: u8) -> Arc<dyn Keyring> {
    Arc::new(RawAesKeyring::new("s3crypt-test", name, WrappingKey::from_bytes([b; 32])).unwrap())
}

fn multi(keys: &[&Arc<dyn Keyring>]) -> Arc<dyn Keyring> {
    Arc::new(MultiKeyring::new(
        keys.iter()
            .map(|k| Box::new(Arc::clone(k)) as Box<dyn Keyring>)
            .collect(),
    ))
}

fn sdk(endpoint: &str) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

fn client_at(endpoint: &str, keyring: Arc<dyn Keyring>, binding: Binding) -> Client {
    Client::builder()
        .s3_client(sdk(endpoint))
        .keyring(keyring)
        .transfer(SMALL_PARTS)
        .location_binding(binding)
        .build()
        .unwrap()
}

fn client(server: &Server, keyring: Arc<dyn Keyring>) -> Client {
    client_at(&server.endpoint, keyring, Binding::Key)
}

fn bucket_bound(server: &Server, keyring: Arc<dyn Keyring>) -> Client {
    client_at(&server.endpoint, keyring, Binding::Bucket)
}

fn signed_client(server: &Server, keyring: Arc<dyn Keyring>) -> Client {
    Client::builder()
        .s3_client(server.s3())
        .keyring(keyring)
        .transfer(SMALL_PARTS)
        .encryption(
            Encryption::new()
                .with_suite(Suite::Aes256GcmHkdfSha512CommitEcdsaP384)
                .with_frame_length(4096),
        )
        .build()
        .unwrap()
}

async fn make_bucket(server: &Server, name: &str, versioned: bool) {
    let s3 = server.s3();
    s3.create_bucket().bucket(name).send().await.unwrap();
    if versioned {
        enable_versioning(server, name).await;
    }
}

async fn enable_versioning(server: &Server, name: &str) {
    server
        .s3()
        .put_bucket_versioning()
        .bucket(name)
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
}

async fn put(c: &Client, bucket: &str, k: &str, pt: &[u8]) {
    c.put_object()
        .bucket(bucket)
        .key(k)
        .body(s3crypt::Body::from_reader(Cursor::new(pt.to_vec())))
        .send()
        .await
        .unwrap();
}

async fn raw(server: &Server, bucket: &str, k: &str) -> Vec<u8> {
    // (moto's plain copy of a multipart object keeps a checksum that does not match: not
    // checked here, s3crypt authenticates what it reads.)
    let o = sdk(&server.endpoint)
        .get_object()
        .bucket(bucket)
        .key(k)
        .customize()
        .config_override(
            aws_sdk_s3::config::Config::builder().response_checksum_validation(
                aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
            ),
        )
        .send()
        .await
        .unwrap();
    o.body.collect().await.unwrap().into_bytes().to_vec()
}

async fn exists(server: &Server, bucket: &str, k: &str) -> bool {
    server
        .s3()
        .head_object()
        .bucket(bucket)
        .key(k)
        .send()
        .await
        .is_ok()
}

/// The object's S3 user metadata (s3crypt's keys included), as stored.
async fn meta(server: &Server, bucket: &str, k: &str) -> HashMap<String, String> {
    server
        .s3()
        .head_object()
        .bucket(bucket)
        .key(k)
        .send()
        .await
        .unwrap()
        .metadata()
        .cloned()
        .unwrap_or_default()
}

/// Writes raw bytes with raw metadata (what anyone with write access can do).
async fn plant(
    server: &Server,
    bucket: &str,
    k: &str,
    bytes: Vec<u8>,
    m: Option<HashMap<String, String>>,
) {
    server
        .s3()
        .put_object()
        .bucket(bucket)
        .key(k)
        .set_metadata(m)
        .body(bytes.into())
        .send()
        .await
        .unwrap();
}

async fn get(c: &Client, bucket: &str, k: &str) -> Result<Vec<u8>, s3crypt::Error> {
    let out = c.get_object().bucket(bucket).key(k).send().await?;
    let mut v = Vec::new();
    out.body.write_to(&mut v).await?;
    Ok(v)
}

/// `namespace/name` of every raw AES wrapped key in a stored message's header.
fn wrapped_names(object: &[u8]) -> BTreeSet<String> {
    Header::read(object, &Default::default())
        .unwrap()
        .header
        .encrypted_data_keys
        .iter()
        .map(|e| match key_name_of(e) {
            Some(n) => format!("{}/{n}", e.provider_id),
            None => format!(
                "{}/{}",
                e.provider_id,
                String::from_utf8_lossy(&e.provider_info)
            ),
        })
        .collect()
}

fn header_of(object: &[u8]) -> (Vec<u8>, [u8; 32]) {
    let p = Header::read(object, &Default::default()).unwrap();
    (object[..p.len()].to_vec(), p.header.message_id)
}

/// A keyring that records every data key it unwraps or is asked to wrap.
#[derive(Debug)]
struct Spy {
    inner: Arc<dyn Keyring>,
    unwrapped: Mutex<Vec<[u8; 32]>>,
    wrapped: Mutex<Vec<[u8; 32]>>,
}

impl Spy {
    fn new(inner: Arc<dyn Keyring>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            unwrapped: Mutex::default(),
            wrapped: Mutex::default(),
        })
    }
}

impl Keyring for Spy {
    fn on_encrypt(&self, m: &mut EncryptionMaterials) -> s3crypt_core::Result<()> {
        self.inner.on_encrypt(m)?;
        if let Some(k) = m.data_key() {
            self.wrapped.lock().unwrap().push(*k.as_bytes());
        }
        Ok(())
    }

    fn on_decrypt(
        &self,
        m: &mut DecryptionMaterials,
        edks: &[EncryptedDataKey],
    ) -> s3crypt_core::Result<()> {
        self.inner.on_decrypt(m, edks)?;
        if let Some(k) = m.data_key() {
            self.unwrapped.lock().unwrap().push(*k.as_bytes());
        }
        Ok(())
    }
}

/// The data key of a stored message, unwrapped with `keyring`.
fn data_key_of(keyring: &Arc<dyn Keyring>, object: &[u8]) -> [u8; 32] {
    let spy = Spy::new(keyring.clone());
    let mut d = s3crypt_core::Decryptor::new(spy.clone(), Default::default());
    d.update(object, &mut Vec::new()).unwrap();
    let k = spy.unwrapped.lock().unwrap()[0];
    k
}

/// What the old `rewrap` did, with a real data key: the same message id, data key and frames, a
/// header with one more wrapped key, tagged under the same derived key and nonce 0.
fn old_rewrap_with(msg: &[u8], data_key: &[u8; 32]) -> Vec<u8> {
    let p = Header::read(msg, &Default::default()).unwrap();
    let mut h = p.header.clone();
    h.encrypted_data_keys.push(EncryptedDataKey {
        provider_id: "test".into(),
        provider_info: b"backup".to_vec(),
        ciphertext: vec![0xBB; 40],
    });
    let hk = hkdf::Hkdf::<sha2::Sha512>::new(Some(&h.message_id), data_key);
    let mut k = [0u8; 32];
    hk.expand(
        &[&h.suite.id().to_be_bytes()[..], b"DERIVEKEY"].concat(),
        &mut k,
    )
    .unwrap();
    let mut out = h.to_bytes().unwrap();
    let (_, tag) = crate::forbidden::seal(&k, [0; 12], &out, &[]);
    out.extend_from_slice(&tag);
    out.extend_from_slice(&msg[p.len()..]);
    out
}

/// Metadata for planted bytes: the source's, with the header length of `bytes`.
fn meta_for(mut m: HashMap<String, String>, bytes: &[u8]) -> HashMap<String, String> {
    let n = Header::read(bytes, &Default::default()).unwrap().len();
    m.insert("s3crypt-header-length".into(), n.to_string());
    m
}

// ---------------------------------------------------------------------------------------------
// Keys kept and removed.
// ---------------------------------------------------------------------------------------------

/// A rewrap in place of an object that was moved (the caller accepts it, `allow_moved`): the
/// location in its context changes (it is re-bound to where it is now), and with it `copy.rs`
/// switches to "new location" rules, where `keep` is ignored and `wrap_with` replaces every key.
/// So a rewrap asked to *remove* key b keeps it (the client's keyring re-adds it), and a rewrap
/// asked to *add* key c drops a and b (the caller's own keys), both reporting success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hole_a_rewrap_of_a_moved_object_ignores_the_keys_to_keep() {
    let Some(server) = start(Kind::Moto) else {
        return;
    };
    make_bucket(&server, "mvd", false).await;
    let (ka, kb, kc) = (key("a", 1), key("b", 2), key("c", 3));
    let both = client(&server, multi(&[&ka, &kb]));
    let pt = pattern(500);
    put(&both, "mvd", "orig", &pt).await;
    for k in ["moved-1", "moved-2"] {
        server
            .s3()
            .copy_object()
            .bucket("mvd")
            .key(k)
            .copy_source("mvd/orig")
            .send()
            .await
            .unwrap();
    }
    let mut findings = Vec::new();
    // Remove b.
    let r = both
        .copy_object()
        .source("mvd", "moved-1")
        .allow_moved(true)
        .keep(KeepKeys::AllBut(vec!["s3crypt-test/b".into()]))
        .send()
        .await;
    if let Ok(out) = r {
        let names = wrapped_names(&raw(&server, "mvd", "moved-1").await);
        if names.contains("s3crypt-test/b") {
            findings.push(format!(
                "rewrap --remove-key b of a moved object succeeded ({:?}) but the new header is \
                 still wrapped under {names:?}; b still decrypts: {}",
                out.mode,
                get(&client(&server, kb.clone()), "mvd", "moved-1")
                    .await
                    .is_ok()
            ));
        }
    }
    // Add c (keep everything, the default).
    let r = both
        .copy_object()
        .source("mvd", "moved-2")
        .allow_moved(true)
        .wrap_with(kc.clone())
        .send()
        .await;
    if let Ok(out) = r {
        let names = wrapped_names(&raw(&server, "mvd", "moved-2").await);
        for kept in ["s3crypt-test/a", "s3crypt-test/b"] {
            if !names.contains(kept) {
                findings.push(format!(
                    "rewrap --add-key c of a moved object succeeded ({:?}) but silently dropped \
                     {kept}: the header holds only {names:?}",
                    out.mode
                ));
            }
        }
    }
    assert!(findings.is_empty(), "{}", findings.join("\n"));
}

/// The same rule on a copy to another location: `keep(AllBut(b))` is ignored (documented as
/// "ignored, i.e. none, when the location changes"), and the new header is wrapped under the
/// client's whole keyring, b included. A caller who asks to drop a key on the way gets a copy that
/// key still reads, and no error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hole_a_copy_silently_ignores_a_key_it_was_asked_to_drop() {
    let Some(server) = start(Kind::Moto) else {
        return;
    };
    make_bucket(&server, "cpk", false).await;
    let (ka, kb) = (key("a", 1), key("b", 2));
    let both = client(&server, multi(&[&ka, &kb]));
    put(&both, "cpk", "src", &pattern(300)).await;
    for remove in [
        KeepKeys::AllBut(vec!["s3crypt-test/b".into()]),
        KeepKeys::None,
    ] {
        let dst = format!("dst-{remove:?}").replace(['"', ' ', '(', ')', '[', ']'], "");
        let r = both
            .copy_object()
            .source("cpk", "src")
            .destination("cpk", &dst)
            .keep(remove.clone())
            .send()
            .await;
        if r.is_ok() {
            let names = wrapped_names(&raw(&server, "cpk", &dst).await);
            assert!(
                !names.contains("s3crypt-test/b"),
                "copy with keep({remove:?}) succeeded and is wrapped under {names:?}: the key the \
                 caller dropped still reads the copy"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Hostile keyrings and data-key caches during a copy.
// ---------------------------------------------------------------------------------------------

/// A keyring that plants a chosen data key during a copy (the source's, which would put the old
/// message's data key under a new message id; or a fresh one of its own): the copy must refuse,
/// and write nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyring_that_plants_a_data_key_during_a_copy_is_refused() {
    #[derive(Debug)]
    struct Planter(Option<[u8; 32]>, Arc<dyn Keyring>);
    impl Keyring for Planter {
        fn on_encrypt(&self, m: &mut EncryptionMaterials) -> s3crypt_core::Result<()> {
            m.set_data_key(match self.0 {
                Some(k) => DataKey::from_bytes(k),
                None => DataKey::generate(),
            });
            self.1.on_encrypt(m)
        }
        fn on_decrypt(
            &self,
            m: &mut DecryptionMaterials,
            e: &[EncryptedDataKey],
        ) -> s3crypt_core::Result<()> {
            self.1.on_decrypt(m, e)
        }
    }
    let Some(server) = start(Kind::Moto) else {
        return;
    };
    make_bucket(&server, "pla", false).await;
    let (ka, kc) = (key("a", 1), key("c", 3));
    let a = client(&server, ka.clone());
    for (name, n) in [("small", 700usize), ("big", 6 * MIB + 1)] {
        put(&a, "pla", name, &pattern(n)).await;
        let before = raw(&server, "pla", name).await;
        let source_key = data_key_of(&ka, &before);
        for planted in [Some(source_key), None] {
            let planter: Arc<dyn Keyring> = Arc::new(Planter(planted, kc.clone()));
            // In place (add a key) and to a new location (the planter is the new keyring).
            let e = a
                .copy_object()
                .source("pla", name)
                .wrap_with(planter.clone())
                .send()
                .await
                .unwrap_err();
            assert_eq!(e.class(), "invalid-argument", "{name}: {e}");
            assert!(
                raw(&server, "pla", name).await == before,
                "{name}: rewritten"
            );
            let dst = format!("{name}.copy");
            let e = a
                .copy_object()
                .source("pla", name)
                .destination("pla", &dst)
                .wrap_with(planter)
                .send()
                .await
                .unwrap_err();
            assert_eq!(e.class(), "invalid-argument", "{name}: {e}");
            assert!(!exists(&server, "pla", &dst).await, "{name}: written");
        }
    }
}

/// With a data-key cache as the client's keyring (bucket binding, so objects share a context): a
/// copy never takes the cached data key, and never puts its own into the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_neither_takes_nor_leaves_a_cached_data_key() {
    use s3crypt_core::keyring::caching::{CacheLimits, CachingKeyring};
    let Some(server) = start(Kind::Moto) else {
        return;
    };
    make_bucket(&server, "cch", false).await;
    make_bucket(&server, "cch2", false).await;
    let ka = key("a", 1);
    let cache: Arc<dyn Keyring> = Arc::new(
        CachingKeyring::new(
            ka.clone(),
            CacheLimits::new(std::time::Duration::from_secs(600))
                .with_max_messages(100)
                .with_max_bytes(1 << 30)
                .with_capacity(8),
        )
        .unwrap(),
    );
    let spy = Spy::new(cache);
    let c = bucket_bound(&server, spy.clone());
    let put_sized = |k: &'static str| {
        let c = c.clone();
        async move {
            c.put_object()
                .bucket("cch")
                .key(k)
                .size_hint(100)
                .body(s3crypt::Body::from_reader(Cursor::new(pattern(100))))
                .send()
                .await
                .unwrap();
        }
    };
    put_sized("one").await;
    put_sized("two").await;
    let cached = {
        let w = spy.wrapped.lock().unwrap();
        assert_eq!(w.len(), 2);
        assert_eq!(w[0], w[1], "the cache serves the second put");
        w[0]
    };
    let one = raw(&server, "cch", "one").await;
    // Re-encrypting copies: to another bucket (new context), and in place adding a key.
    c.copy_object()
        .source("cch", "one")
        .destination("cch2", "one")
        .send()
        .await
        .unwrap();
    c.copy_object()
        .source("cch", "two")
        .wrap_with(key("c", 3))
        .send()
        .await
        .unwrap();
    for (b, k) in [("cch2", "one"), ("cch", "two")] {
        let copy = raw(&server, b, k).await;
        let dk = data_key_of(&ka, &copy);
        assert_ne!(dk, cached, "{b}/{k}: the copy took the cached data key");
        assert_ne!(header_of(&copy).1, header_of(&one).1);
    }
    // The cache still serves the key it had (the copies did not replace it).
    put_sized("three").await;
    let three = raw(&server, "cch", "three").await;
    assert_eq!(data_key_of(&ka, &three), cached);
}

// ---------------------------------------------------------------------------------------------
// Lying metadata, truncation, extension.
// ---------------------------------------------------------------------------------------------

/// What a copy of a source with lying s3crypt metadata does: either refuse (writing nothing) or
/// write a destination whose plaintext, suite and frame length are the *authenticated* ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_never_trusts_lying_metadata() {
    let Some(server) = start(Kind::Moto) else {
        return;
    };
    make_bucket(&server, "lie", false).await;
    let ka = key("a", 1);
    let plain = client(&server, ka.clone());
    let signed = signed_client(&server, ka.clone());
    let pt = pattern(3000);
    let lies: Vec<(&str, &str)> = vec![
        ("s3crypt-suite", "0x0478"),
        ("s3crypt-suite", "0x0578"),
        ("s3crypt-frame-length", "4096"),
        ("s3crypt-frame-length", "65536"),
        ("s3crypt-frame-length", "3000"),
        ("s3crypt-header-length", "+16"),
        ("s3crypt-header-length", "-1"),
        ("s3crypt-content-type", "text/html"),
    ];
    for (kind, c) in [("plain", &plain), ("signed", &signed)] {
        put(c, "lie", kind, &pt).await;
        let bytes = raw(&server, "lie", kind).await;
        let truth = Header::read(&bytes, &Default::default()).unwrap().header;
        let good = meta(&server, "lie", kind).await;
        for (i, (field, value)) in lies.iter().enumerate() {
            let mut m = good.clone();
            let v = match *value {
                "+16" | "-1" => {
                    let hl: i64 = m[*field].parse().unwrap();
                    (hl + if *value == "+16" { 16 } else { -1 }).to_string()
                }
                v => v.to_string(),
            };
            m.insert((*field).to_string(), v.clone());
            let src = format!("{kind}-lie-{i}");
            plant(&server, "lie", &src, bytes.clone(), Some(m)).await;
            // (The planted object is at another key: allowed as moved.)
            let dst = format!("{src}.copy");
            let r = plain
                .copy_object()
                .source("lie", &src)
                .destination("lie", &dst)
                .allow_moved(true)
                .send()
                .await;
            match r {
                Ok(_) => {
                    let out = raw(&server, "lie", &dst).await;
                    let h = Header::read(&out, &Default::default()).unwrap().header;
                    assert_eq!(h.suite, truth.suite, "{kind} {field}={v}");
                    assert_eq!(h.frame_length, truth.frame_length, "{kind} {field}={v}");
                    assert!(
                        get(&plain, "lie", &dst).await.unwrap() == pt,
                        "{kind} {field}={v}: the copy holds other plaintext"
                    );
                }
                Err(e) => {
                    assert!(
                        !exists(&server, "lie", &dst).await,
                        "{kind} {field}={v}: {e}"
                    );
                }
            }
        }
    }
}

/// Sources cut short or extended (at frame boundaries, mid-frame, by whole frames or junk,
/// with a frame repeated), with metadata kept or re-computed to fit the new size: no copy, move
/// or rewrap of them succeeds or writes anything, and the source stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_or_extended_source_is_never_copied() {
    let Some(server) = start(Kind::Moto) else {
        return;
    };
    make_bucket(&server, "cut", false).await;
    let ka = key("a", 1);
    let small_frames = Client::builder()
        .s3_client(server.s3())
        .keyring(ka.clone())
        .transfer(SMALL_PARTS)
        .encryption(Encryption::new().with_frame_length(64))
        .build()
        .unwrap();
    let signed = signed_client(&server, ka.clone());
    let a = client(&server, ka.clone());
    let sources: Vec<(&str, &Client, usize)> = vec![
        ("frames64", &small_frames, 64 * 10 + 17),
        ("frames64-even", &small_frames, 64 * 10),
        ("empty", &a, 0),
        ("big", &a, 6 * MIB + 5),
        ("signed", &signed, 4096 * 3 + 5),
    ];
    for (name, c, n) in sources {
        let src = format!("{name}-src");
        put(c, "cut", &src, &pattern(n)).await;
        let bytes = raw(&server, "cut", &src).await;
        let good = meta(&server, "cut", &src).await;
        let p = Header::read(&bytes, &Default::default()).unwrap();
        let (hl, fl) = (p.len(), p.header.frame_length as usize);
        let slot = fl + 32;
        let len = bytes.len();
        let mut edits: Vec<(String, Vec<u8>)> = vec![
            ("header only".into(), bytes[..hl].to_vec()),
            ("minus 1 byte".into(), bytes[..len - 1].to_vec()),
            ("plus 1 byte".into(), [&bytes[..], &[0]].concat()),
            ("plus 40 zero bytes".into(), [&bytes[..], &[0; 40]].concat()),
            (
                "final frame repeated".into(),
                [&bytes[..], &bytes[len.saturating_sub(40)..]].concat(),
            ),
        ];
        if len >= hl + slot + 40 {
            edits.push((
                "last regular frame dropped".into(),
                [&bytes[..len - 40 - slot], &bytes[len - 40..]].concat(),
            ));
            edits.push(("minus one slot".into(), bytes[..len - slot].to_vec()));
            edits.push((
                "first frame repeated".into(),
                [&bytes[..hl + slot], &bytes[hl..]].concat(),
            ));
            edits.push((
                "plus one slot of junk".into(),
                [&bytes[..], &vec![7u8; slot]].concat(),
            ));
        }
        for (i, (what, edited)) in edits.into_iter().enumerate() {
            for refit in [false, true] {
                let k = format!("{name}-{i}-{refit}");
                let mut m = good.clone();
                if refit {
                    // Only where the unchanged metadata did not already fit the new size.
                    let before = format!("{name}-{i}-false");
                    if a.head_object()
                        .bucket("cut")
                        .key(&before)
                        .send()
                        .await
                        .is_ok()
                    {
                        continue;
                    }
                    // A frame length that makes the new size fit a layout, where one exists.
                    let body = edited.len().saturating_sub(hl);
                    if let Some(f) = (1..=fl / 8)
                        .rev()
                        .map(|f| f * 16)
                        .find(|&f| body >= 40 && (body - 40) % (f + 32) <= f)
                    {
                        m.insert("s3crypt-frame-length".into(), f.to_string());
                    }
                }
                plant(&server, "cut", &k, edited.clone(), Some(m)).await;
                let dst = format!("{k}.copy");
                let copied = a
                    .copy_object()
                    .source("cut", &k)
                    .destination("cut", &dst)
                    .allow_moved(true)
                    .send()
                    .await;
                assert!(copied.is_err(), "{name} {what} refit={refit}: copied");
                assert!(
                    !exists(&server, "cut", &dst).await,
                    "{name} {what}: written"
                );
                let rewrap = a
                    .copy_object()
                    .source("cut", &k)
                    .allow_moved(true)
                    .wrap_with(key("c", 3))
                    .send()
                    .await;
                assert!(rewrap.is_err(), "{name} {what} refit={refit}: rewrapped");
                assert!(raw(&server, "cut", &k).await == edited, "{name} {what}");
            }
        }
    }
}

/// A bucket-bound object copied within its bucket keeps its header, so S3 copies it byte for byte
/// after only the header was checked (found by the review: the documentation once claimed every
/// tampered source fails the copy). The documented property: such a copy is the source's bytes,
/// nothing new is authenticated, and whoever reads the copy gets the same authentication failure
/// and no plaintext.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_source_copied_by_s3_stays_detectable() {
    let Some(server) = start(Kind::Moto) else {
        return;
    };
    make_bucket(&server, "ssc", false).await;
    let loose = bucket_bound(&server, key("a", 1));
    for (name, n) in [("small", 3000usize), ("big", 6 * MIB + 1)] {
        put(&loose, "ssc", name, &pattern(n)).await;
        let mut bytes = raw(&server, "ssc", name).await;
        let at = bytes.len() - 100;
        bytes[at] ^= 1;
        let m = meta(&server, "ssc", name).await;
        plant(&server, "ssc", name, bytes.clone(), Some(m)).await;
        assert_eq!(
            get(&loose, "ssc", name).await.unwrap_err().class(),
            "authentication"
        );
        let dst = format!("{name}.copy");
        let out = loose
            .copy_object()
            .source("ssc", name)
            .destination("ssc", &dst)
            .send()
            .await
            .unwrap();
        assert_eq!(out.mode, s3crypt::CopyMode::ServerSide);
        assert!(
            raw(&server, "ssc", &dst).await == bytes,
            "{name}: not byte for byte"
        );
        let out = loose
            .get_object()
            .bucket("ssc")
            .key(&dst)
            .send()
            .await
            .unwrap();
        let mut released = Vec::new();
        let e = out.body.write_to(&mut released).await.unwrap_err();
        assert_eq!(e.class(), "authentication", "{name}");
        // Whole-object reads release pieces only once they verified; the damaged one is last.
        assert!(
            released.len() < n,
            "{name}: all of the plaintext was released"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Location binding on every read path.
// ---------------------------------------------------------------------------------------------

/// Every way an object is read (whole stream, `write_at`, `AsyncRead`, a range, a copy source, a
/// move source and an in-place rewrap), for unsigned and signed, empty, small and parallel-sized
/// objects, by readers with key and with bucket binding: an object planted over another (a plain
/// S3 copy within the bucket, or a bucket-bound object copied in from another bucket) is refused
/// as a context mismatch, and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_if_present_holds_on_every_s3_read_path() {
    let Some(server) = start(Kind::Moto) else {
        return;
    };
    make_bucket(&server, "bnd", false).await;
    make_bucket(&server, "bnd-other", false).await;
    let ka = key("a", 1);
    let plain = client(&server, ka.clone());
    let signed = signed_client(&server, ka.clone());
    let loose = bucket_bound(&server, ka.clone());
    let cases: Vec<(&str, &Client, usize)> = vec![
        ("empty", &plain, 0),
        ("small", &plain, 2000),
        ("parallel", &plain, 6 * MIB + 3),
        ("signed-small", &signed, 2000),
        ("signed-big", &signed, 6 * MIB + 3),
    ];
    let readers = [
        ("key-bound reader", &plain),
        ("bucket-bound reader", &loose),
    ];
    for (name, w, n) in cases {
        let (x, y) = (format!("{name}-x"), format!("{name}-y"));
        put(w, "bnd", &x, &pattern(n)).await;
        put(w, "bnd", &y, &pattern(n + 1)).await;
        server
            .s3()
            .copy_object()
            .bucket("bnd")
            .key(&x)
            .copy_source(format!("bnd/{y}"))
            .send()
            .await
            .unwrap();
        let planted = raw(&server, "bnd", &x).await;
        for (who, r) in readers {
            for (path, res) in read_paths(r, "bnd", &x, n > 0 && !name.starts_with("signed")).await
            {
                assert_eq!(res.err().as_deref(), Some("context"), "{name} {who} {path}");
            }
            assert!(
                raw(&server, "bnd", &x).await == planted,
                "{name} {who}: rewritten"
            );
            assert!(!exists(&server, "bnd", &format!("{x}.copied")).await);
            assert!(!exists(&server, "bnd", &format!("{x}.moved")).await);
            assert!(exists(&server, "bnd", &x).await, "{name} {who}: moved away");
        }
    }
    // A bucket-bound object copied into another bucket (same key): the bucket pair names the
    // first bucket.
    put(&loose, "bnd", "loose", &pattern(100)).await;
    server
        .s3()
        .copy_object()
        .bucket("bnd-other")
        .key("loose")
        .copy_source("bnd/loose")
        .send()
        .await
        .unwrap();
    for (who, r) in readers {
        for (path, res) in read_paths(r, "bnd-other", "loose", true).await {
            assert_eq!(res.err().as_deref(), Some("context"), "{who} {path}");
        }
    }
}

/// Reads `bucket/k` every way, each result as `Err(class)` or `Ok(())`.
async fn read_paths(
    c: &Client,
    bucket: &str,
    k: &str,
    ranged: bool,
) -> Vec<(&'static str, Result<(), String>)> {
    let class = |e: s3crypt::Error| e.class().to_owned();
    let mut r = Vec::new();
    let whole = match c.get_object().bucket(bucket).key(k).send().await {
        Ok(o) => o
            .body
            .write_to(&mut Vec::new())
            .await
            .map(|_| ())
            .map_err(class),
        Err(e) => Err(class(e)),
    };
    r.push(("whole", whole));
    let at = match c.get_object().bucket(bucket).key(k).send().await {
        Ok(o) => o
            .body
            .write_at(Arc::new(tempfile::tempfile().unwrap()), |_| {})
            .await
            .map(|_| ())
            .map_err(class),
        Err(e) => Err(class(e)),
    };
    r.push(("write_at", at));
    let read = match c.get_object().bucket(bucket).key(k).send().await {
        Ok(mut o) => tokio::io::copy(&mut o.body, &mut Vec::new())
            .await
            .map(|_| ())
            .map_err(|e| class(s3crypt::Error::from(e))),
        Err(e) => Err(class(e)),
    };
    r.push(("async-read", read));
    if ranged {
        let range = match c
            .get_object()
            .bucket(bucket)
            .key(k)
            .range(ByteRange::From(1, Some(50)))
            .send()
            .await
        {
            Ok(o) => o
                .body
                .write_to(&mut Vec::new())
                .await
                .map(|_| ())
                .map_err(class),
            Err(e) => Err(class(e)),
        };
        r.push(("range", range));
    }
    let copy = c
        .copy_object()
        .source(bucket, k)
        .destination(bucket, format!("{k}.copied"))
        .send()
        .await
        .map(|_| ())
        .map_err(class);
    r.push(("copy source", copy));
    let mv = c
        .copy_object()
        .source(bucket, k)
        .destination(bucket, format!("{k}.moved"))
        .delete_source(true)
        .send()
        .await
        .map(|_| ())
        .map_err(class);
    r.push(("move source", mv));
    let rewrap = c
        .copy_object()
        .source(bucket, k)
        .wrap_with(key("c", 3))
        .send()
        .await
        .map(|_| ())
        .map_err(class);
    r.push(("rewrap in place", rewrap));
    r
}

/// A header a key holder wrote with only an `s3crypt:key` pair (no bucket), planted under that
/// key in another bucket: not bound to the bucket, so neither reader may accept it as bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_with_half_a_location_is_not_accepted_as_bound() {
    let Some(server) = start(Kind::Moto) else {
        return;
    };
    make_bucket(&server, "half", false).await;
    let ka = key("a", 1);
    let plain = client(&server, ka.clone());
    put(&plain, "half", "model", &pattern(10)).await;
    let m = meta(&server, "half", "model").await;
    let mut ctx = EncryptionContext::new();
    ctx.insert("s3crypt:key", "victim").unwrap();
    let o = s3crypt_core::EncryptOptions {
        context: ctx,
        ..Default::default()
    };
    let mut enc = s3crypt_core::Encryptor::new(ka.as_ref(), &o).unwrap();
    let mut bytes = Vec::new();
    enc.update(b"written for any bucket", &mut bytes).unwrap();
    enc.finish(&mut bytes).unwrap();
    plant(
        &server,
        "half",
        "victim",
        bytes.clone(),
        Some(meta_for(m, &bytes)),
    )
    .await;
    for (who, r) in [
        ("key-bound", &plain),
        ("bucket-bound", &bucket_bound(&server, ka.clone())),
    ] {
        for (path, res) in read_paths(r, "half", "victim", true).await {
            assert_eq!(res.err().as_deref(), Some("context"), "{who} {path}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Concurrent writers and pinning.
// ---------------------------------------------------------------------------------------------

/// Runs `f` (async, on its own runtime and thread) to completion from synchronous code, e.g. a
/// proxy rule: the rule sees a request and changes the bucket before the request goes on.
fn run_now<F>(f: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    })
    .join()
    .unwrap();
}

/// A proxy rule that, the first time a request matches, writes `bytes` (with metadata `m`) to
/// `bucket/k` on the server directly, then lets the request through.
fn replace_on(
    proxy: &Proxy,
    endpoint: &str,
    bucket: &str,
    k: &str,
    bytes: Vec<u8>,
    m: HashMap<String, String>,
    when: impl Fn(&Request) -> bool + Send + Sync + 'static,
) -> Arc<Mutex<bool>> {
    let fired = Arc::new(Mutex::new(false));
    let f = fired.clone();
    let (endpoint, bucket, k) = (endpoint.to_owned(), bucket.to_owned(), k.to_owned());
    proxy.inject(1, Fault::Status(599, "never"), move |r| {
        let mut done = f.lock().unwrap();
        if !*done && when(r) {
            *done = true;
            let (endpoint, bucket, k, bytes, m) = (
                endpoint.clone(),
                bucket.clone(),
                k.clone(),
                bytes.clone(),
                m.clone(),
            );
            run_now(async move {
                sdk(&endpoint)
                    .put_object()
                    .bucket(bucket)
                    .key(k)
                    .set_metadata(Some(m))
                    .body(bytes.into())
                    .send()
                    .await
                    .unwrap();
            });
        }
        false
    });
    fired
}

fn is_object(r: &Request, bucket: &str, k: &str) -> bool {
    let path = r.target.split('?').next().unwrap_or_default();
    path == format!("/{bucket}/{k}")
}

/// A concurrent writer replaces the object while a copy runs: before the header is read, before
/// the final PUT of an in-place rewrap, and before a move deletes its source. The copy fails, the
/// writer's object is neither overwritten nor deleted, and nothing mixes two objects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_writer_is_never_overwritten_deleted_or_mixed() {
    let Some(server) = start(Kind::Moto) else {
        return;
    };
    make_bucket(&server, "race", false).await;
    let ka = key("a", 1);
    let direct = client(&server, ka.clone());
    let proxy = Proxy::start(&server.endpoint).await;
    let via = client_at(&proxy.endpoint, ka.clone(), Binding::Key);
    // The concurrent writer's versions, bound to the same keys (written first, kept raw).
    let theirs = pattern(900);
    let mut prepared = HashMap::new();
    for k in ["inplace", "moved", "early"] {
        put(&direct, "race", k, &theirs).await;
        prepared.insert(
            k,
            (
                raw(&server, "race", k).await,
                meta(&server, "race", k).await,
            ),
        );
        put(&direct, "race", k, &pattern(800)).await;
    }
    // 1. Before the in-place rewrap's PUT.
    let (b, m) = prepared["inplace"].clone();
    let fired = replace_on(&proxy, &server.endpoint, "race", "inplace", b, m, |r| {
        r.method == "PUT" && is_object(r, "race", "inplace")
    });
    let r = via
        .copy_object()
        .source("race", "inplace")
        .wrap_with(key("c", 3))
        .send()
        .await;
    assert!(*fired.lock().unwrap(), "the race was run");
    assert!(
        r.is_err(),
        "the rewrap overwrote a concurrent writer's object"
    );
    assert!(get(&direct, "race", "inplace").await.unwrap() == theirs);
    proxy.clear();
    // 2. Before the move deletes its source.
    let (b, m) = prepared["moved"].clone();
    let fired = replace_on(&proxy, &server.endpoint, "race", "moved", b, m, |r| {
        r.method == "DELETE" && is_object(r, "race", "moved")
    });
    let r = via
        .copy_object()
        .source("race", "moved")
        .destination("race", "moved-to")
        .delete_source(true)
        .send()
        .await;
    assert!(*fired.lock().unwrap(), "the race was run");
    assert!(r.is_err(), "the move deleted a concurrent writer's object");
    assert!(get(&direct, "race", "moved").await.unwrap() == theirs);
    assert!(get(&direct, "race", "moved-to").await.unwrap() == pattern(800));
    proxy.clear();
    // 3. Between HEAD and the header's GET.
    let (b, m) = prepared["early"].clone();
    let fired = replace_on(&proxy, &server.endpoint, "race", "early", b, m, |r| {
        r.method == "GET" && is_object(r, "race", "early")
    });
    let r = via
        .copy_object()
        .source("race", "early")
        .destination("race", "early-to")
        .send()
        .await;
    assert!(*fired.lock().unwrap(), "the race was run");
    assert!(r.is_err(), "a source replaced after HEAD was copied");
    assert!(!exists(&server, "race", "early-to").await);
}

/// A request as the proxy saw it: method, target, lower-cased headers.
type Logged = (String, String, Vec<(String, String)>);

/// Every request a copy makes against its source and target is conditional, checked from the
/// request log (the local servers do not enforce every condition: moto ignores `If-Match` on
/// `CompleteMultipartUpload` and `x-amz-copy-source-if-match`): ranged GETs carry `If-Match`, an
/// in-place multipart rewrite's `CompleteMultipartUpload` carries `If-Match`, a server-side
/// copy's `UploadPartCopy` carries `x-amz-copy-source-if-match`, a move's `DeleteObject` carries
/// `If-Match`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_of_a_copy_is_pinned() {
    let Some(server) = start(Kind::Moto) else {
        return;
    };
    make_bucket(&server, "pin", false).await;
    let ka = key("a", 1);
    let proxy = Proxy::start(&server.endpoint).await;
    let seen: Arc<Mutex<Vec<Logged>>> = Arc::default();
    let s = seen.clone();
    proxy.inject(usize::MAX, Fault::Status(599, "never"), move |r| {
        s.lock()
            .unwrap()
            .push((r.method.clone(), r.target.clone(), r.headers.clone()));
        false
    });
    let via = client_at(&proxy.endpoint, ka.clone(), Binding::Key);
    let loose = client_at(&proxy.endpoint, ka.clone(), Binding::Bucket);
    put(&via, "pin", "big", &pattern(6 * MIB + 7)).await;
    put(&loose, "pin", "loose", &pattern(6 * MIB + 7)).await;
    put(&via, "pin", "small", &pattern(100)).await;
    seen.lock().unwrap().clear();
    via.copy_object()
        .source("pin", "big")
        .wrap_with(key("c", 3))
        .send()
        .await
        .unwrap();
    let out = loose
        .copy_object()
        .source("pin", "loose")
        .destination("pin", "loose-copy")
        .send()
        .await
        .unwrap();
    assert_eq!(out.mode, CopyMode::ServerSide);
    via.copy_object()
        .source("pin", "small")
        .destination("pin", "small-moved")
        .delete_source(true)
        .send()
        .await
        .unwrap();
    let log = seen.lock().unwrap().clone();
    let has = |h: &[(String, String)], name: &str| h.iter().any(|(k, _)| k == name);
    let mut unpinned = Vec::new();
    for (method, target, headers) in &log {
        let path = target.split('?').next().unwrap();
        let from_source = ["/pin/big", "/pin/loose", "/pin/small"].contains(&path);
        let pinned = match method.as_str() {
            "GET" if from_source => has(headers, "if-match"),
            "DELETE" if from_source => has(headers, "if-match"),
            "PUT" if has(headers, "x-amz-copy-source") => {
                has(headers, "x-amz-copy-source-if-match")
            }
            "POST" if path == "/pin/big" && target.contains("uploadId=") => {
                has(headers, "if-match")
            }
            "PUT" if path == "/pin/big" && !target.contains("partNumber=") => {
                has(headers, "if-match")
            }
            _ => true,
        };
        if !pinned {
            unpinned.push(format!("{method} {target}"));
        }
    }
    assert!(unpinned.is_empty(), "unpinned requests: {unpinned:#?}");
    assert!(log
        .iter()
        .any(|(m, _, h)| m == "PUT" && has(h, "x-amz-copy-source")));
    assert!(log
        .iter()
        .any(|(m, t, _)| m == "DELETE" && t.starts_with("/pin/small")));
    assert!(log
        .iter()
        .any(|(m, t, _)| m == "POST" && t.starts_with("/pin/big?") && t.contains("uploadId=")));
}

// ---------------------------------------------------------------------------------------------
// The plaintext stream.
// ---------------------------------------------------------------------------------------------

/// `PlaintextStream::next` promises `None` "only after the whole message verified". After it has
/// reported an error once, it returns `None`: a consumer that logs the error and keeps polling
/// until `None` (or a wrapper that retries) ends as if the object were complete. (`write_to`,
/// `write_at` and the `AsyncRead` impl guard this; `next` does not.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_stream_never_ends_cleanly() {
    let Some(server) = start(Kind::Moto) else {
        return;
    };
    make_bucket(&server, "strm", false).await;
    let a = client(&server, key("a", 1));
    put(&a, "strm", "o", &pattern(5000)).await;
    let mut bytes = raw(&server, "strm", "o").await;
    let at = bytes.len() - 30;
    bytes[at] ^= 1;
    let m = meta(&server, "strm", "o").await;
    plant(&server, "strm", "o", bytes, Some(m)).await;
    let mut out = a.get_object().bucket("strm").key("o").send().await.unwrap();
    let mut saw_error = false;
    let mut after = Vec::new();
    for _ in 0..4 {
        match out.body.next().await {
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                saw_error = true;
                after.push(format!("Err({})", e.class()));
            }
            None => {
                after.push("None".into());
                break;
            }
        }
    }
    assert!(saw_error);
    assert!(
        !after.contains(&"None".to_string()),
        "after an authentication error, next() went on to {after:?}: None means \"everything \
         verified\""
    );
}

// ---------------------------------------------------------------------------------------------
// The advisory scan.
// ---------------------------------------------------------------------------------------------

/// Plants a pair made the old way under `prefix`: `a` written by s3crypt, `b` the old rewrap of
/// it (same message id and data key, another header). Returns (bytes of a, bytes of b, metadata).
async fn old_pair(
    server: &Server,
    c: &Client,
    keyring: &Arc<dyn Keyring>,
    bucket: &str,
    a: &str,
) -> (Vec<u8>, Vec<u8>, HashMap<String, String>) {
    put(c, bucket, a, &pattern(3000)).await;
    let va = raw(server, bucket, a).await;
    let vb = old_rewrap_with(&va, &data_key_of(keyring, &va));
    assert_eq!(header_of(&va).1, header_of(&vb).1);
    assert_ne!(header_of(&va).0, header_of(&vb).0);
    let m = meta_for(meta(server, bucket, a).await, &vb);
    (va, vb, m)
}

/// The old `cp --sse-c` (plain source, SSE-C destination) left pairs whose two members need
/// different reads: the plain one without SSE-C headers, the SSE-C one with them. On AWS each
/// refuses the other kind of request (400). `scan_message_ids(.., sse_c)` reads one kind per
/// scan, so scanning twice (with and without SSE-C) sees each member once, and neither scan
/// groups the pair: the affected message is reported by no scan, and `scan-ids` exits 0 both
/// times. (AWS's refusals are reproduced by a proxy in front of moto, which ignores SSE-C.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hole_the_scan_misses_a_pair_split_between_sse_c_and_plain() {
    use s3crypt::sse_c::{LocalSseC, SseCKey};
    use zeroize::Zeroizing;
    let Some(server) = start(Kind::Moto) else {
        return;
    };
    make_bucket(&server, "mix", false).await;
    let ka = key("a", 1);
    let secret = [7u8; 32];
    let c = client(&server, ka.clone());
    let (_, vb, m) = old_pair(&server, &c, &ka, "mix", "p/plain").await;
    // The old copy's destination, stored with SSE-C.
    let k = SseCKey::derive(&secret, "mix", "p/ssec");
    server
        .s3()
        .put_object()
        .bucket("mix")
        .key("p/ssec")
        .sse_customer_algorithm("AES256")
        .sse_customer_key(k.key_base64().as_str())
        .sse_customer_key_md5(k.md5_base64())
        .set_metadata(Some(m))
        .body(vb.into())
        .send()
        .await
        .unwrap();
    let scanner = |endpoint: &str| {
        Client::builder()
            .s3_client(sdk(endpoint))
            .keyring(ka.clone())
            .sse_c(Arc::new(LocalSseC::new([Zeroizing::new(secret)]).unwrap()))
            .build()
            .unwrap()
    };
    // Sanity: where reads are not refused (moto), one scan finds the pair.
    let scan = scanner(&server.endpoint)
        .scan_message_ids("mix", "p/", true)
        .await
        .unwrap();
    assert_eq!(scan.affected().count(), 1, "{scan:?}");
    // As on AWS.
    let proxy = Proxy::start(&server.endpoint).await;
    let sse = |r: &Request| {
        r.header("x-amz-server-side-encryption-customer-algorithm")
            .is_some()
    };
    proxy.inject(usize::MAX, Fault::Status(400, "InvalidRequest"), move |r| {
        is_object(r, "mix", "p/ssec") && !sse(r)
    });
    proxy.inject(
        usize::MAX,
        Fault::Status(400, "InvalidArgument"),
        move |r| is_object(r, "mix", "p/plain") && sse(r),
    );
    let s = scanner(&proxy.endpoint);
    let plain = s.scan_message_ids("mix", "p/", false).await.unwrap();
    let with = s.scan_message_ids("mix", "p/", true).await.unwrap();
    assert_eq!(
        plain.affected().count() + with.affected().count(),
        1,
        "the pair p/plain + p/ssec shares a message id under different headers, and no scan \
         reports it: without SSE-C {} affected, skipped {:?}; with SSE-C {} affected, skipped {:?}",
        plain.affected().count(),
        plain.skipped,
        with.affected().count(),
        with.skipped
    );
}

/// One member of an affected pair whose s3crypt metadata is gone (a plain S3 copy with
/// `REPLACE`, an object written by another ESDK tool) or says a wrong header length: the header
/// is still at byte 0 and the attacker reads it without any metadata, but the scan needs the
/// metadata to find it, lists the object under "skipped" and reports nothing affected (the CLI
/// exits 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hole_the_scan_needs_metadata_the_attacker_does_not() {
    let Some(server) = start(Kind::Moto) else {
        return;
    };
    make_bucket(&server, "nometa", false).await;
    let ka = key("a", 1);
    let c = client(&server, ka.clone());
    let mut missed = Vec::new();
    for (i, how) in ["no metadata", "short header length", "bad frame length"]
        .into_iter()
        .enumerate()
    {
        let prefix = format!("p{i}/");
        let (_, vb, mut m) = old_pair(&server, &c, &ka, "nometa", &format!("{prefix}a")).await;
        let m = match how {
            "no metadata" => None,
            "short header length" => {
                m.insert("s3crypt-header-length".into(), "100".into());
                Some(m)
            }
            _ => {
                m.insert("s3crypt-frame-length".into(), "0".into());
                Some(m)
            }
        };
        plant(&server, "nometa", &format!("{prefix}b"), vb, m).await;
        let scan = c.scan_message_ids("nometa", &prefix, false).await.unwrap();
        if scan.affected().count() != 1 {
            missed.push(format!("{how}: skipped {:?}", scan.skipped));
        }
    }
    assert!(
        missed.is_empty(),
        "affected pairs not reported:\n{}",
        missed.join("\n")
    );
}

/// Versions written while versioning was off ("null") and kept as non-current versions after it
/// was turned on: the scan reads them too and finds the pair.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scan_reads_null_versions() {
    let Some(server) = start(Kind::Moto) else {
        return;
    };
    make_bucket(&server, "nul", false).await;
    let ka = key("a", 1);
    let c = client(&server, ka.clone());
    let (_, vb, m) = old_pair(&server, &c, &ka, "nul", "p/o").await;
    enable_versioning(&server, "nul").await;
    plant(&server, "nul", "p/o", vb, Some(m)).await;
    let scan = c.scan_message_ids("nul", "p/", false).await.unwrap();
    assert!(scan.all_versions);
    assert_eq!(scan.scanned, 2, "{scan:?}");
    let affected: Vec<_> = scan.affected().collect();
    assert_eq!(affected.len(), 1, "{scan:?}");
    let versions: Vec<Option<&str>> = affected[0]
        .messages
        .iter()
        .map(|m| m.version_id.as_deref())
        .collect();
    assert!(versions.contains(&Some("null")), "{versions:?}");
}

/// Hostile objects under the prefix (junk with valid-looking metadata, a 4 MiB header length, a
/// header claiming 65,535 wrapped keys or a huge frame, keys with control characters and escapes)
/// neither crash the scan nor hide a real affected pair beside them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scan_survives_hostile_objects() {
    let Some(server) = start(Kind::Moto) else {
        return;
    };
    make_bucket(&server, "hst", false).await;
    let ka = key("a", 1);
    let c = client(&server, ka.clone());
    let (va, vb, m) = old_pair(&server, &c, &ka, "hst", "p/a").await;
    plant(&server, "hst", "p/b", vb, Some(m.clone())).await;
    let with = |pairs: &[(&str, String)]| {
        let mut x = m.clone();
        for (k, v) in pairs {
            x.insert((*k).to_string(), v.clone());
        }
        Some(x)
    };
    let big = 4 << 20;
    plant(
        &server,
        "hst",
        "p/junk",
        vec![0x02; 5000],
        with(&[("s3crypt-header-length", "4000".into())]),
    )
    .await;
    plant(
        &server,
        "hst",
        "p/huge",
        vec![0x02; big + 100],
        with(&[("s3crypt-header-length", big.to_string())]),
    )
    .await;
    // A v2 header prefix claiming 65,535 wrapped keys.
    let mut many = va[..1 + 2 + 32 + 2].to_vec();
    let ctx_len = u16::from_be_bytes([va[35], va[36]]) as usize;
    many.extend_from_slice(&va[37..37 + ctx_len]);
    many.extend_from_slice(&[0xFF, 0xFF]);
    many.resize(3000, 0x41);
    plant(
        &server,
        "hst",
        "p/many",
        many,
        with(&[("s3crypt-header-length", "2900".into())]),
    )
    .await;
    for weird in ["p/\u{7}bell", "p/%zz", "p/a+b c", "p/\u{1b}[31mred"] {
        plant(&server, "hst", weird, va.clone(), Some(m.clone())).await;
    }
    let scan = c.scan_message_ids("hst", "p/", false).await.unwrap();
    let affected: Vec<_> = scan.affected().collect();
    assert_eq!(affected.len(), 1, "{scan:?}");
    let keys: BTreeSet<&str> = affected[0]
        .messages
        .iter()
        .map(|m| m.key.as_str())
        .collect();
    assert!(keys.contains("p/a") && keys.contains("p/b"), "{keys:?}");
    assert!(
        keys.contains("p/\u{7}bell") && keys.contains("p/%zz"),
        "{keys:?}"
    );
    // The three that are not readable headers are counted as not messages (the scan reads
    // headers from byte 0 and ignores the metadata's claims), and nothing is left unread.
    assert_eq!(scan.not_messages, 3, "{scan:?}");
    assert!(scan.skipped.is_empty(), "{scan:?}");
}

// ---------------------------------------------------------------------------------------------
// The advisory's remedy.
// ---------------------------------------------------------------------------------------------

/// Residual risk, not closed by the fix: once two headers of one message were readable, H is
/// known for good. The advisory's remedy (re-encrypt with the fixed `rewrap`, delete the old
/// versions, scan clean) leaves the wrapping keys that wrapped the old data key in place, and the
/// old header (its wrapped key bound to the object's context, i.e. its location) still opens with
/// them. Whoever kept the two headers (or just H) and can write to the bucket puts a forgery
/// back at the object's key, with any plaintext, at any later time, and `get` returns it. Only
/// retiring those wrapping keys (re-encrypting everything under them) or refusing the affected
/// message ids on read closes it. This test DEMONSTRATES the forgery (it passes while the risk
/// exists).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn residual_risk_a_forgery_can_be_put_back_after_the_remedy() {
    let Some(server) = start(Kind::Moto) else {
        return;
    };
    make_bucket(&server, "rem", true).await;
    let ka = key("a", 1);
    let c = client(&server, ka.clone());
    // The old rewrap left two versions under one message id.
    let (va, vb, mb) = old_pair(&server, &c, &ka, "rem", "p/victim").await;
    let ma = meta(&server, "rem", "p/victim").await;
    plant(&server, "rem", "p/victim", vb.clone(), Some(mb)).await;
    let pt = pattern(3000);
    // The attacker read both versions and recovers H (known plaintext: e.g. a public report).
    let chosen = b"PAY 99999.00 EUR TO MALLORY".repeat(200);
    let chosen = &chosen[..pt.len()];
    let forgeries = crate::forbidden::forge_message(&va, &vb, &pt, chosen);
    assert!(!forgeries.is_empty());
    // The remedy, as SECURITY.md gives it: rewrap (re-encrypts), delete the old versions.
    c.copy_object()
        .source("rem", "p/victim")
        .wrap_with(ka.clone())
        .keep(KeepKeys::AllBut(vec![
            "test/backup".into(),
            "backup".into(),
        ]))
        .send()
        .await
        .unwrap();
    let versions = server
        .s3()
        .list_object_versions()
        .bucket("rem")
        .send()
        .await
        .unwrap();
    for v in versions.versions() {
        if v.is_latest() != Some(true) {
            server
                .s3()
                .delete_object()
                .bucket("rem")
                .key(v.key().unwrap())
                .version_id(v.version_id().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    let scan = c.scan_message_ids("rem", "p/", false).await.unwrap();
    assert_eq!(scan.affected().count(), 0, "{scan:?}");
    assert!(get(&c, "rem", "p/victim").await.unwrap() == pt);
    // Later: the attacker puts a forgery back.
    let mut accepted = false;
    for f in forgeries {
        plant(&server, "rem", "p/victim", f, Some(ma.clone())).await;
        if let Ok(out) = get(&c, "rem", "p/victim").await {
            assert!(out == chosen);
            accepted = true;
            break;
        }
    }
    assert!(
        accepted,
        "the forgery was refused: the residual risk is closed (update this test and SECURITY.md)"
    );
}
