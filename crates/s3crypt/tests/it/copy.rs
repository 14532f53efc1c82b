//! Server-side copy, move and rewrap: new header, byte-identical frames, nothing half-written.

use std::sync::Arc;

use s3crypt::{Client, KeepKeys, Transfer};
use s3crypt_core::keyring::multi::MultiKeyring;
use s3crypt_core::keyring::raw_aes::{RawAesKeyring, WrappingKey};
use s3crypt_core::{Keyring, Suite};

use crate::servers::{start, Kind, Server};

const MIB: usize = 1 << 20;

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 7 + 3) % 251) as u8).collect()
}

fn key(name: &str, b: u8) -> Arc<dyn Keyring> {
    Arc::new(RawAesKeyring::new("s3crypt-test", name, WrappingKey::from_bytes([b; 32])).unwrap())
}

fn client(server: &Server, keyring: Arc<dyn Keyring>) -> Client {
    Client::builder(server.s3(), keyring)
        .transfer(Transfer {
            part_size: 5 * MIB,
            multipart_threshold: 5 * MIB,
            concurrency: 4,
            download_concurrency: 4,
        })
        .build()
        .unwrap()
}

async fn raw(server: &Server, bucket: &str, k: &str) -> Vec<u8> {
    let o = server
        .s3()
        .get_object()
        .bucket(bucket)
        .key(k)
        .send()
        .await
        .unwrap();
    o.body.collect().await.unwrap().into_bytes().to_vec()
}

async fn get(c: &Client, bucket: &str, k: &str) -> Result<Vec<u8>, s3crypt::Error> {
    let out = c.get_object().bucket(bucket).key(k).send().await?;
    let mut v = Vec::new();
    out.body.write_to(&mut v).await?;
    Ok(v)
}

fn servers() -> Vec<Server> {
    [Kind::Moto, Kind::S3sFs]
        .into_iter()
        .filter_map(start)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_and_move_keep_the_frames_and_rebind_the_location() {
    for server in servers() {
        server
            .s3()
            .create_bucket()
            .bucket("cpy")
            .send()
            .await
            .unwrap();
        let a = client(&server, key("a", 1));
        for (name, n) in [("small", 1000usize), ("big", 13 * MIB + 5)] {
            let pt = pattern(n);
            a.put_object()
                .bucket("cpy")
                .key(name)
                .metadata([("owner".to_string(), "ops".to_string())].into())
                .content_type("text/plain")
                .body(std::io::Cursor::new(pt.clone()))
                .send()
                .await
                .unwrap();
            let before = a.head_object("cpy", name, None).await.unwrap();
            let dst = format!("copies/{name}");
            let out = a
                .copy_object()
                .source("cpy", name)
                .destination("cpy", &dst)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{:?} {name}: {e}", server.kind));
            // The client moved only the header and at most S3's smallest part each way.
            assert!(out.bytes_downloaded <= (5 * MIB + 4096) as u64, "{out:?}");
            assert!(out.bytes_uploaded <= (5 * MIB + 4096) as u64, "{out:?}");
            if n > 5 * MIB {
                assert!(out.parts >= 2, "{out:?}");
            }
            // Same frames, new header.
            let (src, cpy) = (
                raw(&server, "cpy", name).await,
                raw(&server, "cpy", &dst).await,
            );
            let (hs, hd) = (
                out.header_length_before as usize,
                out.header_length_after as usize,
            );
            assert!(
                src[hs..] == cpy[hd..],
                "{:?} {name}: frames differ",
                server.kind
            );
            assert!(src[..hs] != cpy[..hd]);
            // Both read back, each bound to its own location; metadata carried over.
            assert!(get(&a, "cpy", &dst).await.unwrap() == pt);
            assert!(get(&a, "cpy", name).await.unwrap() == pt);
            let info = a.head_object("cpy", &dst, None).await.unwrap();
            assert_eq!(info.user_metadata, before.user_metadata);
            assert_eq!(info.content_type.as_deref(), Some("text/plain"));
            assert_eq!(info.plaintext_length, Some(n as u64));

            // A move: the destination is complete before the source goes.
            let moved = format!("moved/{name}");
            a.copy_object()
                .source("cpy", &dst)
                .destination("cpy", &moved)
                .delete_source(true)
                .send()
                .await
                .unwrap();
            assert!(get(&a, "cpy", &moved).await.unwrap() == pt);
            assert_eq!(
                a.head_object("cpy", &dst, None).await.unwrap_err().class(),
                "not-found"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrap_in_place_adds_and_removes_keys() {
    for server in servers() {
        server
            .s3()
            .create_bucket()
            .bucket("rwp")
            .send()
            .await
            .unwrap();
        let (ka, kb) = (key("a", 1), key("b", 2));
        let a = client(&server, ka.clone());
        let b = client(&server, kb.clone());
        for (name, n) in [("small", 10usize), ("big", 12 * MIB + 1)] {
            let pt = pattern(n);
            a.put_object()
                .bucket("rwp")
                .key(name)
                .body(std::io::Cursor::new(pt.clone()))
                .send()
                .await
                .unwrap();
            let before = raw(&server, "rwp", name).await;
            assert_eq!(get(&b, "rwp", name).await.unwrap_err().class(), "no-key");

            // Add b, keep a.
            let out = a
                .copy_object()
                .source("rwp", name)
                .wrap_with(kb.clone())
                .send()
                .await
                .unwrap_or_else(|e| panic!("{:?} {name}: {e}", server.kind));
            assert!(get(&a, "rwp", name).await.unwrap() == pt);
            assert!(get(&b, "rwp", name).await.unwrap() == pt);
            let after = raw(&server, "rwp", name).await;
            assert!(
                before[out.header_length_before as usize..]
                    == after[out.header_length_after as usize..],
                "frames changed"
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

            // Removing the last key is refused and leaves the object as it was.
            let e = b
                .copy_object()
                .source("rwp", name)
                .keep(KeepKeys::None)
                .send()
                .await
                .unwrap_err();
            assert_eq!(e.class(), "invalid-argument", "{e}");
            assert!(get(&b, "rwp", name).await.unwrap() == pt);
        }
        // A multi-keyring reads with either.
        let both: Arc<dyn Keyring> = Arc::new(MultiKeyring::new(vec![Box::new(ka), Box::new(kb)]));
        assert!(get(&client(&server, both), "rwp", "small").await.unwrap() == pattern(10));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_refusals() {
    for server in servers() {
        server
            .s3()
            .create_bucket()
            .bucket("nop")
            .send()
            .await
            .unwrap();
        let a = client(&server, key("a", 1));
        // A signed object cannot get a new header.
        let signed = Client::builder(server.s3(), key("a", 1))
            .encryption(s3crypt::Encryption {
                suite: Suite::Aes256GcmHkdfSha512CommitEcdsaP384,
                ..Default::default()
            })
            .build()
            .unwrap();
        signed
            .put_object()
            .bucket("nop")
            .key("signed")
            .body(std::io::Cursor::new(pattern(100)))
            .send()
            .await
            .unwrap();
        let e = a
            .copy_object()
            .source("nop", "signed")
            .destination("nop", "x")
            .send()
            .await
            .unwrap_err();
        assert_eq!(e.class(), "unsupported", "{e}");
        // A source that was moved behind s3crypt's back is refused unless allowed.
        a.put_object()
            .bucket("nop")
            .key("orig")
            .body(std::io::Cursor::new(pattern(100)))
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
        let loose = Client::builder(server.s3(), key("a", 1))
            .location_binding(s3crypt::location::Binding::Bucket)
            .build()
            .unwrap();
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
        // The wrong key cannot rewrap; nothing is written.
        let e = client(&server, key("z", 9))
            .copy_object()
            .source("nop", "orig")
            .destination("nop", "z")
            .send()
            .await
            .unwrap_err();
        assert_eq!(e.class(), "no-key", "{e}");
        assert_eq!(
            a.head_object("nop", "z", None).await.unwrap_err().class(),
            "not-found"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrap_with_versioning_keeps_the_old_version() {
    // s3s-fs has no versioning.
    let Some(server) = start(Kind::Moto) else {
        return;
    };
    let s3 = server.s3();
    s3.create_bucket().bucket("ver").send().await.unwrap();
    s3.put_bucket_versioning()
        .bucket("ver")
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let (ka, kb) = (key("a", 1), key("b", 2));
    let (a, b) = (client(&server, ka), client(&server, kb.clone()));
    let pt = pattern(7 * MIB);
    let put = a
        .put_object()
        .bucket("ver")
        .key("v")
        .body(std::io::Cursor::new(pt.clone()))
        .send()
        .await
        .unwrap();
    let old = put.version_id.clone().expect("a version id");
    a.copy_object()
        .source("ver", "v")
        .wrap_with(kb)
        .keep(KeepKeys::None)
        .send()
        .await
        .unwrap();
    let versions = s3
        .list_object_versions()
        .bucket("ver")
        .send()
        .await
        .unwrap();
    assert_eq!(versions.versions().len(), 2);
    // The current version is b's only; the old one is still a's.
    assert!(get(&b, "ver", "v").await.unwrap() == pt);
    assert_eq!(get(&a, "ver", "v").await.unwrap_err().class(), "no-key");
    let out = a
        .get_object()
        .bucket("ver")
        .key("v")
        .version_id(&old)
        .send()
        .await
        .unwrap();
    let mut v = Vec::new();
    out.body.write_to(&mut v).await.unwrap();
    assert!(v == pt);
}
