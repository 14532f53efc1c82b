//! The reverse direction of the test vectors: messages s3crypt writes (both ESDK suites, many
//! sizes and frame lengths, several wrapping keys, contexts) are decrypted by the official Python
//! `aws-encryption-sdk` (`test-vectors/tools/check_decrypt.py`).
//!
//! Needs `S3CRYPT_TEST_PYTHON` = a Python with `test-vectors/tools/requirements.txt` installed
//! (`scripts/test` sets it up). Without it the test fails under `CI` and is skipped otherwise.

use std::path::Path;

use s3crypt_core::pipeline::PipelineOptions;
use s3crypt_core::{EncryptOptions, Suite};
use serde_json::json;

use crate::util::*;

#[test]
fn python_esdk_decrypts_what_s3crypt_writes() {
    let Some(python) = std::env::var_os("S3CRYPT_TEST_PYTHON") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "S3CRYPT_TEST_PYTHON must be set in CI (see scripts/test)"
        );
        eprintln!("skipped: S3CRYPT_TEST_PYTHON is not set (scripts/test sets it)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let keys = [
        ("k1", "s3crypt-test", "key-1", 0x11u8),
        ("k2", "s3crypt-test", "key-2", 0x22),
        ("k3", "s3crypt-other", "key-3", 0x33),
    ];
    let all = || keyring(keys.iter().map(|(_, ns, n, b)| raw(ns, n, *b)).collect());
    let mut vectors = Vec::new();
    let mut i = 0;
    for suite in [
        Suite::Aes256GcmHkdfSha512Commit,
        Suite::Aes256GcmHkdfSha512CommitEcdsaP384,
    ] {
        for frame in [16u32, 128, 4096, 65536] {
            let f = frame as usize;
            for len in [0, 1, f - 1, f, f + 1, 3 * f + 17] {
                for (ctx, multi, pipeline) in [(false, false, false), (true, true, true)] {
                    let mut opts = EncryptOptions {
                        suite,
                        frame_length: frame,
                        ..Default::default()
                    };
                    if ctx {
                        opts.context.insert("purpose", "interop").unwrap();
                        opts.context.insert("région", "Île-de-France ✓").unwrap();
                    }
                    let k = if multi {
                        all()
                    } else {
                        keyring(vec![raw("s3crypt-test", "key-1", 0x11)])
                    };
                    let pt = pattern(len);
                    let ct = if pipeline {
                        encrypt_pipeline(
                            k.as_ref(),
                            &opts,
                            &pt,
                            &PipelineOptions {
                                threads: 2,
                                batch_bytes: 3 * f,
                            },
                        )
                    } else {
                        encrypt_push(k.as_ref(), &opts, &pt, 1000)
                    };
                    let file = format!("m{i}.bin");
                    std::fs::write(dir.path().join(&file), &ct).unwrap();
                    let ctx_json: serde_json::Map<_, _> = opts
                        .context
                        .iter()
                        .map(|(a, b)| (a.to_owned(), json!(b)))
                        .collect();
                    let decrypt_with: Vec<Vec<&str>> = if multi {
                        vec![vec!["k1"], vec!["k2"], vec!["k3"]]
                    } else {
                        vec![vec!["k1"]]
                    };
                    for (j, with) in decrypt_with.into_iter().enumerate() {
                        vectors.push(json!({
                            "id": format!("s3crypt-{i}-{j}"), "ciphertext": file, "keys": with, "expect": "ok",
                            "plaintext_len": len, "suite": format!("0x{:04X}", suite.id()), "frame_length": frame,
                            "context": ctx_json,
                        }));
                    }
                    i += 1;
                }
            }
        }
    }
    let keys_json: serde_json::Map<_, _> = keys
        .iter()
        .map(|(id, ns, n, b)| {
            (
                id.to_string(),
                json!({"namespace": ns, "name": n, "key_hex": hex(&[*b; 32])}),
            )
        })
        .collect();
    let manifest =
        json!({"generator": "s3crypt-core tests", "keys": keys_json, "vectors": vectors});
    std::fs::write(
        dir.path().join("manifest.json"),
        serde_json::to_vec_pretty(&manifest).unwrap(),
    )
    .unwrap();
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../test-vectors/tools/check_decrypt.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "Python ESDK rejected s3crypt output:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = stdout.lines().last().unwrap_or_default();
    eprintln!("python check: {summary}");
    assert!(
        summary.starts_with(&format!("{} passed, 0 failed", vectors.len())),
        "{summary}"
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
