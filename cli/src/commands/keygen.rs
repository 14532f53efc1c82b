//! `s3crypt keygen`.

use std::io::Read;

use base64::Engine as _;
use s3crypt_core::keyring::file::{generated_key_name, KeyringFile, NamedKey};
use s3crypt_core::keyring::raw_aes::WrappingKey;
use zeroize::Zeroizing;

use crate::args::KeygenArgs;
use crate::exit::Failure;

/// Reads a key to import: 32 raw bytes, 64 hex digits, or base64 of 32 bytes.
fn read_import(path: &std::path::Path) -> Result<WrappingKey, Failure> {
    let limit = 1024;
    // Sized up front so that reading never reallocates (which would leave copies behind).
    let mut bytes = Zeroizing::new(Vec::with_capacity(limit as usize + 1));
    let r = if path == std::path::Path::new("-") {
        std::io::stdin().lock().take(limit).read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(limit).read_to_end(&mut bytes))
    };
    r.map_err(|e| Failure::Io(format!("cannot read key file {}", path.display()), e))?;
    if bytes.len() == 32 {
        return Ok(WrappingKey::from_slice(&bytes)?);
    }
    let text = std::str::from_utf8(&bytes).map(str::trim).unwrap_or("");
    let decoded: Option<Zeroizing<Vec<u8>>> =
        if text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit()) {
            // Decoded into its final, wiped buffer (collecting would grow it step by step).
            let mut k = Zeroizing::new(vec![0u8; 32]);
            for (i, b) in k.iter_mut().enumerate() {
                *b = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap_or_default();
            }
            Some(k)
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .ok()
                .map(Zeroizing::new)
        };
    match decoded {
        Some(k) if k.len() == 32 => Ok(WrappingKey::from_slice(&k)?),
        _ => Err(Failure::Usage(format!(
            "{} does not hold a 256-bit key (32 raw bytes, 64 hex digits, or base64 of 32 bytes)",
            path.display()
        ))),
    }
}

/// Creates the keyring's directory if it is missing (`~/.config/s3crypt` on a new machine), with
/// mode 0700 like `ssh-keygen`'s `~/.ssh`: it holds secret keys.
fn create_parent(path: &std::path::Path) -> Result<(), Failure> {
    let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(());
    };
    if parent.is_dir() {
        return Ok(());
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(parent)
        .map_err(|e| Failure::Io(format!("cannot create directory {}", parent.display()), e))?;
    eprintln!(
        "s3crypt: created directory {} (mode 0700)",
        parent.display()
    );
    Ok(())
}

pub(crate) fn run(a: KeygenArgs) -> Result<(), Failure> {
    let key = match &a.import {
        Some(p) => read_import(p)?,
        None => WrappingKey::generate(),
    };
    let name = a.name.clone().unwrap_or_else(generated_key_name);
    let nk = NamedKey {
        namespace: a.namespace.clone(),
        name: name.clone(),
        key,
    };
    if a.rotate {
        let mut kf = KeyringFile::load(&a.output)?;
        kf.rotate(nk)?;
        kf.replace(&a.output)?;
        eprintln!(
            "s3crypt: {}: new primary key {}/{}; older keys kept for decryption",
            a.output.display(),
            a.namespace,
            name
        );
    } else {
        if a.output.exists() {
            return Err(Failure::Usage(format!(
                "{} exists; use --rotate to add a new primary key to it",
                a.output.display()
            )));
        }
        create_parent(&a.output)?;
        KeyringFile::new(nk)?.create(&a.output)?;
        eprintln!(
            "s3crypt: created keyring {} with key {}/{} (mode 0600; back it up)",
            a.output.display(),
            a.namespace,
            name
        );
    }
    Ok(())
}
