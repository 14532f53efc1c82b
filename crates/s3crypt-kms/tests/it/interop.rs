//! Interoperability with the official Python AWS Encryption SDK (4.x, `StrictAwsKmsMasterKeyProvider`)
//! through the same local KMS, in both directions (`tests/kms_peer.py`).
//!
//! Needs `S3CRYPT_TEST_PYTHON` = a Python with `test-vectors/tools/requirements.txt` installed
//! (`scripts/test` sets it up). Without it the tests fail under `CI` and are skipped otherwise.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use s3crypt_core::{DecryptOptions, EncryptOptions, Keyring, Suite};
use s3crypt_kms::DiscoveryFilter;
use serde_json::{json, Value};

use crate::kms::*;

fn python() -> Option<PathBuf> {
    match std::env::var_os("S3CRYPT_TEST_PYTHON") {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            assert!(
                std::env::var_os("CI").is_none(),
                "S3CRYPT_TEST_PYTHON must be set in CI (scripts/test sets it)"
            );
            eprintln!("skipped: S3CRYPT_TEST_PYTHON is not set (scripts/test sets it)");
            None
        }
    }
}

/// Runs the Python peer on `jobs` against `kms`; one result per job.
fn run_peer(python: &Path, kms: &Kms, dir: &Path, jobs: &[Value]) -> Vec<Value> {
    let jobs_file = dir.join("jobs.json");
    std::fs::write(&jobs_file, serde_json::to_vec(jobs).unwrap()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kms_peer.py");
    let none = dir.join("no-such-aws-config");
    let out = std::process::Command::new(python)
        .arg(script)
        .arg(&jobs_file)
        // botocore's standard environment: every region's client goes to the local KMS.
        .env("AWS_ENDPOINT_URL", &kms.server.endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_DEFAULT_REGION", HOME)
        .env("AWS_CONFIG_FILE", &none)
        .env("AWS_SHARED_CREDENTIALS_FILE", &none)
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_ENDPOINT_URL_KMS")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kms_peer.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(results.len(), jobs.len());
    results
}

fn suite_name(s: Suite) -> String {
    format!("0x{:04x}", s.id())
}

#[test]
fn python_esdk_decrypts_what_s3crypt_writes_with_kms() {
    let Some(python) = python() else { return };
    let Some(kms) = Kms::start() else { return };
    let a = kms.create_key(HOME);
    let eu = kms.create_key("eu-west-1");
    let dir = tempfile::tempdir().unwrap();
    let context = [("purpose", "interop"), ("région", "Île-de-France ✓")];

    let mut jobs = Vec::new();
    let mut expected = Vec::new();
    let mut i = 0;
    for suite in [
        Suite::Aes256GcmHkdfSha512Commit,
        Suite::Aes256GcmHkdfSha512CommitEcdsaP384,
    ] {
        for (len, frame) in [
            (0usize, 128u32),
            (1, 128),
            (1000, 128),
            (3 * 4096 + 5, 4096),
        ] {
            for (two_keys, with_context) in [(false, false), (true, true)] {
                let mut opts = if with_context {
                    opts_with_context(&context)
                } else {
                    EncryptOptions::default()
                };
                opts.suite = suite;
                opts.frame_length = frame;
                let keyring: Arc<dyn Keyring> = if two_keys {
                    multi(vec![Box::new(kms.strict(&a)), Box::new(kms.strict(&eu))])
                } else {
                    Arc::new(kms.strict(&a))
                };
                let pt = pattern(len);
                let ct = if i % 2 == 0 {
                    encrypt(keyring.as_ref(), &opts, &pt)
                } else {
                    encrypt_pipeline(keyring.as_ref(), &opts, &pt)
                };
                let file = dir.path().join(format!("m{i}.bin"));
                std::fs::write(&file, &ct).unwrap();
                let arns: Vec<String> = if two_keys {
                    vec![a.clone(), eu.clone()]
                } else {
                    vec![a.clone()]
                };
                // Python decrypts with each key alone (a strict provider matches the provider
                // info, i.e. the full key ARN s3crypt wrote).
                for key in &arns {
                    let out = dir.path().join(format!("m{i}-{}.out", jobs.len()));
                    jobs.push(json!({"op": "decrypt", "ciphertext": file, "out": out,
                                     "key_ids": [key]}));
                    expected.push((out, pt.clone(), opts.clone(), arns.clone(), true));
                }
                // A provider configured with the bare key id cannot match what s3crypt wrote.
                let bare = a.rsplit('/').next().unwrap();
                let out = dir.path().join(format!("m{i}-bare.out"));
                jobs.push(json!({"op": "decrypt", "ciphertext": file, "out": out,
                                 "key_ids": [bare]}));
                expected.push((out, pt, opts, arns, false));
                i += 1;
            }
        }
    }
    let results = run_peer(&python, &kms, dir.path(), &jobs);
    for ((out, pt, opts, arns, ok), r) in expected.into_iter().zip(results) {
        if !ok {
            assert_eq!(r["ok"], false, "{r}");
            continue;
        }
        assert_eq!(r["ok"], true, "{r}");
        assert_eq!(std::fs::read(&out).unwrap(), pt, "{}", out.display());
        assert_eq!(r["suite"], suite_name(opts.suite));
        let ctx = r["context"].as_object().unwrap();
        for (k, v) in opts.context.iter() {
            assert_eq!(ctx[k], v, "{r}");
        }
        let mut want: Vec<Value> = arns
            .iter()
            .map(|arn| json!({"provider_id": "aws-kms", "provider_info": arn}))
            .collect();
        want.sort_by_key(|v| v["provider_info"].as_str().unwrap().to_owned());
        assert_eq!(r["edks"], Value::Array(want), "{r}");
    }
}

#[test]
fn s3crypt_decrypts_what_python_esdk_writes_with_kms() {
    let Some(python) = python() else { return };
    let Some(kms) = Kms::start() else { return };
    let a = kms.create_key(HOME);
    let b = kms.create_key(HOME);
    let eu = kms.create_key("eu-west-1");
    let dir = tempfile::tempdir().unwrap();
    let context = json!({"purpose": "interop", "tenant": "acme"});

    let mut jobs = Vec::new();
    let mut cases = Vec::new();
    for suite in ["0x0478", "0x0578"] {
        for len in [0usize, 1, 5000] {
            for keys in [
                vec![a.clone()],
                vec![a.clone(), b.clone()],
                vec![eu.clone(), a.clone()],
            ] {
                let n = jobs.len();
                let pt_file = dir.path().join(format!("p{n}.bin"));
                let ct_file = dir.path().join(format!("c{n}.bin"));
                let pt = pattern(len);
                std::fs::write(&pt_file, &pt).unwrap();
                jobs.push(
                    json!({"op": "encrypt", "plaintext": pt_file, "out": ct_file,
                                 "key_ids": keys, "context": context, "suite": suite,
                                 "frame_length": 1024}),
                );
                cases.push((ct_file, pt, keys, suite));
            }
        }
    }
    for r in run_peer(&python, &kms, dir.path(), &jobs) {
        assert_eq!(r["ok"], true, "{r}");
    }

    let mut required = DecryptOptions::default();
    required.required_context.insert("tenant", "acme").unwrap();
    for (ct_file, pt, keys, suite) in cases {
        let ct = std::fs::read(&ct_file).unwrap();
        let h = header(&ct);
        assert_eq!(suite_name(h.suite), suite);
        // Python writes the key ARNs as provider info (its EDKs are a set: order not kept).
        let (mut found, mut want) = (kms_edks(&ct), keys.clone());
        found.sort();
        want.sort();
        assert_eq!(found, want);
        // Each key alone (the second through a client of the home region when it is in another).
        let mut readers: Vec<Arc<dyn Keyring>> = keys
            .iter()
            .map(|k| Arc::new(kms.strict(k)) as Arc<dyn Keyring>)
            .collect();
        readers.push(Arc::new(kms.discovery(None)));
        readers.push(Arc::new(
            kms.discovery(Some(DiscoveryFilter::new("aws", [ACCOUNT]).unwrap())),
        ));
        for r in readers {
            assert_eq!(decrypt(r.clone(), &required, &ct).unwrap(), pt);
            assert_eq!(decrypt_pipeline(r.as_ref(), &ct).unwrap(), pt);
        }
    }
}
