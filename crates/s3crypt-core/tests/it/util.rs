//! Helpers shared by the integration tests.

use std::sync::Arc;

use s3crypt_core::keyring::multi::MultiKeyring;
use s3crypt_core::keyring::raw_aes::{RawAesKeyring, WrappingKey};
use s3crypt_core::pipeline::{self, PipelineOptions};
use s3crypt_core::{
    DecryptOptions, DecryptReader, Decryptor, EncryptOptions, Encryptor, Error, Keyring,
};

/// The test-vector plaintext: byte i = (i * 7 + 3) mod 251.
pub(crate) fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 7 + 3) % 251) as u8).collect()
}

pub(crate) fn raw(ns: &str, name: &str, byte: u8) -> RawAesKeyring {
    RawAesKeyring::new(ns, name, WrappingKey::from_bytes([byte; 32])).unwrap()
}

pub(crate) fn keyring(keys: Vec<RawAesKeyring>) -> Arc<dyn Keyring> {
    Arc::new(MultiKeyring::new(
        keys.into_iter()
            .map(|k| Box::new(k) as Box<dyn Keyring>)
            .collect(),
    ))
}

/// Encrypts with the push API, feeding `chunk`-sized pieces.
pub(crate) fn encrypt_push(
    k: &dyn Keyring,
    opts: &EncryptOptions,
    pt: &[u8],
    chunk: usize,
) -> Vec<u8> {
    let mut enc = Encryptor::new(k, opts).unwrap();
    let mut out = Vec::new();
    for c in pt.chunks(chunk.max(1)) {
        enc.update(c, &mut out).unwrap();
    }
    enc.finish(&mut out).unwrap();
    out
}

/// Encrypts with the parallel pipeline.
pub(crate) fn encrypt_pipeline(
    k: &dyn Keyring,
    opts: &EncryptOptions,
    pt: &[u8],
    popts: &PipelineOptions,
) -> Vec<u8> {
    let enc = Encryptor::new(k, opts).unwrap();
    let mut out = Vec::new();
    pipeline::encrypt(enc, pt, &mut out, popts, |_| {}).unwrap();
    out
}

/// Decrypts with the push API in `chunk`-sized pieces; returns the plaintext released before an
/// error too.
pub(crate) fn decrypt_push(
    k: Arc<dyn Keyring>,
    opts: &DecryptOptions,
    ct: &[u8],
    chunk: usize,
) -> (Vec<u8>, Result<(), Error>) {
    let mut dec = Decryptor::new(k, opts.clone());
    let mut out = Vec::new();
    for c in ct.chunks(chunk.max(1)) {
        if let Err(e) = dec.update(c, &mut out) {
            return (out, Err(e));
        }
    }
    let r = dec.finish(&mut out).map(|_| ());
    (out, r)
}

pub(crate) fn decrypt_pipeline(
    k: &dyn Keyring,
    opts: &DecryptOptions,
    ct: &[u8],
    popts: &PipelineOptions,
) -> (Vec<u8>, Result<(), Error>) {
    let mut out = Vec::new();
    let r = pipeline::decrypt(k, opts, ct, &mut out, popts, |_| {}).map(|_| ());
    (out, r)
}

pub(crate) fn decrypt_reader(
    k: Arc<dyn Keyring>,
    opts: &DecryptOptions,
    ct: &[u8],
) -> (Vec<u8>, Result<(), Error>) {
    use std::io::Read;
    let mut r = DecryptReader::new(k, opts.clone(), ct);
    let mut out = Vec::new();
    match r.read_to_end(&mut out) {
        Ok(_) => (out, Ok(())),
        Err(e) => {
            let class = s3crypt_core::error_of(&e)
                .map(|x| x.class())
                .unwrap_or("io");
            (
                out,
                Err(Error::InvalidArgument(format!("via reader: {class}"))),
            )
        }
    }
}

/// The error class, also for errors that came back through an `io::Error`.
pub(crate) fn class_of(e: &Error) -> String {
    match e {
        Error::InvalidArgument(m) if m.starts_with("via reader: ") => {
            m["via reader: ".len()..].to_owned()
        }
        other => other.class().to_owned(),
    }
}

/// Small pipelines (tiny batches, several threads) exercise batching and reordering.
pub(crate) fn pipeline_variants() -> Vec<PipelineOptions> {
    vec![
        PipelineOptions::default(),
        PipelineOptions {
            threads: 1,
            batch_bytes: 1,
        },
        PipelineOptions {
            threads: 3,
            batch_bytes: 700,
        },
    ]
}

/// Decrypts `ct` from a temporary regular file with the positional-read path.
pub(crate) fn decrypt_file(
    k: &dyn Keyring,
    opts: &DecryptOptions,
    ct: &[u8],
    popts: &PipelineOptions,
) -> (Vec<u8>, Result<(), Error>) {
    let mut f = tempfile::tempfile().unwrap();
    std::io::Write::write_all(&mut f, ct).unwrap();
    let mut out = Vec::new();
    let r = pipeline::decrypt_file(k, opts, &f, &mut out, popts, |_| {}).map(|_| ());
    (out, r)
}

/// Encrypts `pt` from a temporary regular file with the positional-read path.
pub(crate) fn encrypt_file(
    k: &dyn Keyring,
    opts: &EncryptOptions,
    pt: &[u8],
    popts: &PipelineOptions,
) -> Vec<u8> {
    let mut f = tempfile::tempfile().unwrap();
    std::io::Write::write_all(&mut f, pt).unwrap();
    let enc = Encryptor::new(k, opts).unwrap();
    let mut out = Vec::new();
    pipeline::encrypt_file(enc, &f, &mut out, popts, |_| {}).unwrap();
    out
}
