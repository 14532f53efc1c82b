//! Criterion benchmarks: raw AEAD primitives (the baseline), frame seal/open, and whole-stream

#![allow(clippy::unwrap_used)]
//! encryption and decryption through the push API and the parallel pipeline. Throughput in bytes.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use s3crypt_core::key::{SealingKey, REGULAR_OVERHEAD, REGULAR_PREFIX};
use s3crypt_core::keyring::raw_aes::{RawAesKeyring, WrappingKey};
use s3crypt_core::keyring::DataKey;
use s3crypt_core::pipeline::{self, PipelineOptions};
use s3crypt_core::{DecryptOptions, EncryptOptions, Encryptor, Suite};

const SIZES: [usize; 3] = [16 << 10, 64 << 10, 1 << 20];

/// Single-core AES-256-GCM (and ChaCha20-Poly1305) of each implementation, in place.
fn raw_aead(c: &mut Criterion) {
    let mut g = c.benchmark_group("raw-aead-seal");
    for size in SIZES {
        g.throughput(Throughput::Bytes(size as u64));
        let mut buf = vec![7u8; size];
        let ring_key = ring::aead::LessSafeKey::new(
            ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &[1; 32]).unwrap(),
        );
        g.bench_with_input(BenchmarkId::new("ring-aes256gcm", size), &size, |b, _| {
            b.iter(|| {
                let n = ring::aead::Nonce::assume_unique_for_key([0; 12]);
                let _ = black_box(
                    ring_key
                        .seal_in_place_separate_tag(n, ring::aead::Aad::empty(), &mut buf)
                        .unwrap(),
                );
            })
        });
        let lc_key = aws_lc_rs::aead::LessSafeKey::new(
            aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, &[1; 32]).unwrap(),
        );
        g.bench_with_input(
            BenchmarkId::new("aws-lc-rs-aes256gcm", size),
            &size,
            |b, _| {
                b.iter(|| {
                    let n = aws_lc_rs::aead::Nonce::assume_unique_for_key([0; 12]);
                    let _ = black_box(
                        lc_key
                            .seal_in_place_separate_tag(n, aws_lc_rs::aead::Aad::empty(), &mut buf)
                            .unwrap(),
                    );
                })
            },
        );
        {
            use aes_gcm::aead::{AeadInPlace, KeyInit};
            let k = aes_gcm::Aes256Gcm::new(&[1u8; 32].into());
            g.bench_with_input(
                BenchmarkId::new("rustcrypto-aes256gcm", size),
                &size,
                |b, _| {
                    b.iter(|| {
                        black_box(
                            k.encrypt_in_place_detached(&[0u8; 12].into(), b"", &mut buf)
                                .unwrap(),
                        )
                    })
                },
            );
        }
        let ring_chacha = ring::aead::LessSafeKey::new(
            ring::aead::UnboundKey::new(&ring::aead::CHACHA20_POLY1305, &[1; 32]).unwrap(),
        );
        g.bench_with_input(
            BenchmarkId::new("ring-chacha20poly1305", size),
            &size,
            |b, _| {
                b.iter(|| {
                    let n = ring::aead::Nonce::assume_unique_for_key([0; 12]);
                    let _ = black_box(
                        ring_chacha
                            .seal_in_place_separate_tag(n, ring::aead::Aad::empty(), &mut buf)
                            .unwrap(),
                    );
                })
            },
        );
        {
            use chacha20poly1305::aead::{AeadInPlace, KeyInit};
            let k = chacha20poly1305::ChaCha20Poly1305::new(&[1u8; 32].into());
            g.bench_with_input(
                BenchmarkId::new("rustcrypto-chacha20poly1305", size),
                &size,
                |b, _| {
                    b.iter(|| {
                        black_box(
                            k.encrypt_in_place_detached(&[0u8; 12].into(), b"", &mut buf)
                                .unwrap(),
                        )
                    })
                },
            );
        }
    }
    g.finish();
}

/// One frame sealed and opened by s3crypt (AAD construction, nonce, layout included).
fn frames(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame");
    for suite in [
        Suite::Aes256GcmHkdfSha512Commit,
        Suite::ChaCha20Poly1305HkdfSha512Commit,
    ] {
        let key = SealingKey::danger_for_frames_with_message_id(
            suite,
            &DataKey::from_bytes([3; 32]),
            [5; 32],
        );
        for size in SIZES {
            g.throughput(Throughput::Bytes(size as u64));
            let mut frame = vec![1u8; size + REGULAR_OVERHEAD];
            g.bench_with_input(
                BenchmarkId::new(format!("seal-{}", suite.name()), size),
                &size,
                |b, _| b.iter(|| key.seal_regular(black_box(1), &mut frame)),
            );
            key.seal_regular(1, &mut frame);
            let sealed = frame.clone();
            g.bench_with_input(
                BenchmarkId::new(format!("open-{}", suite.name()), size),
                &size,
                |b, _| {
                    b.iter(|| {
                        frame[REGULAR_PREFIX..].copy_from_slice(&sealed[REGULAR_PREFIX..]);
                        key.opener().open_regular(1, &mut frame).unwrap();
                    })
                },
            );
        }
    }
    g.finish();
}

/// Whole messages through the parallel pipeline (all cores) and the push API (one core).
fn streams(c: &mut Criterion) {
    let mut g = c.benchmark_group("stream");
    g.sample_size(10);
    let keyring = RawAesKeyring::new("bench", "k", WrappingKey::from_bytes([9; 32])).unwrap();
    for size in [1usize << 20, 64 << 20] {
        let pt = vec![0x5Au8; size];
        g.throughput(Throughput::Bytes(size as u64));
        let opts = EncryptOptions::default();
        g.bench_with_input(BenchmarkId::new("encrypt-pipeline", size), &size, |b, _| {
            let mut out = Vec::with_capacity(size + size / 1000 + 4096);
            b.iter(|| {
                out.clear();
                let enc = Encryptor::new(&keyring, &opts).unwrap();
                pipeline::encrypt(enc, &pt[..], &mut out, &PipelineOptions::default(), |_| {})
                    .unwrap();
            })
        });
        let mut ct = Vec::new();
        pipeline::encrypt(
            Encryptor::new(&keyring, &opts).unwrap(),
            &pt[..],
            &mut ct,
            &PipelineOptions::default(),
            |_| {},
        )
        .unwrap();
        g.bench_with_input(BenchmarkId::new("decrypt-pipeline", size), &size, |b, _| {
            let mut out = Vec::with_capacity(size);
            b.iter(|| {
                out.clear();
                pipeline::decrypt(
                    &keyring,
                    &DecryptOptions::default(),
                    &ct[..],
                    &mut out,
                    &PipelineOptions::default(),
                    |_| {},
                )
                .unwrap();
            })
        });
        g.bench_with_input(
            BenchmarkId::new("encrypt-push-1core", size),
            &size,
            |b, _| {
                let mut out = Vec::with_capacity(size + size / 1000 + 4096);
                b.iter(|| {
                    out.clear();
                    let mut enc = Encryptor::new(&keyring, &opts).unwrap();
                    enc.update(&pt, &mut out).unwrap();
                    enc.finish(&mut out).unwrap();
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, raw_aead, frames, streams);
criterion_main!(benches);
