//! Round trips across sizes, frame lengths, suites, contexts and every encrypt/decrypt path;
//! range decryption equals the slice of the whole.

use proptest::prelude::*;
use s3crypt_core::pipeline::PipelineOptions;
use s3crypt_core::{range, DecryptOptions, EncryptOptions, EncryptionContext, Suite};

use crate::util::*;

fn options(suite: Suite, frame_length: u32, ctx: &[(String, String)]) -> EncryptOptions {
    let mut context = EncryptionContext::new();
    for (k, v) in ctx {
        let _ = context.insert(k.clone(), v.clone());
    }
    EncryptOptions {
        suite,
        frame_length,
        context,
        ..Default::default()
    }
}

fn suites() -> impl Strategy<Value = Suite> {
    prop_oneof![
        Just(Suite::Aes256GcmHkdfSha512Commit),
        Just(Suite::Aes256GcmHkdfSha512CommitEcdsaP384),
        Just(Suite::ChaCha20Poly1305HkdfSha512Commit),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn every_path_round_trips(
        suite in suites(),
        frame16 in 1u32..300,
        len in 0usize..40_000,
        chunk in 1usize..5000,
        threads in 1usize..4,
        ctx in proptest::collection::vec(("[a-z]{1,6}", "\\PC{0,6}"), 0..4),
    ) {
        let frame = frame16 * 16;
        let k = keyring(vec![raw("ns", "a", 1), raw("ns", "b", 2)]);
        let opts = options(suite, frame, &ctx);
        let pt = pattern(len);
        let popts = PipelineOptions { threads, batch_bytes: 3 * frame as usize };
        let by_push = encrypt_push(k.as_ref(), &opts, &pt, chunk);
        let by_pipeline = encrypt_pipeline(k.as_ref(), &opts, &pt, &popts);
        let by_file = encrypt_file(k.as_ref(), &opts, &pt, &popts);
        let required = DecryptOptions { required_context: opts.context.clone(), ..Default::default() };
        for ct in [&by_push, &by_pipeline, &by_file] {
            let (out, r) = decrypt_push(k.clone(), &required, ct, chunk);
            prop_assert!(r.is_ok(), "{:?}", r);
            prop_assert!(out == pt);
            let (out, r) = decrypt_pipeline(k.as_ref(), &required, ct, &popts);
            prop_assert!(r.is_ok(), "{:?}", r);
            prop_assert!(out == pt);
            let (out, r) = decrypt_file(k.as_ref(), &required, ct, &popts);
            prop_assert!(r.is_ok(), "{:?}", r);
            prop_assert!(out == pt);
            // Only the second key: any wrapping key decrypts.
            let (out, r) = decrypt_push(keyring(vec![raw("ns", "b", 2)]), &required, ct, usize::MAX);
            prop_assert!(r.is_ok() && out == pt);
        }
    }

    #[test]
    fn range_equals_slice(
        frame16 in 1u32..64,
        len in 1usize..20_000,
        a in any::<prop::sample::Index>(),
        b in any::<prop::sample::Index>(),
        chacha in any::<bool>(),
    ) {
        let suite = if chacha { Suite::ChaCha20Poly1305HkdfSha512Commit } else { Suite::DEFAULT };
        let k = keyring(vec![raw("ns", "a", 1)]);
        let pt = pattern(len);
        let ct = encrypt_push(k.as_ref(), &options(suite, frame16 * 16, &[]), &pt, 997);
        let (mut x, mut y) = (a.index(len), b.index(len + 1));
        if x > y { std::mem::swap(&mut x, &mut y); }
        let y = y.max(x + 1);
        let got = range::decrypt_range(&ct, k.as_ref(), &DecryptOptions::default(), x as u64..y as u64).unwrap();
        prop_assert!(got[..] == pt[x..y.min(len)]);
    }
}

#[test]
fn sizes_around_frame_boundaries() {
    let k = keyring(vec![raw("ns", "a", 1)]);
    for frame in [16u32, 128, 4096] {
        let f = frame as usize;
        for len in [0, 1, f - 1, f, f + 1, 2 * f, 3 * f + 17] {
            let pt = pattern(len);
            for suite in Suite::ALL {
                let opts = options(suite, frame, &[]);
                let ct = encrypt_pipeline(
                    k.as_ref(),
                    &opts,
                    &pt,
                    &PipelineOptions {
                        threads: 2,
                        batch_bytes: 2 * f,
                    },
                );
                let (out, r) = decrypt_push(k.clone(), &DecryptOptions::default(), &ct, 1000);
                r.unwrap();
                assert_eq!(out, pt, "frame {frame} len {len} {suite}");
            }
        }
    }
}

#[test]
fn large_stream_through_pipeline() {
    // 24 MiB with default options: many batches in flight on every worker.
    let k = keyring(vec![raw("ns", "a", 1)]);
    let pt = pattern(24 << 20);
    let ct = encrypt_pipeline(
        k.as_ref(),
        &EncryptOptions::default(),
        &pt,
        &PipelineOptions::default(),
    );
    let (out, r) = decrypt_pipeline(
        k.as_ref(),
        &DecryptOptions::default(),
        &ct,
        &PipelineOptions::default(),
    );
    r.unwrap();
    assert!(out == pt);
}

#[test]
fn encryption_context_requirements() {
    let k = keyring(vec![raw("ns", "a", 1)]);
    let ct = encrypt_push(
        k.as_ref(),
        &options(Suite::DEFAULT, 64, &[("tenant".into(), "acme".into())]),
        b"hi",
        10,
    );
    let mut o = DecryptOptions::default();
    o.required_context.insert("tenant", "acme").unwrap();
    assert!(decrypt_push(k.clone(), &o, &ct, 10).1.is_ok());
    let mut o = DecryptOptions::default();
    o.required_context.insert("tenant", "evil").unwrap();
    assert_eq!(
        decrypt_push(k.clone(), &o, &ct, 10).1.unwrap_err().class(),
        "context"
    );
    let mut o = DecryptOptions::default();
    o.required_context.insert("other", "x").unwrap();
    assert_eq!(
        decrypt_push(k, &o, &ct, 10).1.unwrap_err().class(),
        "context"
    );
}

#[test]
fn wrong_key_is_no_key_and_lists_the_message_keys() {
    let ct = encrypt_push(
        keyring(vec![raw("ns", "a", 1)]).as_ref(),
        &EncryptOptions::default(),
        b"x",
        1,
    );
    let (out, r) = decrypt_push(
        keyring(vec![raw("ns", "a", 2)]),
        &DecryptOptions::default(),
        &ct,
        100,
    );
    let e = r.unwrap_err();
    assert_eq!(e.class(), "no-key");
    assert!(e.to_string().contains("ns/a"), "{e}");
    assert!(out.is_empty());
}
