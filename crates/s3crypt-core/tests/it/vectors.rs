//! The test vectors in `test-vectors/` (made by the official Python ESDK, and negatives built to
//! trip exactly one check): every positive decrypts to PATTERN on every decryption path, every
//! negative is rejected with its class on every path, and nothing is released from a message
//! whose end fails to verify for signed suites.

use std::path::{Path, PathBuf};

use s3crypt_core::keyring::raw_aes::{RawAesKeyring, WrappingKey};
use s3crypt_core::{range, DecryptOptions, EncryptionContext};
use serde::Deserialize;

use crate::util::*;

#[derive(Deserialize)]
struct Manifest {
    keys: std::collections::BTreeMap<String, KeySpec>,
    vectors: Vec<Vector>,
}

#[derive(Deserialize)]
struct KeySpec {
    namespace: String,
    name: String,
    key_hex: String,
}

#[derive(Deserialize)]
struct Vector {
    id: String,
    ciphertext: String,
    keys: Vec<String>,
    #[serde(default)]
    required_context: std::collections::BTreeMap<String, String>,
    expect: String,
    plaintext_len: Option<usize>,
    error: Option<String>,
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../test-vectors")
}

fn load() -> Manifest {
    let text =
        std::fs::read_to_string(dir().join("manifest.json")).expect("test-vectors/manifest.json");
    serde_json::from_str(&text).expect("manifest parses")
}

fn hex(s: &str) -> [u8; 32] {
    let v: Vec<u8> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect();
    v.try_into().unwrap()
}

fn setup(
    m: &Manifest,
    v: &Vector,
) -> (
    std::sync::Arc<dyn s3crypt_core::Keyring>,
    DecryptOptions,
    Vec<u8>,
) {
    let keys = v
        .keys
        .iter()
        .map(|k| {
            let s = &m.keys[k];
            RawAesKeyring::new(
                s.namespace.clone(),
                s.name.clone(),
                WrappingKey::from_bytes(hex(&s.key_hex)),
            )
            .unwrap()
        })
        .collect();
    let opts = DecryptOptions {
        required_context: EncryptionContext::from_pairs(
            v.required_context
                .iter()
                .map(|(a, b)| (a.clone(), b.clone())),
        )
        .unwrap(),
        ..Default::default()
    };
    let ct = std::fs::read(dir().join(&v.ciphertext)).unwrap();
    (keyring(keys), opts, ct)
}

#[test]
fn positive_vectors_decrypt_on_every_path() {
    let m = load();
    let mut n = 0;
    for v in m.vectors.iter().filter(|v| v.expect == "ok") {
        let (k, opts, ct) = setup(&m, v);
        let want = pattern(v.plaintext_len.unwrap());
        for chunk in [1usize, 7, 4096, usize::MAX] {
            if chunk == 1 && ct.len() > 300_000 {
                continue;
            }
            let (pt, r) = decrypt_push(k.clone(), &opts, &ct, chunk.min(ct.len().max(1)));
            r.unwrap_or_else(|e| panic!("{} (push, chunk {chunk}): {e}", v.id));
            assert!(pt == want, "{} push plaintext", v.id);
        }
        for p in pipeline_variants() {
            let (pt, r) = decrypt_pipeline(k.as_ref(), &opts, &ct, &p);
            r.unwrap_or_else(|e| panic!("{} (pipeline {p:?}): {e}", v.id));
            assert!(pt == want, "{} pipeline plaintext", v.id);
            let (pt, r) = decrypt_file(k.as_ref(), &opts, &ct, &p);
            r.unwrap_or_else(|e| panic!("{} (file {p:?}): {e}", v.id));
            assert!(pt == want, "{} file plaintext", v.id);
        }
        let (pt, r) = decrypt_reader(k.clone(), &opts, &ct);
        r.unwrap_or_else(|e| panic!("{} (reader): {e}", v.id));
        assert!(pt == want, "{} reader plaintext", v.id);
        n += 1;
    }
    assert!(n >= 90, "only {n} positive vectors");
}

#[test]
fn positive_vectors_decrypt_by_range() {
    let m = load();
    for v in m
        .vectors
        .iter()
        .filter(|v| v.expect == "ok" && v.required_context.is_empty())
    {
        let (k, opts, ct) = setup(&m, v);
        let want = pattern(v.plaintext_len.unwrap());
        let signed = ct[1..3] == [0x05, 0x78];
        let len = want.len() as u64;
        let ranges = [
            (0, 1),
            (0, len),
            (len / 2, len),
            (len.saturating_sub(1), len + 10),
            (1, len / 3 + 1),
        ];
        for (a, b) in ranges {
            let r = range::decrypt_range(&ct, k.as_ref(), &opts, a..b);
            match r {
                _ if signed => assert_eq!(r.unwrap_err().class(), "unsupported", "{}", v.id),
                _ if a >= len => assert_eq!(r.unwrap_err().class(), "range", "{}", v.id),
                _ if b <= a => assert!(r.is_err()),
                Ok(pt) => assert!(
                    pt[..] == want[a as usize..b.min(len) as usize],
                    "{} {a}..{b}",
                    v.id
                ),
                Err(e) => panic!("{} {a}..{b}: {e}", v.id),
            }
        }
    }
}

#[test]
fn negative_vectors_fail_with_their_class_on_every_path() {
    let m = load();
    let mut n = 0;
    let mut failures = Vec::new();
    for v in m.vectors.iter().filter(|v| v.expect == "error") {
        let (k, opts, ct) = setup(&m, v);
        let want = v.error.as_deref().unwrap();
        let mut got = Vec::new();
        for chunk in [1usize, 13, usize::MAX] {
            got.push((
                "push",
                decrypt_push(k.clone(), &opts, &ct, chunk.min(ct.len().max(1))),
            ));
        }
        for p in pipeline_variants() {
            got.push(("pipeline", decrypt_pipeline(k.as_ref(), &opts, &ct, &p)));
            got.push(("file", decrypt_file(k.as_ref(), &opts, &ct, &p)));
        }
        got.push(("reader", decrypt_reader(k.clone(), &opts, &ct)));
        for (path, (_, r)) in got {
            match r {
                Ok(()) => failures.push(format!("{}: {path} accepted it (want {want})", v.id)),
                Err(e) if class_of(&e) != want => failures.push(format!(
                    "{}: {path} said {} ({e}), want {want}",
                    v.id,
                    class_of(&e)
                )),
                Err(_) => {}
            }
        }
        n += 1;
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(n >= 40, "only {n} negative vectors");
}
