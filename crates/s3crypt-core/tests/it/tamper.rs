//! Tampering with messages s3crypt wrote: every change is detected, nothing panics, and no
//! plaintext is released that did not authenticate.

use s3crypt_core::key::{FINAL_OVERHEAD, REGULAR_OVERHEAD};
use s3crypt_core::pipeline::PipelineOptions;
use s3crypt_core::{DecryptOptions, EncryptOptions, Encryptor, Header, ReadLimits, Suite};

use crate::util::*;

const FRAME: u32 = 64;

fn message(suite: Suite, len: usize) -> (Vec<u8>, Vec<u8>, usize) {
    let k = keyring(vec![raw("ns", "a", 1)]);
    let mut opts = EncryptOptions {
        suite,
        frame_length: FRAME,
        ..Default::default()
    };
    opts.context.insert("k", "v").unwrap();
    let pt = pattern(len);
    let ct = encrypt_push(k.as_ref(), &opts, &pt, 50);
    let hlen = Header::read(&ct, &ReadLimits::default()).unwrap().len();
    (ct, pt, hlen)
}

fn all_paths_reject(ct: &[u8], pt: &[u8]) -> Vec<String> {
    let k = keyring(vec![raw("ns", "a", 1)]);
    let o = DecryptOptions::default();
    let mut classes = Vec::new();
    let mut results = vec![
        decrypt_push(k.clone(), &o, ct, 17),
        decrypt_push(k.clone(), &o, ct, usize::MAX),
    ];
    results.push(decrypt_pipeline(
        k.as_ref(),
        &o,
        ct,
        &PipelineOptions {
            threads: 2,
            batch_bytes: 200,
        },
    ));
    results.push(decrypt_file(
        k.as_ref(),
        &o,
        ct,
        &PipelineOptions {
            threads: 2,
            batch_bytes: 200,
        },
    ));
    results.push(decrypt_reader(k, &o, ct));
    for (out, r) in results {
        let e = r.expect_err("tampered message accepted");
        // What was released is a prefix of the plaintext made of whole authenticated frames (all
        // of it only when the message itself verified and junk followed it).
        let whole = out.len() % FRAME as usize == 0 || out.len() == pt.len();
        assert!(
            pt.starts_with(&out) && whole,
            "released {} bytes",
            out.len()
        );
        classes.push(class_of(&e));
    }
    classes
}

#[test]
fn every_bit_position_of_a_small_message_is_covered() {
    for suite in Suite::ALL {
        let (ct, pt, _) = message(suite, 150);
        for i in 0..ct.len() {
            let mut t = ct.clone();
            t[i] ^= 0x01;
            all_paths_reject(&t, &pt);
        }
    }
}

#[test]
fn every_truncation_is_truncated_and_appended_bytes_are_malformed() {
    for suite in Suite::ALL {
        let (ct, pt, _) = message(suite, 150);
        for n in 0..ct.len() {
            for c in all_paths_reject(&ct[..n], &pt) {
                // Cutting inside the signature leaves a valid-looking shorter signature field in
                // only one case: a cut at the footer boundary is still "truncated".
                assert!(
                    c == "truncated" || (suite.is_signed() && c == "authentication"),
                    "cut at {n}: {c}"
                );
            }
        }
        let mut longer = ct.clone();
        longer.push(0);
        for c in all_paths_reject(&longer, &pt) {
            assert!(
                c == "malformed" || (suite.is_signed() && c == "authentication"),
                "{c}"
            );
        }
    }
}

#[test]
fn reordered_duplicated_and_dropped_frames_are_malformed() {
    let (ct, pt, h) = message(Suite::DEFAULT, 64 * 4 + 10);
    let slot = FRAME as usize + REGULAR_OVERHEAD;
    let frame = |i: usize| ct[h + i * slot..h + (i + 1) * slot].to_vec();
    let tail = ct[h + 4 * slot..].to_vec();
    assert_eq!(tail.len(), FINAL_OVERHEAD + 10);
    let build = |order: &[usize]| {
        let mut m = ct[..h].to_vec();
        for &i in order {
            m.extend(frame(i));
        }
        m.extend(&tail);
        m
    };
    for order in [&[1, 0, 2, 3][..], &[0, 1, 1, 2, 3], &[0, 2, 3], &[0, 1, 2]] {
        for c in all_paths_reject(&build(order), &pt) {
            assert_eq!(c, "malformed", "{order:?}");
        }
    }
    // The final frame dropped entirely.
    let mut m = ct[..h + 4 * slot].to_vec();
    for c in all_paths_reject(&m, &pt) {
        assert_eq!(c, "truncated");
    }
    // A frame from another message under the same key.
    let (other, _, h2) = message(Suite::DEFAULT, 64 * 4 + 10);
    m = ct.clone();
    m[h + slot..h + 2 * slot].copy_from_slice(&other[h2 + slot..h2 + 2 * slot]);
    for c in all_paths_reject(&m, &pt) {
        assert_eq!(c, "authentication");
    }
}

#[test]
fn a_bad_signature_withholds_the_final_frame() {
    let (mut ct, pt, _) = message(Suite::Aes256GcmHkdfSha512CommitEcdsaP384, 64 * 3 + 20);
    let n = ct.len();
    ct[n - 5] ^= 0x40;
    let k = keyring(vec![raw("ns", "a", 1)]);
    let (out, r) = decrypt_push(k.clone(), &DecryptOptions::default(), &ct, usize::MAX);
    assert_eq!(r.unwrap_err().class(), "authentication");
    assert_eq!(
        out,
        pt[..64 * 3],
        "the final frame's 20 bytes must not be released"
    );
    let (out, r) = decrypt_pipeline(
        k.as_ref(),
        &DecryptOptions::default(),
        &ct,
        &PipelineOptions::default(),
    );
    assert_eq!(r.unwrap_err().class(), "authentication");
    assert!(out.len() <= 64 * 3);
}

#[test]
fn an_unfinished_encryptor_never_looks_complete() {
    let k = keyring(vec![raw("ns", "a", 1)]);
    let mut enc = Encryptor::new(
        k.as_ref(),
        &EncryptOptions {
            frame_length: 16,
            ..Default::default()
        },
    )
    .unwrap();
    let mut out = Vec::new();
    enc.update(&pattern(100), &mut out).unwrap();
    drop(enc);
    let (_, r) = decrypt_push(k, &DecryptOptions::default(), &out, usize::MAX);
    assert_eq!(r.unwrap_err().class(), "truncated");
}

#[test]
fn frame_length_limit_is_enforced_before_allocation() {
    let k = keyring(vec![raw("ns", "a", 1)]);
    let ct = encrypt_push(
        k.as_ref(),
        &EncryptOptions {
            frame_length: 1 << 20,
            ..Default::default()
        },
        b"abc",
        3,
    );
    let mut o = DecryptOptions::default();
    o.limits.max_frame_length = 1 << 19;
    assert_eq!(
        decrypt_push(k, &o, &ct, usize::MAX).1.unwrap_err().class(),
        "limit"
    );
}

#[test]
fn junk_after_the_final_frame_in_the_same_batch_is_malformed() {
    // Found by the decrypt fuzz target: more junk after the final frame than a final frame plus
    // footer can hold, inside the batch the pipeline read, panicked instead of failing.
    for suite in Suite::ALL {
        let (ct, pt, _) = message(suite, 10);
        let mut m = ct.clone();
        m.extend(std::iter::repeat_n(0xAB, 5000));
        for c in all_paths_reject(&m, &pt) {
            assert!(
                c == "malformed" || (suite.is_signed() && c == "authentication"),
                "{suite}: {c}"
            );
        }
    }
}

#[test]
fn pipelines_refuse_an_encryptor_that_was_already_fed() {
    // Continuing a partly used encryptor in a pipeline would seal sequence numbers 1.. a second
    // time under the same key: AES-GCM nonce reuse.
    let k = keyring(vec![raw("ns", "a", 1)]);
    let opts = EncryptOptions {
        frame_length: 16,
        ..Default::default()
    };
    let mut enc = Encryptor::new(k.as_ref(), &opts).unwrap();
    enc.update(&pattern(40), &mut Vec::new()).unwrap();
    let r = s3crypt_core::pipeline::encrypt(
        enc,
        &b"more"[..],
        &mut Vec::new(),
        &PipelineOptions::default(),
        |_| {},
    );
    assert_eq!(r.unwrap_err().class(), "invalid-argument");
    let mut enc = Encryptor::new(k.as_ref(), &opts).unwrap();
    enc.update(&[], &mut Vec::new()).unwrap();
    let f = tempfile::tempfile().unwrap();
    let r = s3crypt_core::pipeline::encrypt_file(
        enc,
        &f,
        &mut Vec::new(),
        &PipelineOptions::default(),
        |_| {},
    );
    assert_eq!(r.unwrap_err().class(), "invalid-argument");
}

#[test]
fn unauthenticated_key_names_are_escaped_in_errors() {
    let evil = raw("ns\u{1b}[2J", "name\u{7}\n", 1);
    let ct = encrypt_push(
        keyring(vec![evil]).as_ref(),
        &EncryptOptions::default(),
        b"x",
        1,
    );
    let (_, r) = decrypt_push(
        keyring(vec![raw("ns", "a", 1)]),
        &DecryptOptions::default(),
        &ct,
        100,
    );
    let msg = r.unwrap_err().to_string();
    assert!(!msg.chars().any(char::is_control), "{msg:?}");
    assert!(msg.contains("\\u{1b}"), "{msg}");
}

/// The file pipeline's workers write their own batches in turn: with many workers and small
/// batches, a tampered frame stops the output exactly at the start of its batch (every batch
/// before it written, none after), on every run.
#[test]
fn file_pipeline_releases_exactly_the_batches_before_a_failure() {
    let k = keyring(vec![raw("ns", "a", 1)]);
    let (ct, pt, hlen) = message(Suite::DEFAULT, 64 * 300 + 10);
    let slot = FRAME as usize + REGULAR_OVERHEAD;
    // 200 bytes per batch: 2 frames of 64 bytes (96-byte slots) each.
    let per_batch = 2;
    let popts = PipelineOptions {
        threads: 8,
        batch_bytes: 200,
    };
    for bad in [0, 1, 2, 57, 150, 299] {
        let mut t = ct.clone();
        t[hlen + bad * slot + slot / 2] ^= 0x40;
        for _ in 0..20 {
            let (out, r) = decrypt_file(k.as_ref(), &DecryptOptions::default(), &t, &popts);
            assert_eq!(r.unwrap_err().class(), "authentication");
            let released = bad / per_batch * per_batch * FRAME as usize;
            assert_eq!(out.len(), released, "frame {bad} tampered");
            assert_eq!(out, pt[..released]);
        }
    }
}

/// An output that fails after `left` bytes.
struct FailingWriter {
    left: usize,
}

impl std::io::Write for FailingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Err(std::io::Error::other("disk full"));
        }
        let n = buf.len().min(self.left);
        self.left -= n;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A write error in the file pipeline stops every worker and is returned (no deadlock, no
/// panic), whichever batch it hits.
#[test]
fn file_pipeline_write_errors_stop_every_worker() {
    let k = keyring(vec![raw("ns", "a", 1)]);
    let (ct, pt, _) = message(Suite::DEFAULT, 64 * 300 + 10);
    let popts = PipelineOptions {
        threads: 8,
        batch_bytes: 200,
    };
    let mut pt_file = tempfile::tempfile().unwrap();
    std::io::Write::write_all(&mut pt_file, &pt).unwrap();
    let mut ct_file = tempfile::tempfile().unwrap();
    std::io::Write::write_all(&mut ct_file, &ct).unwrap();
    for left in [0, 1, 500, 5000, 19_000] {
        let opts = EncryptOptions {
            frame_length: FRAME,
            ..Default::default()
        };
        let enc = Encryptor::new(k.as_ref(), &opts).unwrap();
        let mut w = FailingWriter { left };
        let r = s3crypt_core::pipeline::encrypt_file(enc, &pt_file, &mut w, &popts, |_| {});
        assert_eq!(r.unwrap_err().class(), "io", "encrypt, fails after {left}");
        if left < pt.len() {
            let mut w = FailingWriter { left };
            let r = s3crypt_core::pipeline::decrypt_file(
                k.as_ref(),
                &DecryptOptions::default(),
                &ct_file,
                &mut w,
                &popts,
                |_| {},
            );
            assert_eq!(r.unwrap_err().class(), "io", "decrypt, fails after {left}");
        }
    }
}
