//! Entry points shared by the cargo-fuzz targets (`fuzz/`) and by the tests that replay their
//! corpora (`tests/it/corpora.rs`). Each takes arbitrary bytes and checks an invariant; a panic is
//! a finding. Not a stable API.

use std::sync::Arc;

use crate::header::{Header, ReadLimits};
use crate::keyring::file::KeyringFile;
use crate::keyring::raw_aes::{RawAesKeyring, WrappingKey};
use crate::keyring::Keyring;
use crate::pipeline::PipelineOptions;
use crate::{DecryptOptions, Decryptor, EncryptOptions, Encryptor};

/// The key the fuzz corpora's seed messages were made with (namespace `fuzz`, name `key`).
pub fn keyring() -> Arc<dyn Keyring> {
    #[allow(clippy::unwrap_used)]
    Arc::new(RawAesKeyring::new("fuzz", "key", WrappingKey::from_bytes([0x42; 32])).unwrap())
}

fn limits() -> ReadLimits {
    // Small limits keep the fuzzer fast; they are checked before allocation.
    ReadLimits {
        max_frame_length: 1 << 16,
        max_encrypted_data_keys: 8,
    }
}

/// Header parse → serialize → parse is the identity on whatever parses.
pub fn header_round_trip(data: &[u8]) {
    if let Ok(p) = Header::read(data, &ReadLimits::default()) {
        #[allow(clippy::expect_used)]
        let bytes = p.header.to_bytes().expect("a parsed header serializes");
        assert_eq!(
            bytes, p.bytes,
            "re-serialization differs from the bytes read"
        );
        let mut with_tag = bytes;
        with_tag.extend_from_slice(&p.tag);
        #[allow(clippy::expect_used)]
        let again = Header::read(&with_tag, &ReadLimits::default()).expect("re-parse");
        assert_eq!(again, p);
    }
}

/// Full decryption of arbitrary bytes: the push API (in two chunkings) and the pipeline agree on
/// success or failure and on the plaintext released.
pub fn decrypt(data: &[u8]) {
    let options = DecryptOptions {
        limits: limits(),
        ..Default::default()
    };
    let run_push = |chunk: usize| {
        let mut d = Decryptor::new(keyring(), options.clone());
        let mut out = Vec::new();
        let mut r = Ok(());
        for c in data.chunks(chunk) {
            r = d.update(c, &mut out);
            if r.is_err() {
                break;
            }
        }
        let r = r.and_then(|()| d.finish(&mut out).map(|_| ()));
        (out, r.map_err(|e| e.class()))
    };
    let (a, ra) = run_push(data.len().max(1));
    let (b, rb) = run_push(7);
    assert_eq!(ra, rb, "push results differ by chunking");
    assert_eq!(a, b);
    let mut c = Vec::new();
    let popts = PipelineOptions {
        threads: 2,
        batch_bytes: 1 << 12,
    };
    let rc = crate::pipeline::decrypt(keyring().as_ref(), &options, data, &mut c, &popts, |_| {})
        .map(|_| ());
    assert_eq!(
        ra.is_ok(),
        rc.is_ok(),
        "push and pipeline disagree: {ra:?} vs {rc:?}"
    );
    if ra.is_ok() {
        assert_eq!(a, c);
    }
}

/// Range decryption of arbitrary bytes: the first 16 bytes choose the range; whatever succeeds
/// equals the same slice of the full decryption.
pub fn range(data: &[u8]) {
    if data.len() < 16 {
        return;
    }
    let (sel, msg) = data.split_at(16);
    let mut a = [0u8; 8];
    a.copy_from_slice(&sel[..8]);
    let mut b = [0u8; 8];
    b.copy_from_slice(&sel[8..]);
    let (start, len) = (
        u64::from_le_bytes(a) % 100_000,
        u64::from_le_bytes(b) % 100_000,
    );
    let options = DecryptOptions {
        limits: limits(),
        ..Default::default()
    };
    if let Ok(part) =
        crate::range::decrypt_range(msg, keyring().as_ref(), &options, start..start + len + 1)
    {
        let mut d = Decryptor::new(keyring(), options);
        let mut whole = Vec::new();
        if d.update(msg, &mut whole)
            .and_then(|()| d.finish(&mut whole))
            .is_ok()
        {
            let s = start as usize;
            assert_eq!(
                part,
                whole[s..(s + len as usize + 1).min(whole.len())],
                "range differs from slice"
            );
        }
    }
}

/// Keyring files: parse → write → parse is the identity, and nothing panics.
pub fn keyring_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(kf) = KeyringFile::parse(text) {
        #[allow(clippy::expect_used)]
        let again = KeyringFile::parse(&kf.to_text()).expect("a written keyring parses");
        let names = |k: &KeyringFile| {
            k.keys()
                .map(|k| (k.namespace.clone(), k.name.clone(), *k.key.as_bytes()))
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&kf), names(&again));
    }
}

/// A message for the seed corpora: `len` bytes under [`keyring`] with `frame_length`.
pub fn seed_message(len: usize, frame_length: u32, suite: crate::Suite) -> Vec<u8> {
    let mut out = Vec::new();
    let opts = EncryptOptions {
        suite,
        frame_length,
        ..Default::default()
    };
    #[allow(clippy::unwrap_used)]
    let mut enc = Encryptor::new(keyring().as_ref(), &opts).unwrap();
    let pt: Vec<u8> = (0..len).map(|i| i as u8).collect();
    #[allow(clippy::unwrap_used)]
    {
        enc.update(&pt, &mut out).unwrap();
        enc.finish(&mut out).unwrap();
    }
    out
}
