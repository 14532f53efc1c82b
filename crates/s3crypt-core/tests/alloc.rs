//! Allocation bounds, in their own test binary so that no other test shares the allocator.

// The counting allocator needs `unsafe impl GlobalAlloc`; nothing else in this binary is unsafe.
#![allow(unsafe_code)]
#![allow(clippy::unwrap_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use s3crypt_core::keyring::raw_aes::{RawAesKeyring, WrappingKey};
use s3crypt_core::pipeline::{self, PipelineOptions};
use s3crypt_core::{DecryptOptions, EncryptOptions, Encryptor};

struct Counting;
static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        // SAFETY: forwards to the system allocator with the caller's layout.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

#[test]
fn a_short_message_declaring_large_frames_allocates_little() {
    // Regression: the decryption pipeline sized every pool buffer (2 × threads + 2 of them) from
    // the declared frame length before any data arrived, so a few hundred bytes declaring 64 MiB
    // frames cost hundreds of MiB.
    let k = RawAesKeyring::new("ns", "a", WrappingKey::from_bytes([1; 32])).unwrap();
    let opts = EncryptOptions {
        frame_length: 64 << 20,
        ..Default::default()
    };
    let mut ct = Vec::new();
    let mut enc = Encryptor::new(&k, &opts).unwrap();
    enc.update(b"tiny", &mut ct).unwrap();
    enc.finish(&mut ct).unwrap();
    assert!(ct.len() < 400);
    let before = CURRENT.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let mut out = Vec::new();
    let popts = PipelineOptions {
        threads: 4,
        batch_bytes: 1 << 20,
    };
    pipeline::decrypt(
        &k,
        &DecryptOptions::default(),
        &ct[..],
        &mut out,
        &popts,
        |_| {},
    )
    .unwrap();
    assert_eq!(out, b"tiny");
    let peak = PEAK.load(Ordering::Relaxed) - before;
    assert!(
        peak < 8 << 20,
        "peak allocation {peak} bytes for a {}-byte message",
        ct.len()
    );
}
