//! Copy, move and rewrap: a new header only ever comes with a new data key and message id
//! (re-encryption); a copy whose header stays the same is made by S3 byte for byte.

use std::sync::{Arc, Mutex};

use s3crypt::location::Binding;
use s3crypt::{Client, CopyMode, KeepKeys, Transfer};
use s3crypt_core::keyring::multi::MultiKeyring;
use s3crypt_core::keyring::raw_aes::{RawAesKeyring, WrappingKey};
use s3crypt_core::keyring::{DecryptionMaterials, EncryptionMaterials};
use s3crypt_core::{EncryptedDataKey, Header, Keyring, Suite};

use crate::servers::{start, Kind, Server};

const MIB: usize = 1 << 20;

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

const SMALL_PARTS: Transfer = Transfer::new()
    .with_part_size(5 * MIB)
    .with_multipart_threshold(5 * MIB)
    .with_concurrency(4)
    .with_download_concurrency(4);

fn client(server: &Server, keyring: Arc<dyn Keyring>) -> Client {
    Client::builder()
        .s3_client(server.s3())
        .keyring(keyring)
        .transfer(SMALL_PARTS)
        .build()
        .unwrap()
}

fn bucket_bound(server: &Server, keyring: Arc<dyn Keyring>) -> Client {
    Client::builder()
        .s3_client(server.s3())
        .keyring(keyring)
        .transfer(SMALL_PARTS)
        .location_binding(Binding::Bucket)
        .build()
        .unwrap()
}

async fn raw(server: &Server, bucket: &str, k: &str) -> Vec<u8> {
    raw_version(server, bucket, k, None).await
}

async fn raw_version(server: &Server, bucket: &str, k: &str, version: Option<&str>) -> Vec<u8> {
    let o = server
        .s3()
        .get_object()
        .bucket(bucket)
        .key(k)
        .set_version_id(version.map(str::to_owned))
        .send()
        .await
        .unwrap();
    o.body.collect().await.unwrap().into_bytes().to_vec()
}

/// The header bytes (tag included) and message id of a stored message.
fn header_of(object: &[u8]) -> (Vec<u8>, [u8; 32]) {
    let p = Header::read(object, &Default::default()).unwrap();
    (object[..p.len()].to_vec(), p.header.message_id)
}

/// The property the fix restores: two stored messages either have the very same header bytes or
/// different message ids (so no key and nonce ever tagged two different headers).
fn assert_no_retagged_header(a: &[u8], b: &[u8], what: &str) {
    let ((ha, ida), (hb, idb)) = (header_of(a), header_of(b));
    assert!(
        ha == hb || ida != idb,
        "{what}: two different headers share the message id {ida:02x?}"
    );
}

async fn get(c: &Client, bucket: &str, k: &str) -> Result<Vec<u8>, s3crypt::Error> {
    let out = c.get_object().bucket(bucket).key(k).send().await?;
    Ok(out.body.collect().await?.to_vec())
}

fn servers() -> Vec<Server> {
    [Kind::Moto, Kind::S3sFs]
        .into_iter()
        .filter_map(start)
        .collect()
}

async fn make_bucket(server: &Server, name: &str, versioned: bool) {
    let s3 = server.s3();
    s3.create_bucket().bucket(name).send().await.unwrap();
    if versioned {
        s3.put_bucket_versioning()
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
}

/// A keyring that records every data key it unwraps (to see that a rewrite changed it).
#[derive(Debug)]
struct Spy(Arc<dyn Keyring>, Mutex<Vec<[u8; 32]>>);

impl Keyring for Spy {
    fn on_encrypt(&self, m: &mut EncryptionMaterials) -> s3crypt_core::Result<()> {
        self.0.on_encrypt(m)
    }

    fn on_decrypt(
        &self,
        m: &mut DecryptionMaterials,
        edks: &[EncryptedDataKey],
    ) -> s3crypt_core::Result<()> {
        self.0.on_decrypt(m, edks)?;
        if let Some(k) = m.data_key() {
            self.1.lock().unwrap().push(*k.as_bytes());
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_and_move_re_encrypt_under_a_new_message_id() {
    for server in servers() {
        make_bucket(&server, "cpy", false).await;
        let a = client(&server, key("a", 1));
        for (name, n) in [("small", 1000usize), ("big", 13 * MIB + 5), ("empty", 0)] {
            let pt = pattern(n);
            a.put_object()
                .bucket("cpy")
                .key(name)
                .metadata([("owner".to_string(), "ops".to_string())].into())
                .content_type("text/plain")
                .body(s3crypt::Body::from_reader(std::io::Cursor::new(pt.clone())))
                .send()
                .await
                .unwrap();
            let before = a
                .head_object()
                .bucket("cpy")
                .key(name)
                .send()
                .await
                .unwrap();
            let dst = format!("copies/{name}");
            let out = a
                .copy_object()
                .source("cpy", name)
                .destination("cpy", &dst)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{:?} {name}: {e}", server.kind));
            assert_eq!(out.mode, CopyMode::Reencrypted, "{out:?}");
            assert_eq!(out.bytes_downloaded, before.size, "{out:?}");
            if n > 5 * MIB {
                assert!(out.parts >= 2, "{out:?}");
            }
            let (src, cpy) = (
                raw(&server, "cpy", name).await,
                raw(&server, "cpy", &dst).await,
            );
            assert_eq!(cpy.len() as u64, out.size);
            assert_ne!(header_of(&src).1, header_of(&cpy).1, "a new message id");
            assert_no_retagged_header(&src, &cpy, name);
            // Both read back, each bound to its own location; metadata carried over.
            assert!(get(&a, "cpy", &dst).await.unwrap() == pt);
            assert!(get(&a, "cpy", name).await.unwrap() == pt);
            let info = a
                .head_object()
                .bucket("cpy")
                .key(&dst)
                .send()
                .await
                .unwrap();
            assert_eq!(info.user_metadata, before.user_metadata);
            assert_eq!(info.content_type.as_deref(), Some("text/plain"));
            assert_eq!(info.plaintext_length, Some(n as u64));
            assert_eq!(info.header_length, out.header_length_after);

            // A move: the destination is complete before the source goes.
            let moved = format!("moved/{name}");
            let out = a
                .copy_object()
                .source("cpy", &dst)
                .destination("cpy", &moved)
                .delete_source(true)
                .send()
                .await
                .unwrap();
            assert_eq!(out.mode, CopyMode::Reencrypted);
            assert_no_retagged_header(&cpy, &raw(&server, "cpy", &moved).await, name);
            assert!(get(&a, "cpy", &moved).await.unwrap() == pt);
            assert_eq!(
                a.head_object()
                    .bucket("cpy")
                    .key(&dst)
                    .send()
                    .await
                    .unwrap_err()
                    .class(),
                "not-found"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_that_keeps_the_header_is_made_by_s3_byte_for_byte() {
    for server in servers() {
        make_bucket(&server, "same", false).await;
        make_bucket(&server, "other", false).await;
        let a = bucket_bound(&server, key("a", 1));
        for (name, n) in [("small", 1000usize), ("big", 11 * MIB + 3)] {
            let pt = pattern(n);
            a.put_object()
                .bucket("same")
                .key(name)
                .body(s3crypt::Body::from_reader(std::io::Cursor::new(pt.clone())))
                .send()
                .await
                .unwrap();
            // Within its bucket, a bucket-bound object keeps its context and keys: S3 copies it.
            let dst = format!("copy/{name}");
            let out = a
                .copy_object()
                .source("same", name)
                .destination("same", &dst)
                .send()
                .await
                .unwrap();
            assert_eq!(out.mode, CopyMode::ServerSide, "{out:?}");
            assert_eq!(out.bytes_uploaded, 0);
            assert!(out.bytes_downloaded < 4096, "{out:?}");
            let src = raw(&server, "same", name).await;
            assert!(src == raw(&server, "same", &dst).await, "byte for byte");
            assert!(get(&a, "same", &dst).await.unwrap() == pt);
            // Into another bucket the context changes: re-encrypted.
            let out = a
                .copy_object()
                .source("same", name)
                .destination("other", name)
                .send()
                .await
                .unwrap();
            assert_eq!(out.mode, CopyMode::Reencrypted, "{out:?}");
            assert_no_retagged_header(&src, &raw(&server, "other", name).await, name);
            assert!(get(&a, "other", name).await.unwrap() == pt);
            // In place with nothing to change: nothing is written.
            let etag = a
                .head_object()
                .bucket("same")
                .key(name)
                .send()
                .await
                .unwrap()
                .etag;
            let out = a
                .copy_object()
                .source("same", name)
                .keep(KeepKeys::AllBut(vec!["s3crypt-test/nobody".into()]))
                .send()
                .await
                .unwrap();
            assert_eq!(out.mode, CopyMode::Unchanged, "{out:?}");
            assert_eq!(
                a.head_object()
                    .bucket("same")
                    .key(name)
                    .send()
                    .await
                    .unwrap()
                    .etag,
                etag
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrap_in_place_adds_and_removes_keys_under_a_new_data_key() {
    for server in servers() {
        make_bucket(&server, "rwp", false).await;
        let (ka, kb) = (key("a", 1), key("b", 2));
        let spy = Arc::new(Spy(multi(&[&ka, &kb]), Mutex::default()));
        let a = client(&server, ka.clone());
        let b = client(&server, kb.clone());
        let both = client(&server, spy.clone());
        for (name, n) in [("small", 10usize), ("big", 12 * MIB + 1)] {
            let pt = pattern(n);
            a.put_object()
                .bucket("rwp")
                .key(name)
                .body(s3crypt::Body::from_reader(std::io::Cursor::new(pt.clone())))
                .send()
                .await
                .unwrap();
            let v1 = raw(&server, "rwp", name).await;
            assert_eq!(get(&b, "rwp", name).await.unwrap_err().class(), "no-key");
            assert!(get(&both, "rwp", name).await.unwrap() == pt);

            // Add b, keep a.
            let out = a
                .copy_object()
                .source("rwp", name)
                .wrap_with(kb.clone())
                .send()
                .await
                .unwrap_or_else(|e| panic!("{:?} {name}: {e}", server.kind));
            assert_eq!(out.mode, CopyMode::Reencrypted);
            assert!(get(&a, "rwp", name).await.unwrap() == pt);
            assert!(get(&b, "rwp", name).await.unwrap() == pt);
            let v2 = raw(&server, "rwp", name).await;
            assert_no_retagged_header(&v1, &v2, name);
            assert_eq!(
                Header::read(&v2, &Default::default())
                    .unwrap()
                    .header
                    .encrypted_data_keys
                    .len(),
                2
            );

            // Remove a (b unwraps now).
            b.copy_object()
                .source("rwp", name)
                .keep(KeepKeys::AllBut(vec!["s3crypt-test/a".into()]))
                .send()
                .await
                .unwrap();
            assert_eq!(get(&a, "rwp", name).await.unwrap_err().class(), "no-key");
            assert!(get(&b, "rwp", name).await.unwrap() == pt);
            let v3 = raw(&server, "rwp", name).await;
            assert_no_retagged_header(&v2, &v3, name);
            assert_no_retagged_header(&v1, &v3, name);
            // Every version had its own data key: removing a key now revokes it for the new
            // object (whoever kept an old data key cannot read this one).
            spy.1.lock().unwrap().clear();
            for v in [&v1, &v2, &v3] {
                let mut d = s3crypt_core::Decryptor::new(
                    spy.clone(),
                    s3crypt_core::DecryptOptions::default(),
                );
                d.update(v, &mut Vec::new()).unwrap();
            }
            let keys = spy.1.lock().unwrap().clone();
            assert_eq!(keys.len(), 3);
            assert!(keys[0] != keys[1] && keys[1] != keys[2] && keys[0] != keys[2]);

            // Removing the last key is refused and leaves the object as it was.
            let e = b
                .copy_object()
                .source("rwp", name)
                .keep(KeepKeys::None)
                .send()
                .await
                .unwrap_err();
            assert_eq!(e.class(), "invalid-argument", "{e}");
            assert!(raw(&server, "rwp", name).await == v3);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_key_the_client_does_not_hold_is_named_and_nothing_is_written() {
    let Some(server) = start(Kind::Moto) else {
        return;
    };
    make_bucket(&server, "kept", false).await;
    let (ka, kb, kc) = (key("a", 1), key("b", 2), key("c", 3));
    client(&server, multi(&[&ka, &kb]))
        .put_object()
        .bucket("kept")
        .key("o")
        .body(s3crypt::Body::from_reader(std::io::Cursor::new(pattern(
            100,
        ))))
        .send()
        .await
        .unwrap();
    let before = raw(&server, "kept", "o").await;
    let a = client(&server, ka.clone());
    let e = a
        .copy_object()
        .source("kept", "o")
        .wrap_with(kc.clone())
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.class(), "invalid-argument", "{e}");
    assert!(e.to_string().contains("s3crypt-test/b"), "{e}");
    assert!(raw(&server, "kept", "o").await == before);
    // Dropping b instead works: the object is then a's and c's.
    a.copy_object()
        .source("kept", "o")
        .wrap_with(kc.clone())
        .keep(KeepKeys::AllBut(vec!["b".into()]))
        .send()
        .await
        .unwrap();
    for k in [&ka, &kc] {
        assert!(get(&client(&server, k.clone()), "kept", "o").await.unwrap() == pattern(100));
    }
    assert_eq!(
        get(&client(&server, kb), "kept", "o")
            .await
            .unwrap_err()
            .class(),
        "no-key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_refusals_and_signed_objects() {
    for server in servers() {
        make_bucket(&server, "nop", false).await;
        let a = client(&server, key("a", 1));
        // A signed object is re-encrypted (and signed again, with a new key pair).
        let signed = Client::builder()
            .s3_client(server.s3())
            .keyring(key("a", 1))
            .encryption(
                s3crypt::Encryption::new().with_suite(Suite::Aes256GcmHkdfSha512CommitEcdsaP384),
            )
            .build()
            .unwrap();
        signed
            .put_object()
            .bucket("nop")
            .key("signed")
            .body(s3crypt::Body::from_reader(std::io::Cursor::new(pattern(
                100,
            ))))
            .send()
            .await
            .unwrap();
        let out = a
            .copy_object()
            .source("nop", "signed")
            .destination("nop", "x")
            .send()
            .await
            .unwrap();
        assert_eq!(out.mode, CopyMode::Reencrypted);
        assert!(get(&a, "nop", "x").await.unwrap() == pattern(100));
        assert_eq!(
            a.head_object()
                .bucket("nop")
                .key("x")
                .send()
                .await
                .unwrap()
                .suite,
            Suite::Aes256GcmHkdfSha512CommitEcdsaP384
        );
        // A source that was moved behind s3crypt's back is refused unless allowed.
        a.put_object()
            .bucket("nop")
            .key("orig")
            .body(s3crypt::Body::from_reader(std::io::Cursor::new(pattern(
                100,
            ))))
            .send()
            .await
            .unwrap();
        server
            .s3()
            .copy_object()
            .bucket("nop")
            .key("planted")
            .copy_source("nop/orig")
            .send()
            .await
            .unwrap();
        let e = a
            .copy_object()
            .source("nop", "planted")
            .destination("nop", "y")
            .send()
            .await
            .unwrap_err();
        assert_eq!(e.class(), "context", "{e}");
        // A client reading with bucket binding must not launder a key-bound object either.
        let loose = bucket_bound(&server, key("a", 1));
        let e = loose
            .copy_object()
            .source("nop", "planted")
            .destination("nop", "y")
            .send()
            .await
            .unwrap_err();
        assert_eq!(e.class(), "context", "{e}");
        a.copy_object()
            .source("nop", "planted")
            .destination("nop", "y")
            .allow_moved(true)
            .send()
            .await
            .unwrap();
        assert!(get(&a, "nop", "y").await.unwrap() == pattern(100));
        // The wrong key cannot copy; nothing is written.
        let e = client(&server, key("z", 9))
            .copy_object()
            .source("nop", "orig")
            .destination("nop", "z")
            .send()
            .await
            .unwrap_err();
        assert_eq!(e.class(), "no-key", "{e}");
        assert_eq!(
            a.head_object()
                .bucket("nop")
                .key("z")
                .send()
                .await
                .unwrap_err()
                .class(),
            "not-found"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_source_is_not_copied() {
    let Some(server) = start(Kind::Moto) else {
        return;
    };
    make_bucket(&server, "tmp", false).await;
    let a = client(&server, key("a", 1));
    for (name, n) in [("small", 3000usize), ("big", 11 * MIB)] {
        a.put_object()
            .bucket("tmp")
            .key(name)
            .body(s3crypt::Body::from_reader(std::io::Cursor::new(pattern(n))))
            .send()
            .await
            .unwrap();
        let mut bytes = raw(&server, "tmp", name).await;
        let at = bytes.len() - 100;
        bytes[at] ^= 1;
        let info = a
            .head_object()
            .bucket("tmp")
            .key(name)
            .send()
            .await
            .unwrap();
        let meta: std::collections::HashMap<String, String> = server
            .s3()
            .head_object()
            .bucket("tmp")
            .key(name)
            .send()
            .await
            .unwrap()
            .metadata()
            .cloned()
            .unwrap_or_default();
        server
            .s3()
            .put_object()
            .bucket("tmp")
            .key(name)
            .set_metadata(Some(meta))
            .body(bytes.into())
            .send()
            .await
            .unwrap();
        let e = a
            .copy_object()
            .source("tmp", name)
            .destination("tmp", format!("c/{name}"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(e.class(), "authentication", "{name}: {e}");
        let e = a
            .head_object()
            .bucket("tmp")
            .key(format!("c/{name}"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(e.class(), "not-found", "{name}: {info:?}");
    }
}

/// Every copy path over a versioned bucket, for single-PUT and multipart objects, with and
/// without SSE-C: afterwards no two stored versions anywhere share a message id unless their
/// headers are byte-identical, and the forbidden attack finds nothing to forge from any pair.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_copy_path_retags_a_header_under_an_old_message_id() {
    use s3crypt::sse_c::LocalSseC;
    // s3s-fs has no versioning; moto keeps every version.
    let Some(server) = start(Kind::Moto) else {
        return;
    };
    make_bucket(&server, "ver", true).await;
    make_bucket(&server, "ver2", true).await;
    let (ka, kb) = (key("a", 1), key("b", 2));
    let sse = Arc::new(LocalSseC::new([zeroize::Zeroizing::new([7u8; 32])]).unwrap());
    let build = |binding: Binding| {
        Client::builder()
            .s3_client(server.s3())
            .keyring(multi(&[&ka, &kb]))
            .transfer(SMALL_PARTS)
            .location_binding(binding)
            .sse_c(sse.clone())
            .build()
            .unwrap()
    };
    let (keyed, loose) = (build(Binding::Key), build(Binding::Bucket));
    let mut plaintexts = Vec::new();
    for (c, bind) in [(&keyed, "key"), (&loose, "bucket")] {
        for (size, n) in [("single", 2000usize), ("multi", 11 * MIB + 9)] {
            for sse_c in [false, true] {
                let k = format!("{bind}-{size}-{}", if sse_c { "ssec" } else { "plain" });
                let pt = pattern(n + k.len());
                c.put_object()
                    .bucket("ver")
                    .key(&k)
                    .sse_c(sse_c)
                    .body(s3crypt::Body::from_reader(std::io::Cursor::new(pt.clone())))
                    .send()
                    .await
                    .unwrap();
                let copy = |to_bucket: &str, to: &str| {
                    c.copy_object()
                        .source("ver", &k)
                        .destination(to_bucket, to)
                        .sse_c(sse_c, sse_c)
                };
                copy("ver", &format!("{k}.cp")).send().await.unwrap();
                copy("ver2", &k).send().await.unwrap();
                copy("ver", &format!("{k}.tmp")).send().await.unwrap();
                c.copy_object()
                    .source("ver", format!("{k}.tmp"))
                    .destination("ver", format!("{k}.mv"))
                    .sse_c(sse_c, sse_c)
                    .delete_source(true)
                    .send()
                    .await
                    .unwrap();
                // In place: add a key, remove it, and a rewrite that changes nothing.
                let extra = key("extra", 5);
                c.copy_object()
                    .source("ver", &k)
                    .wrap_with(extra)
                    .sse_c(sse_c, sse_c)
                    .send()
                    .await
                    .unwrap();
                c.copy_object()
                    .source("ver", &k)
                    .keep(KeepKeys::AllBut(vec!["extra".into()]))
                    .sse_c(sse_c, sse_c)
                    .send()
                    .await
                    .unwrap();
                let out = c
                    .copy_object()
                    .source("ver", &k)
                    .keep(KeepKeys::AllBut(vec!["extra".into()]))
                    .sse_c(sse_c, sse_c)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(out.mode, CopyMode::Unchanged);
                plaintexts.push((k, pt));
            }
        }
    }
    // Every stored version of every object, in both buckets (moto does not enforce SSE-C on
    // reads, so the raw bytes come back as stored).
    let mut messages: Vec<(String, Vec<u8>)> = Vec::new();
    for b in ["ver", "ver2"] {
        let versions = server
            .s3()
            .list_object_versions()
            .bucket(b)
            .send()
            .await
            .unwrap();
        for v in versions.versions() {
            let (k, id) = (v.key().unwrap(), v.version_id().unwrap());
            messages.push((
                format!("{b}/{k}@{id}"),
                raw_version(&server, b, k, Some(id)).await,
            ));
        }
    }
    // Per object: three versions in place (put, add, remove), the copy, the moved-away
    // temporary and the move's target, and the copy in the second bucket.
    assert_eq!(messages.len(), 8 * 7, "{}", messages.len());
    let mut by_id: std::collections::HashMap<[u8; 32], Vec<usize>> = Default::default();
    for (i, (_, m)) in messages.iter().enumerate() {
        by_id.entry(header_of(m).1).or_default().push(i);
    }
    for group in by_id.values() {
        for &j in &group[1..] {
            let (a, b) = (&messages[group[0]], &messages[j]);
            assert_no_retagged_header(&a.1, &b.1, &format!("{} / {}", a.0, b.0));
        }
    }
    // Server-side copies (bucket-bound, same bucket) are the only shared ids, and they are
    // byte-identical messages.
    assert!(by_id.values().any(|g| g.len() > 1));
    // The attack of advisory S3C-2026-01, on every pair of versions of one object (what a
    // reader of a versioned bucket holds): nothing it forges decrypts.
    let all = multi(&[&ka, &kb]);
    for (k, pt) in &plaintexts {
        let versions: Vec<&Vec<u8>> = messages
            .iter()
            .filter(|(name, _)| name.starts_with(&format!("ver/{k}@")))
            .map(|(_, m)| m)
            .collect();
        assert!(versions.len() >= 3, "{k}: {}", versions.len());
        for (i, va) in versions.iter().enumerate() {
            for vb in &versions[i + 1..] {
                let chosen = vec![b'!'; pt.len().min(64)];
                for forged in crate::forbidden::forge_message(va, vb, pt, &chosen) {
                    let mut d = s3crypt_core::Decryptor::new(
                        all.clone(),
                        s3crypt_core::DecryptOptions::default(),
                    );
                    let mut out = Vec::new();
                    let r = match d.update(&forged, &mut out) {
                        Ok(()) => d.finish(&mut out).map(|_| ()),
                        Err(e) => Err(e),
                    };
                    assert!(r.is_err(), "{k}: a forgery decrypted");
                }
            }
        }
    }
}

/// `get` with bucket binding once required only `s3crypt:bucket`: a plain S3 copy of object y
/// over x read back as y's plaintext. Every location pair the header carries must now match,
/// whatever the reader's binding, on every read path (whole small, whole parallel, ranged).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copied_over_object_under_bind_bucket_is_refused() {
    for server in servers() {
        make_bucket(&server, "swap", false).await;
        let writer = client(&server, key("a", 1));
        let loose = bucket_bound(&server, key("a", 1));
        for (x, y, n) in [("x", "y", 100usize), ("bx", "by", 9 * MIB)] {
            for k in [x, y] {
                writer
                    .put_object()
                    .bucket("swap")
                    .key(k)
                    .body(s3crypt::Body::from_reader(std::io::Cursor::new(pattern(
                        n + k.len(),
                    ))))
                    .send()
                    .await
                    .unwrap();
            }
            server
                .s3()
                .copy_object()
                .bucket("swap")
                .key(x)
                .copy_source(format!("swap/{y}"))
                .send()
                .await
                .unwrap();
            for c in [&writer, &loose] {
                let e = get(c, "swap", x).await.unwrap_err();
                assert_eq!(e.class(), "context", "{:?} {x}: {e}", server.kind);
                let e = c
                    .get_object()
                    .bucket("swap")
                    .key(x)
                    .range(s3crypt::ByteRange::From(0, Some(9)))
                    .send()
                    .await
                    .unwrap_err();
                assert_eq!(e.class(), "context", "{:?} {x}: {e}", server.kind);
            }
            // Objects bound to the bucket only still read with bucket binding.
            loose
                .put_object()
                .bucket("swap")
                .key(format!("{x}-loose"))
                .body(s3crypt::Body::from_reader(std::io::Cursor::new(pattern(n))))
                .send()
                .await
                .unwrap();
            assert!(get(&loose, "swap", &format!("{x}-loose")).await.unwrap() == pattern(n));
        }
    }
}

/// `Client::scan_message_ids` finds what the old `rewrap` left: two versions of an object whose
/// different headers share a message id (re-made here as the old code did it), and tells them
/// from copies that kept the header byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_finds_messages_rewrapped_the_old_way() {
    use crate::forbidden::{old_rewrap, FixedKeyring};
    let Some(server) = start(Kind::Moto) else {
        return;
    };
    make_bucket(&server, "adv", true).await;
    let fixed: Arc<dyn Keyring> = Arc::new(FixedKeyring);
    let c = client(&server, fixed.clone());
    let pt = pattern(3000);
    for k in ["p/victim", "p/fine", "q/elsewhere"] {
        c.put_object()
            .bucket("adv")
            .key(k)
            .body(s3crypt::Body::from_reader(std::io::Cursor::new(pt.clone())))
            .send()
            .await
            .unwrap();
    }
    // The old rewrap of p/victim: a new version with another header under the same message id.
    let old = raw(&server, "adv", "p/victim").await;
    let forged = old_rewrap(&old);
    let head = server
        .s3()
        .head_object()
        .bucket("adv")
        .key("p/victim")
        .send()
        .await
        .unwrap();
    let mut meta = head.metadata().cloned().unwrap_or_default();
    let hlen = Header::read(&forged, &Default::default()).unwrap().len();
    meta.insert("s3crypt-header-length".into(), hlen.to_string());
    server
        .s3()
        .put_object()
        .bucket("adv")
        .key("p/victim")
        .set_metadata(Some(meta))
        .body(forged.clone().into())
        .send()
        .await
        .unwrap();
    // It reads as genuine, which is the problem.
    assert!(get(&c, "adv", "p/victim").await.unwrap() == pt);
    // A byte-for-byte copy shares an id harmlessly.
    let loose = bucket_bound(&server, fixed.clone());
    loose
        .put_object()
        .bucket("adv")
        .key("p/loose")
        .body(s3crypt::Body::from_reader(std::io::Cursor::new(pt.clone())))
        .send()
        .await
        .unwrap();
    let out = loose
        .copy_object()
        .source("adv", "p/loose")
        .destination("adv", "p/loose-copy")
        .send()
        .await
        .unwrap();
    assert_eq!(out.mode, CopyMode::ServerSide);

    let scan = c.scan_message_ids("adv", "p/", false).await.unwrap();
    assert!(scan.all_versions);
    assert_eq!(scan.scanned, 5, "{scan:?}");
    assert!(scan.skipped.is_empty(), "{scan:?}");
    let affected: Vec<_> = scan.affected().collect();
    assert_eq!(affected.len(), 1, "{scan:?}");
    assert_eq!(affected[0].distinct_headers, 2);
    assert!(affected[0].messages.iter().all(|m| m.key == "p/victim"));
    assert_eq!(
        affected[0].message_id,
        Header::read(&old, &Default::default())
            .unwrap()
            .header
            .message_id
    );
    let harmless: Vec<_> = scan.shared.iter().filter(|g| !g.affected()).collect();
    assert_eq!(harmless.len(), 1, "{scan:?}");
    let keys: Vec<&str> = harmless[0]
        .messages
        .iter()
        .map(|m| m.key.as_str())
        .collect();
    assert_eq!(keys, ["p/loose", "p/loose-copy"]);

    // The remedy: rewrap re-encrypts; the scan of the current objects is then clean, and the
    // old versions are what to delete.
    // (The planted header also names a "backup" key this client does not hold: a rewrite must
    // drop it or be given it.)
    c.copy_object()
        .source("adv", "p/victim")
        .wrap_with(fixed)
        .keep(KeepKeys::AllBut(vec!["backup".into()]))
        .send()
        .await
        .unwrap();
    let current = raw(&server, "adv", "p/victim").await;
    assert_no_retagged_header(&current, &old, "remedy");
    assert_no_retagged_header(&current, &forged, "remedy");
}

/// A copy S3 makes byte for byte writes the destination's s3crypt metadata from the
/// authenticated header, not from the source's (unauthenticated) metadata.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_side_copy_takes_its_metadata_from_the_header() {
    let Some(server) = start(Kind::Moto) else {
        return;
    };
    make_bucket(&server, "mdh", false).await;
    let loose = bucket_bound(&server, key("a", 1));
    loose
        .put_object()
        .bucket("mdh")
        .key("src")
        .body(s3crypt::Body::from_reader(std::io::Cursor::new(pattern(
            5000,
        ))))
        .send()
        .await
        .unwrap();
    let s3 = server.s3();
    let mut meta = s3
        .head_object()
        .bucket("mdh")
        .key("src")
        .send()
        .await
        .unwrap()
        .metadata()
        .cloned()
        .unwrap();
    meta.insert("s3crypt-suite".into(), "0x0578".into());
    meta.insert("s3crypt-frame-length".into(), "4096".into());
    s3.copy_object()
        .bucket("mdh")
        .key("src")
        .copy_source("mdh/src")
        .metadata_directive(aws_sdk_s3::types::MetadataDirective::Replace)
        .set_metadata(Some(meta))
        .send()
        .await
        .unwrap();
    let out = loose
        .copy_object()
        .source("mdh", "src")
        .destination("mdh", "dst")
        .send()
        .await
        .unwrap();
    assert_eq!(out.mode, CopyMode::ServerSide);
    let info = loose
        .head_object()
        .bucket("mdh")
        .key("dst")
        .send()
        .await
        .unwrap();
    assert_eq!(info.suite, Suite::DEFAULT);
    assert_eq!(info.frame_length, s3crypt_core::DEFAULT_FRAME_LENGTH);
    assert!(get(&loose, "mdh", "dst").await.unwrap() == pattern(5000));
}

/// `skip_if_unchanged` skips only when every added key already wraps the data key: a raw AES
/// key with the namespace and name of the object's key but other material does not (found by
/// an independent review). Such a rewrap is refused, not skipped, and the object stays as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_same_named_other_key_is_neither_skipped_nor_silently_swapped() {
    let Some(server) = start(Kind::S3sFs) else {
        return;
    };
    make_bucket(&server, "rvs", false).await;
    let (old, new) = (key("prod", 1), key("prod", 2));
    let a = client(&server, old.clone());
    let pt = pattern(1000);
    a.put_object()
        .bucket("rvs")
        .key("o")
        .body(s3crypt::Body::from_reader(std::io::Cursor::new(pt.clone())))
        .send()
        .await
        .unwrap();
    let before = raw(&server, "rvs", "o").await;
    // rewrap -k old.kr --add-key new.kr (both keys named s3crypt-test/prod)
    for skip in [true, false] {
        let e = a
            .copy_object()
            .source("rvs", "o")
            .wrap_with(new.clone())
            .skip_if_unchanged(skip)
            .send()
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("has the name of a different key"),
            "skip {skip}: {e}"
        );
        assert!(
            raw(&server, "rvs", "o").await == before,
            "the object changed"
        );
    }
    assert!(get(&a, "rvs", "o").await.unwrap() == pt);
}

/// When skipping is right (added keys already there) and when not (a new key among them, a key
/// removed, a copy elsewhere), and `always_reencrypt` (--force): each time a new data key and
/// message id, the same content and keys (from an independent review).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_if_unchanged_cases_and_always_reencrypt() {
    let Some(server) = start(Kind::S3sFs) else {
        return;
    };
    make_bucket(&server, "rvf", false).await;
    let (ka, kb, kc) = (key("a", 1), key("b", 2), key("c", 3));
    let spy = Arc::new(Spy(multi(&[&ka, &kb, &kc]), Mutex::default()));
    let all = client(&server, spy.clone());
    let reader = |k: &Arc<dyn Keyring>| client(&server, k.clone());
    let put = |name: &'static str, pt: Vec<u8>, k: Arc<dyn Keyring>| {
        let c = client(&server, k);
        async move {
            c.put_object()
                .bucket("rvf")
                .key(name)
                .body(s3crypt::Body::from_reader(std::io::Cursor::new(pt)))
                .send()
                .await
                .unwrap();
        }
    };
    let data_keys = |v: &[&Vec<u8>]| {
        spy.1.lock().unwrap().clear();
        for m in v {
            let mut d =
                s3crypt_core::Decryptor::new(spy.clone(), s3crypt_core::DecryptOptions::default());
            d.update(m, &mut Vec::new()).unwrap();
        }
        spy.1.lock().unwrap().clone()
    };

    for (name, n) in [("small", 1000usize), ("big", 12 * MIB + 1)] {
        let pt = pattern(n);
        put(name, pt.clone(), multi(&[&ka, &kb])).await;
        let v0 = raw(&server, "rvf", name).await;

        // Adding a key that already wraps it: skipped, nothing written.
        for add in [ka.clone(), kb.clone(), multi(&[&ka, &kb])] {
            let out = all
                .copy_object()
                .source("rvf", name)
                .wrap_with(add)
                .skip_if_unchanged(true)
                .send()
                .await
                .unwrap();
            assert_eq!(out.mode, CopyMode::Unchanged);
            assert!(raw(&server, "rvf", name).await == v0);
        }
        // A keyring of several keys, one of them new: not skipped, c can read. The probe's
        // throwaway key (the first the added keyring is given) is not the object's data key.
        let seen = Arc::new(EncryptSpy(multi(&[&ka, &kc]), Mutex::default()));
        let out = all
            .copy_object()
            .source("rvf", name)
            .wrap_with(seen.clone())
            .skip_if_unchanged(true)
            .send()
            .await
            .unwrap();
        assert_eq!(out.mode, CopyMode::Reencrypted);
        assert!(get(&reader(&kc), "rvf", name).await.unwrap() == pt);
        let v1 = raw(&server, "rvf", name).await;
        assert_no_retagged_header(&v0, &v1, name);
        let given = seen.1.lock().unwrap().clone();
        assert_eq!(given.len(), 2, "one probe, one real wrap");
        let stored = data_keys(&[&v0, &v1]);
        assert!(given[0] != given[1] && given[0] != stored[0] && given[0] != stored[1]);
        assert!(
            given[1] == stored[1],
            "the second wrap is the object's new data key"
        );
        // Remove b and add a (already there): not skipped, b is gone.
        let out = all
            .copy_object()
            .source("rvf", name)
            .keep(KeepKeys::AllBut(vec!["b".into()]))
            .wrap_with(ka.clone())
            .skip_if_unchanged(true)
            .send()
            .await
            .unwrap();
        assert_eq!(out.mode, CopyMode::Reencrypted);
        assert_eq!(
            get(&reader(&kb), "rvf", name).await.unwrap_err().class(),
            "no-key"
        );
        assert!(get(&reader(&ka), "rvf", name).await.unwrap() == pt);
        let v2 = raw(&server, "rvf", name).await;

        // A copy elsewhere is not skipped (and the source stays).
        let out = all
            .copy_object()
            .source("rvf", name)
            .destination("rvf", format!("{name}.cp"))
            .wrap_with(ka.clone())
            .skip_if_unchanged(true)
            .send()
            .await
            .unwrap();
        assert_ne!(out.mode, CopyMode::Unchanged);
        assert!(get(&all, "rvf", &format!("{name}.cp")).await.unwrap() == pt);
        assert!(raw(&server, "rvf", name).await == v2);

        // --force: no keys added or removed, with and without skip_if_unchanged, and with a key
        // added that already wraps it. Each time a new data key and message id, the same
        // content, the same keys.
        let mut versions = vec![v2.clone()];
        for (skip, add) in [(false, None), (true, None), (true, Some(ka.clone()))] {
            let mut req = all
                .copy_object()
                .source("rvf", name)
                .skip_if_unchanged(skip)
                .always_reencrypt(true);
            if let Some(k) = add {
                req = req.wrap_with(k);
            }
            let out = req.send().await.unwrap();
            assert_eq!(out.mode, CopyMode::Reencrypted, "skip {skip}");
            let v = raw(&server, "rvf", name).await;
            for old in &versions {
                assert_no_retagged_header(old, &v, name);
                assert_ne!(header_of(old).1, header_of(&v).1, "the message id is new");
            }
            assert!(get(&reader(&ka), "rvf", name).await.unwrap() == pt);
            assert!(get(&reader(&kc), "rvf", name).await.unwrap() == pt);
            assert_eq!(
                get(&reader(&kb), "rvf", name).await.unwrap_err().class(),
                "no-key"
            );
            versions.push(v);
        }
        let refs: Vec<&Vec<u8>> = versions.iter().collect();
        let keys = data_keys(&refs);
        assert_eq!(keys.len(), versions.len());
        for i in 0..keys.len() {
            for j in 0..i {
                assert!(keys[i] != keys[j], "{name}: a data key was reused");
            }
        }
    }
}

/// Records the data key each `on_encrypt` is given.
#[derive(Debug)]
struct EncryptSpy(Arc<dyn Keyring>, Mutex<Vec<[u8; 32]>>);

impl Keyring for EncryptSpy {
    fn on_encrypt(&self, m: &mut EncryptionMaterials) -> s3crypt_core::Result<()> {
        if let Some(k) = m.data_key() {
            self.1.lock().unwrap().push(*k.as_bytes());
        }
        self.0.on_encrypt(m)
    }

    fn on_decrypt(
        &self,
        m: &mut DecryptionMaterials,
        edks: &[EncryptedDataKey],
    ) -> s3crypt_core::Result<()> {
        self.0.on_decrypt(m, edks)
    }
}
