//! Keyring files: one or more named 256-bit raw AES keys in a small text format.
//!
//! ```text
//! # comments and blank lines are ignored
//! s3crypt-keyring v1
//! primary <namespace> <name> <base64 of 32 key bytes>
//! key     <namespace> <name> <base64 of 32 key bytes>
//! ```
//! The first meaningful line is the version line. Exactly one `primary` key wraps new data keys;
//! every key (primary or not) can unwrap, so a rotated-out key keeps old objects readable.
//! Namespaces and names are non-empty UTF-8 without whitespace or control characters; the pair
//! must be unique. Parse errors name the line, never its content.
//!
//! Files are created with mode 0600. On Unix a keyring file is read only if it is a regular file,
//! owned by the effective user, that group and others cannot access at all; it is opened without
//! following a symbolic link in its last component (a symlinked keyring file is refused: pass the
//! file's own path) and without blocking (a FIFO or device is refused, not waited on), and the
//! checks apply to the file actually opened (`fstat`), not to whatever the path names later.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use base64::Engine as _;
use zeroize::Zeroizing;

use super::raw_aes::{RawAesKeyring, WrappingKey};
use super::{DecryptionMaterials, EncryptionMaterials, Keyring};
use crate::error::{Error, Result};
use crate::header::EncryptedDataKey;

/// The version line.
pub const MAGIC: &str = "s3crypt-keyring v1";
/// Default key namespace for generated keys.
pub const DEFAULT_NAMESPACE: &str = "s3crypt";
/// Largest keyring file read (checked before reading).
pub const MAX_FILE_LEN: u64 = 1 << 20;

/// One named key of a keyring file.
#[derive(Debug)]
pub struct NamedKey {
    /// Key namespace (the EDK provider id).
    pub namespace: String,
    /// Key name.
    pub name: String,
    /// The key.
    pub key: WrappingKey,
}

/// The contents of a keyring file.
#[derive(Debug)]
pub struct KeyringFile {
    primary: NamedKey,
    others: Vec<NamedKey>,
}

fn valid_label(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

impl KeyringFile {
    /// A keyring with one primary key.
    ///
    /// # Errors
    /// [`Error::Keyring`] if the namespace or name is not a valid label.
    pub fn new(primary: NamedKey) -> Result<Self> {
        let kf = Self {
            primary,
            others: Vec::new(),
        };
        kf.check()?;
        Ok(kf)
    }

    fn check(&self) -> Result<()> {
        let mut seen = std::collections::HashSet::new();
        for k in self.keys() {
            if !valid_label(&k.namespace) || !valid_label(&k.name) {
                return Err(Error::keyring(
                    "key namespaces and names must be non-empty and contain no whitespace or control characters",
                ));
            }
            // Also enforces the raw AES keyring's own rules (no "aws-kms" prefix, lengths).
            RawAesKeyring::new(
                k.namespace.clone(),
                k.name.clone(),
                WrappingKey::from_bytes([0; 32]),
            )?;
            if !seen.insert((k.namespace.as_str(), k.name.as_str())) {
                return Err(Error::keyring(format!(
                    "key {}/{} appears twice",
                    k.namespace, k.name
                )));
            }
        }
        Ok(())
    }

    /// The primary key (wraps new data keys).
    pub fn primary(&self) -> &NamedKey {
        &self.primary
    }

    /// All keys, primary first.
    pub fn keys(&self) -> impl Iterator<Item = &NamedKey> {
        std::iter::once(&self.primary).chain(self.others.iter())
    }

    /// Makes `key` the primary; the previous primary stays for decryption.
    ///
    /// # Errors
    /// [`Error::Keyring`] if the new key's namespace/name is invalid or already present.
    pub fn rotate(&mut self, key: NamedKey) -> Result<()> {
        let old = std::mem::replace(&mut self.primary, key);
        self.others.insert(0, old);
        self.check()
    }

    /// Parses the text format.
    ///
    /// # Errors
    /// [`Error::Keyring`] naming the line at fault (never its content).
    pub fn parse(text: &str) -> Result<Self> {
        let mut saw_magic = false;
        let mut primary = None;
        let mut others = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |what: &str| Error::keyring(format!("line {}: {what}", i + 1));
            if !saw_magic {
                if line.split_whitespace().collect::<Vec<_>>()
                    != MAGIC.split(' ').collect::<Vec<_>>()
                {
                    return Err(err(&format!(
                        "expected {MAGIC:?} (not an s3crypt keyring file?)"
                    )));
                }
                saw_magic = true;
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [kind, namespace, name, b64] = fields[..] else {
                return Err(err("expected: primary|key NAMESPACE NAME BASE64KEY"));
            };
            let bytes = Zeroizing::new(
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|_| err("the key is not valid base64"))?,
            );
            let key =
                WrappingKey::from_slice(&bytes).map_err(|_| err("the key is not 32 bytes"))?;
            let nk = NamedKey {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                key,
            };
            match kind {
                "primary" if primary.is_some() => return Err(err("a second primary key")),
                "primary" => primary = Some(nk),
                "key" => others.push(nk),
                _ => return Err(err("expected \"primary\" or \"key\"")),
            }
        }
        if !saw_magic {
            return Err(Error::keyring("empty keyring file"));
        }
        let primary = primary.ok_or_else(|| Error::keyring("no primary key"))?;
        let kf = Self { primary, others };
        kf.check()?;
        Ok(kf)
    }

    /// The text format. The result holds secrets: it is wiped when dropped.
    pub fn to_text(&self) -> Zeroizing<String> {
        let mut s = Zeroizing::new(String::new());
        s.push_str(
            "# s3crypt keyring: secret key material. Keep it private (mode 0600) and backed up.\n",
        );
        s.push_str("# The primary key wraps new data keys; every key listed can decrypt.\n");
        s.push_str(MAGIC);
        s.push('\n');
        for (i, k) in self.keys().enumerate() {
            let kind = if i == 0 { "primary" } else { "key" };
            for part in [kind, " ", &k.namespace, " ", &k.name, " "] {
                s.push_str(part);
            }
            // Encoded straight into the wiped string: no temporary copy of the key text.
            base64::engine::general_purpose::STANDARD.encode_string(k.key.as_bytes(), &mut s);
            s.push('\n');
        }
        s
    }

    /// Reads a keyring file. On Unix it must be a regular file owned by the effective user, with
    /// no access for group or others, named directly (not through a symbolic link); see the
    /// module docs.
    ///
    /// # Errors
    /// [`Error::Keyring`] naming the path if the file cannot be opened or read, is a symbolic
    /// link, is not a regular file, belongs to another user, is accessible by group or others
    /// (saying what to run), is larger than [`MAX_FILE_LEN`], or does not parse.
    pub fn load(path: &Path) -> Result<Self> {
        let shown = path.display();
        let (mut f, meta) = open_key_file(path)?;
        if meta.len() > MAX_FILE_LEN {
            return Err(Error::keyring(format!(
                "keyring {shown} is larger than {MAX_FILE_LEN} bytes"
            )));
        }
        // Sized up front so that reading never reallocates (which would leave copies behind).
        let mut bytes = Zeroizing::new(Vec::with_capacity(meta.len() as usize + 1));
        Read::by_ref(&mut f)
            .take(MAX_FILE_LEN + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::keyring(format!("cannot read keyring {shown}: {e}")))?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| Error::keyring(format!("keyring {shown} is not UTF-8 text")))?;
        Self::parse(text).map_err(|e| match e {
            Error::Keyring(m) => Error::keyring(format!("keyring {shown}: {}", m.message())),
            other => other,
        })
    }

    /// Writes a new keyring file with mode 0600; fails if `path` exists.
    ///
    /// # Errors
    /// [`Error::Io`] (saying which file) if the file exists or cannot be created or written.
    pub fn create(&self, path: &Path) -> Result<()> {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let shown = path.display();
        let mut f = opts
            .open(path)
            .map_err(|e| io_with(e, format!("cannot create keyring {shown}")))?;
        let written = f
            .write_all(self.to_text().as_bytes())
            .and_then(|()| f.sync_all());
        if let Err(e) = written {
            drop(f);
            let _ = std::fs::remove_file(path);
            return Err(io_with(e, format!("cannot write keyring {shown}")));
        }
        Ok(())
    }

    /// Replaces an existing keyring file atomically (temporary file with mode 0600, then rename).
    ///
    /// # Errors
    /// [`Error::Keyring`] if the new file cannot be written or renamed into place.
    pub fn replace(&self, path: &Path) -> Result<()> {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tmp = dir.join(format!(
            ".{}.tmp-{:08x}",
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            rand::random::<u32>()
        ));
        self.create(&tmp)?;
        std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::keyring(format!("cannot replace keyring {}: {e}", path.display()))
        })
    }

    /// A keyring that wraps with the primary key and unwraps with any key of this file.
    ///
    /// # Errors
    /// [`Error::Keyring`] if a key is unusable (cannot happen for a parsed file).
    pub fn into_keyring(self) -> Result<LocalKeyring> {
        let conv = |k: NamedKey| RawAesKeyring::new(k.namespace, k.name, k.key);
        Ok(LocalKeyring {
            primary: conv(self.primary)?,
            others: self.others.into_iter().map(conv).collect::<Result<_>>()?,
        })
    }
}

/// Opens a keyring file for reading and checks what was opened (see the module docs).
#[cfg(unix)]
fn open_key_file(path: &Path) -> Result<(File, std::fs::Metadata)> {
    use rustix::fs::{Mode, OFlags};
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let shown = path.display();
    // O_NOFOLLOW: a symlink as the last component fails (ELOOP) instead of being followed.
    // O_NONBLOCK: opening a FIFO or a device returns at once; the type check below refuses it.
    let flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let fd = rustix::fs::open(path, flags, Mode::empty()).map_err(|e| {
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
            Error::keyring(format!(
                "keyring {shown} is a symbolic link; s3crypt does not follow links to key files: \
                 pass the path of the file itself"
            ))
        } else {
            Error::keyring(format!(
                "cannot open keyring {shown}: {}",
                std::io::Error::from(e)
            ))
        }
    })?;
    let f = File::from(fd);
    // fstat of the opened file: what is checked is what will be read.
    let meta = f
        .metadata()
        .map_err(|e| Error::keyring(format!("cannot read keyring {shown}: {e}")))?;
    let ft = meta.file_type();
    if !ft.is_file() {
        let kind = if ft.is_dir() {
            "a directory"
        } else if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_socket() {
            "a socket"
        } else if ft.is_char_device() || ft.is_block_device() {
            "a device"
        } else {
            "not a regular file"
        };
        return Err(Error::keyring(format!(
            "keyring {shown} is {kind}; a keyring must be a regular file"
        )));
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(Error::keyring(format!(
            "keyring {shown} belongs to another user (uid {}; s3crypt runs as uid {me}): \
             s3crypt reads only key files of the user running it; to take it over, run: \
             chown {me} {shown} && chmod 600 {shown}",
            meta.uid()
        )));
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::keyring(format!(
            "keyring {shown} is accessible by group or others (mode {mode:o}); run: chmod 600 {shown}"
        )));
    }
    Ok((f, meta))
}

/// Opens a keyring file for reading (no ownership or permission bits to check off Unix).
#[cfg(not(unix))]
fn open_key_file(path: &Path) -> Result<(File, std::fs::Metadata)> {
    let shown = path.display();
    let f = File::open(path)
        .map_err(|e| Error::keyring(format!("cannot open keyring {shown}: {e}")))?;
    let meta = f
        .metadata()
        .map_err(|e| Error::keyring(format!("cannot read keyring {shown}: {e}")))?;
    if !meta.is_file() {
        return Err(Error::keyring(format!(
            "keyring {shown} is not a regular file"
        )));
    }
    Ok((f, meta))
}

/// A generated key name: `key-YYYYMMDD-xxxxxxxx` (UTC date, random suffix).
pub fn generated_key_name() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0) as i64;
    // Civil-from-days (Howard Hinnant's algorithm), proleptic Gregorian calendar.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("key-{y:04}{m:02}{d:02}-{:08x}", rand::random::<u32>())
}

/// The keys of one keyring file: the primary wraps, every key unwraps.
#[derive(Debug)]
pub struct LocalKeyring {
    primary: RawAesKeyring,
    others: Vec<RawAesKeyring>,
}

impl LocalKeyring {
    /// Loads a keyring file (see [`KeyringFile::load`]).
    ///
    /// # Errors
    /// As [`KeyringFile::load`].
    pub fn load(path: &Path) -> Result<Self> {
        KeyringFile::load(path)?.into_keyring()
    }

    /// The primary key's namespace and name.
    pub fn primary_id(&self) -> (&str, &str) {
        (self.primary.namespace(), self.primary.name())
    }
}

impl Keyring for LocalKeyring {
    /// Local computation only (the file was read when the keyring was loaded).
    fn may_block(&self) -> bool {
        false
    }

    fn on_encrypt(&self, materials: &mut EncryptionMaterials) -> Result<()> {
        self.primary.on_encrypt(materials)
    }

    fn on_decrypt(
        &self,
        materials: &mut DecryptionMaterials,
        edks: &[EncryptedDataKey],
    ) -> Result<()> {
        self.primary.on_decrypt(materials, edks)?;
        for k in &self.others {
            k.on_decrypt(materials, edks)?;
        }
        Ok(())
    }
}

/// An I/O error that says what was being done (its kind kept, for exit codes and retries).
fn io_with(e: std::io::Error, what: String) -> Error {
    Error::Io(std::io::Error::new(e.kind(), format!("{what}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn nk(name: &str, b: u8) -> NamedKey {
        NamedKey {
            namespace: "ns".into(),
            name: name.into(),
            key: WrappingKey::from_bytes([b; 32]),
        }
    }

    #[test]
    fn round_trip_with_rotation() {
        let mut kf = KeyringFile::new(nk("a", 1)).unwrap();
        kf.rotate(nk("b", 2)).unwrap();
        let text = kf.to_text();
        let back = KeyringFile::parse(&text).unwrap();
        assert_eq!(back.primary().name, "b");
        let names: Vec<_> = back.keys().map(|k| k.name.clone()).collect();
        assert_eq!(names, ["b", "a"]);
        assert_eq!(back.keys().nth(1).unwrap().key.as_bytes(), &[1; 32]);
        assert!(kf.rotate(nk("a", 3)).is_err(), "duplicate name");
    }

    #[test]
    fn errors_name_the_line_but_not_the_key() {
        let secret = base64::engine::general_purpose::STANDARD.encode([7u8; 31]);
        let text = format!("{MAGIC}\nprimary ns n {secret}\n");
        let e = KeyringFile::parse(&text).unwrap_err().to_string();
        assert!(e.contains("line 2") && !e.contains(&secret), "{e}");
        for bad in [
            "",
            "hello\n",
            &format!("{MAGIC}\n"),
            &format!("{MAGIC}\nkey a b c d e\n"),
            &format!(
                "{MAGIC}\nprimary aws-kms n {}\n",
                base64::engine::general_purpose::STANDARD.encode([0u8; 32])
            ),
        ] {
            assert!(
                matches!(KeyringFile::parse(bad), Err(Error::Keyring(_))),
                "{bad:?}"
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn created_0600_and_refused_when_readable_by_others() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        KeyringFile::new(nk("a", 1)).unwrap().create(&p).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(
            KeyringFile::create(&KeyringFile::new(nk("a", 1)).unwrap(), &p).is_err(),
            "no overwrite"
        );
        LocalKeyring::load(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = LocalKeyring::load(&p).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
    }

    /// A keyring file with mode 0600 in a fresh directory.
    #[cfg(unix)]
    fn key_file() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        KeyringFile::new(nk("a", 1)).unwrap().create(&p).unwrap();
        (dir, p)
    }

    #[cfg(unix)]
    #[test]
    fn key_file_owned_by_another_user_is_refused() {
        let (_dir, p) = key_file();
        if rustix::process::geteuid().as_raw() != 0 {
            eprintln!("note: not root, cannot give a file to another user; skipping");
            return;
        }
        // nobody's uid: a 0600 file of another user, which root could read but must not trust.
        std::os::unix::fs::chown(&p, Some(65534), None).unwrap();
        let e = LocalKeyring::load(&p).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, Error::Keyring(_)), "{msg}");
        assert!(
            msg.contains("belongs to another user (uid 65534")
                && msg.contains(&p.display().to_string())
                && msg.contains("chown 0 "),
            "{msg}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn symlinked_key_file_is_refused() {
        let (dir, p) = key_file();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        let msg = LocalKeyring::load(&link).unwrap_err().to_string();
        assert!(
            msg.contains("is a symbolic link") && msg.contains(&link.display().to_string()),
            "{msg}"
        );
        // A dangling link is reported as a link too, not as a missing file.
        std::fs::remove_file(&p).unwrap();
        let msg = LocalKeyring::load(&link).unwrap_err().to_string();
        assert!(msg.contains("is a symbolic link"), "{msg}");
    }

    #[cfg(unix)]
    #[test]
    fn fifo_key_file_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        // Opening a FIFO with no writer blocks unless O_NONBLOCK: wait for the answer with a
        // deadline rather than hanging the test run.
        let (tx, rx) = std::sync::mpsc::channel();
        let path = fifo.clone();
        std::thread::spawn(move || {
            let _ = tx.send(
                LocalKeyring::load(&path)
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
            );
        });
        let r = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("loading a FIFO as a keyring blocked");
        let msg = r.unwrap_err();
        assert!(
            msg.contains("is a FIFO") && msg.contains("regular file"),
            "{msg}"
        );
        let msg = LocalKeyring::load(dir.path()).unwrap_err().to_string();
        assert!(msg.contains("is a directory"), "{msg}");
    }

    #[test]
    fn generated_names_look_right() {
        let n = generated_key_name();
        assert!(
            n.starts_with("key-20") && n.len() == "key-20261124-0123abcd".len(),
            "{n}"
        );
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,200}") {
            let _ = KeyringFile::parse(&s);
            let _ = KeyringFile::parse(&format!("{MAGIC}\n{s}"));
        }
    }
}
