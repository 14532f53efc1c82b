//! Replays the cargo-fuzz corpora (`fuzz/corpus/<target>/`) and the test vectors through the fuzz
//! entry points, as ordinary tests: a finding once fixed stays fixed.

use std::path::Path;

use s3crypt_core::fuzzing;

fn replay(target: &str, f: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut n = 0;
    for dir in [
        root.join("fuzz/corpus").join(target),
        root.join("test-vectors/negative"),
        root.join("test-vectors/positive"),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let data = std::fs::read(e.path()).unwrap();
            if data.len() > 200_000 {
                continue;
            }
            f(&data);
            n += 1;
        }
    }
    n
}

#[test]
fn header_corpus() {
    assert!(replay("header", fuzzing::header_round_trip) > 100);
}

#[test]
fn decrypt_corpus() {
    assert!(replay("decrypt", fuzzing::decrypt) > 100);
}

#[test]
fn range_corpus() {
    assert!(replay("range", fuzzing::range) > 100);
}

#[test]
fn keyring_file_corpus() {
    assert!(replay("keyring_file", fuzzing::keyring_file) > 0);
}
