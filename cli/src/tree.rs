//! Mapping between object keys and files for recursive transfers, refusing keys that would
//! escape the destination directory.

use std::path::{Component, Path, PathBuf};

/// The path (relative to the destination directory) an object key maps to, below `prefix`.
///
/// Refused, with a reason: keys not under the prefix, empty names, absolute paths, `.` or `..`
/// segments, empty segments (`a//b`), backslashes, NUL and other control characters. Keys that
/// end in `/` are directory markers, not files (`Ok(None)`).
pub fn relative_path(key: &str, prefix: &str) -> Result<Option<PathBuf>, &'static str> {
    let rel = key.strip_prefix(prefix).ok_or("not under the prefix")?;
    if rel.is_empty() || rel.ends_with('/') {
        return Ok(None);
    }
    if rel.starts_with('/') {
        return Err("absolute path");
    }
    if rel.contains('\\') {
        return Err("backslash in the key");
    }
    if rel.chars().any(char::is_control) {
        return Err("control character in the key");
    }
    let mut out = PathBuf::new();
    for seg in rel.split('/') {
        match seg {
            "" => return Err("empty path segment"),
            "." | ".." => return Err("'.' or '..' path segment"),
            s => out.push(s),
        }
    }
    // Belt and braces: nothing but plain names survived.
    if !out.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err("not a plain relative path");
    }
    Ok(Some(out))
}

/// How a file system compares names: whether it ignores case, and whether it ignores Unicode
/// normalization (`é` as one code point or as `e` plus a combining accent), as macOS's APFS,
/// Windows file systems and case-folding Linux directories do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameFolding {
    /// Names differing only in case are the same file.
    pub case: bool,
    /// Names differing only in Unicode normalization are the same file.
    pub unicode: bool,
}

impl NameFolding {
    /// Whether two different keys can name the same file.
    pub fn folds(self) -> bool {
        self.case || self.unicode
    }

    /// A form of `rel` that two paths share when this file system takes them for the same file
    /// (an approximation of the file systems' own folding: NFC, then lower case).
    pub fn key(self, rel: &Path) -> String {
        use unicode_normalization::UnicodeNormalization as _;
        let s = rel.to_string_lossy();
        let s: String = if self.unicode {
            s.nfc().collect()
        } else {
            s.into_owned()
        };
        if self.case {
            s.to_lowercase()
        } else {
            s
        }
    }
}

/// The destination directory of a recursive get, used through directory handles only: every
/// component below it is opened with `O_NOFOLLOW` and files are created and renamed relative to
/// their parent's handle, so a symlink placed (or swapped in) anywhere below the root is never
/// followed, whatever happens between the check and the write.
pub struct DestDir {
    root: std::os::fd::OwnedFd,
}

/// A file being written under a temporary name in its parent directory; renamed into place by
/// [`DirFile::commit`], removed if dropped uncommitted.
pub struct DirFile {
    dir: std::os::fd::OwnedFd,
    tmp: std::ffi::OsString,
    name: std::ffi::OsString,
    file: std::fs::File,
    committed: bool,
}

fn dir_flags() -> rustix::fs::OFlags {
    use rustix::fs::OFlags;
    OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC
}

impl DestDir {
    /// Opens (creating it if needed) the destination root. The root itself is the caller's choice
    /// and may be a symlink.
    pub fn open(root: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(root)?;
        let fd = rustix::fs::open(
            root,
            rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )?;
        Ok(Self { root: fd })
    }

    /// Probes how the file system of the root compares names, with a temporary file of a random
    /// name: does it answer to the name in upper case, or with its `é` decomposed? If the probe
    /// cannot be made, both are assumed (more keys refused as collisions, none overwritten).
    pub fn name_folding(&self) -> NameFolding {
        use rustix::fs::{AtFlags, Mode, OFlags};
        let seed = std::hash::BuildHasher::hash_one(
            &std::collections::hash_map::RandomState::new(),
            std::time::SystemTime::now(),
        );
        let name = format!(".s3crypt-probe-{seed:016x}-a\u{e9}");
        let flags =
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        if rustix::fs::openat(&self.root, &name, flags, Mode::from_raw_mode(0o600)).is_err() {
            return NameFolding {
                case: true,
                unicode: true,
            };
        }
        let answers =
            |other: &str| rustix::fs::statat(&self.root, other, AtFlags::SYMLINK_NOFOLLOW).is_ok();
        let folding = NameFolding {
            case: answers(&name.to_uppercase()),
            unicode: answers(&name.replace('\u{e9}', "e\u{301}")),
        };
        let _ = rustix::fs::unlinkat(&self.root, &name, AtFlags::empty());
        folding
    }

    /// Creates `rel` (a path from [`relative_path`]) under a temporary name.
    pub fn create(&self, rel: &Path) -> Result<DirFile, String> {
        use rustix::fs::{Mode, OFlags};
        let mut dir = self.root.try_clone().map_err(|e| e.to_string())?;
        let mut shown = PathBuf::new();
        if let Some(parent) = rel.parent() {
            for c in parent.components() {
                let name = c.as_os_str();
                shown.push(name);
                match rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(format!("cannot create {}: {e}", shown.display())),
                }
                dir =
                    rustix::fs::openat(&dir, name, dir_flags(), Mode::empty()).map_err(
                        |e| match e {
                            rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR => {
                                format!(
                                "{} is a symlink or not a directory; refusing to write through it",
                                shown.display()
                            )
                            }
                            e => format!("cannot open {}: {e}", shown.display()),
                        },
                    )?;
            }
        }
        let name = rel.file_name().ok_or("no file name")?.to_os_string();
        let seed =
            std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), rel);
        for attempt in 0..16u64 {
            let tmp = std::ffi::OsString::from(format!(
                ".s3crypt-{:016x}.partial",
                seed.wrapping_add(attempt)
            ));
            let flags =
                OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            match rustix::fs::openat(&dir, &tmp, flags, Mode::from_raw_mode(0o600)) {
                Ok(fd) => {
                    return Ok(DirFile {
                        dir,
                        tmp,
                        name,
                        file: std::fs::File::from(fd),
                        committed: false,
                    })
                }
                Err(rustix::io::Errno::EXIST) => continue,
                Err(e) => {
                    return Err(format!(
                        "cannot create a temporary file for {}: {e}",
                        rel.display()
                    ))
                }
            }
        }
        Err(format!(
            "cannot create a temporary file for {}",
            rel.display()
        ))
    }
}

impl DirFile {
    pub fn writer(&mut self) -> &mut std::fs::File {
        &mut self.file
    }

    /// Flushes to disk and renames into place (replacing whatever was there, a symlink included,
    /// without following it).
    pub fn commit(mut self) -> std::io::Result<()> {
        self.file.sync_all()?;
        rustix::fs::renameat(&self.dir, &self.tmp, &self.dir, &self.name)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for DirFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = rustix::fs::unlinkat(&self.dir, &self.tmp, rustix::fs::AtFlags::empty());
        }
    }
}

/// Every regular file below `root` (not following symlinks to directories), with its key suffix
/// (path components joined by `/`).
pub fn files(root: &Path) -> std::io::Result<Vec<(PathBuf, String)>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            let t = e.file_type()?;
            let path = e.path();
            if t.is_dir() {
                stack.push(path);
            } else if t.is_file() || (t.is_symlink() && path.metadata().is_ok_and(|m| m.is_file()))
            {
                let rel = path.strip_prefix(root).map_err(std::io::Error::other)?;
                let key: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_str().map(str::to_owned))
                    .collect::<Option<_>>()
                    .ok_or_else(|| {
                        std::io::Error::other(format!("{} is not UTF-8", path.display()))
                    })?;
                out.push((path, key.join("/")));
            }
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_keys_are_refused() {
        for key in [
            "p/../x",
            "p/a/../../x",
            "p//x",
            "p/a//b",
            "p/./x",
            "p/..",
            "p/a\\..\\x",
            "p/\u{0}x",
            "p/a\nb",
            "p//etc/passwd",
        ] {
            assert!(relative_path(key, "p/").is_err(), "{key:?} accepted");
        }
        assert!(relative_path("/etc/passwd", "").is_err());
        assert!(relative_path("q/x", "p/").is_err());
    }

    #[test]
    fn plain_keys_map_to_paths() {
        assert_eq!(
            relative_path("p/a/b.txt", "p/").unwrap(),
            Some(PathBuf::from("a/b.txt"))
        );
        assert_eq!(
            relative_path("p/a..b", "p/").unwrap(),
            Some(PathBuf::from("a..b"))
        );
        assert_eq!(relative_path("p/dir/", "p/").unwrap(), None);
        assert_eq!(relative_path("x", "").unwrap(), Some(PathBuf::from("x")));
    }

    #[test]
    fn name_folding_keys_and_probe() {
        let exact = NameFolding {
            case: false,
            unicode: false,
        };
        let both = NameFolding {
            case: true,
            unicode: true,
        };
        let (a, b, c) = (
            Path::new("Dir/R\u{e9}port.PDF"),
            Path::new("dir/re\u{301}port.pdf"),
            Path::new("dir/report.pdf"),
        );
        assert_ne!(exact.key(a), exact.key(b));
        assert_eq!(both.key(a), both.key(b));
        assert_ne!(both.key(a), both.key(c));
        let case_only = NameFolding {
            case: true,
            unicode: false,
        };
        assert_ne!(case_only.key(a), case_only.key(b));
        assert!(!exact.folds() && both.folds());
        // This test runs on a case-sensitive Linux file system; the probe leaves nothing behind.
        let root = tempfile::tempdir().unwrap();
        let d = DestDir::open(root.path()).unwrap();
        assert_eq!(d.name_folding(), exact);
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
    }

    #[test]
    fn symlinks_below_the_root_are_never_followed() {
        use std::io::Write;
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("link")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("f"), root.path().join("file-link"))
            .unwrap();
        let d = DestDir::open(root.path()).unwrap();
        assert!(d.create(Path::new("link/x")).is_err());
        // Two writers creating the same new directory at once both succeed.
        let a = d.create(Path::new("real/deeper/x")).unwrap();
        let b = d.create(Path::new("real/deeper/y")).unwrap();
        let mut f = d.create(Path::new("file-link")).unwrap();
        f.writer().write_all(b"data").unwrap();
        f.commit().unwrap();
        // The symlink was replaced, not written through.
        assert!(!outside.path().join("f").exists());
        assert_eq!(
            std::fs::read(root.path().join("file-link")).unwrap(),
            b"data"
        );
        drop((a, b));
        let left: Vec<_> = std::fs::read_dir(root.path().join("real/deeper"))
            .unwrap()
            .collect();
        assert!(left.is_empty(), "uncommitted temporary files are removed");
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }
}
