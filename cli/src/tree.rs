//! Mapping between object keys and files for recursive transfers, refusing keys that would
//! escape the destination directory.

use std::path::{Component, Path, PathBuf};

/// The path (relative to the destination directory) an object key maps to, below `prefix`.
///
/// Refused, with a reason: keys not under the prefix, empty names, absolute paths, `.` or `..`
/// segments, empty segments (`a//b`), backslashes, NUL and other control characters. Keys that
/// end in `/` are directory markers, not files (`Ok(None)`).
pub(crate) fn relative_path(key: &str, prefix: &str) -> Result<Option<PathBuf>, &'static str> {
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

/// The files a run wrote, by (device, inode), with the object each holds.
type Written = std::sync::Arc<std::sync::Mutex<std::collections::HashMap<(u64, u64), String>>>;

/// The destination directory of a recursive get, used through directory handles only: every
/// component below it is opened with `O_NOFOLLOW` and files are created and renamed relative to
/// their parent's handle, so a symlink placed (or swapped in) anywhere below the root is never
/// followed, whatever happens between the check and the write.
///
/// It also remembers the files it wrote (device and inode) and which key each came from: on a file
/// system that ignores case or Unicode normalization (macOS, Windows, case-folding Linux
/// directories) two keys such as `Report.pdf` and `report.pdf` name one file, and the second
/// rename would silently replace the first object's plaintext. [`DirFile::commit`] refuses a
/// rename whose target already is a file of this run, whatever the file system's folding rules.
pub(crate) struct DestDir {
    root: std::os::fd::OwnedFd,
    written: Written,
    fsync: bool,
    /// `--mode`: the files' permissions (default 0600).
    mode: Option<u32>,
    /// Directories (device, inode) already swept of leftover temporary files this run (see
    /// [`crate::partials`]): each is swept once, before the first file is created in it.
    swept: std::sync::Mutex<std::collections::HashSet<(u64, u64)>>,
}

/// A file being written under a temporary name in its parent directory; renamed into place by
/// [`DirFile::commit`], removed if dropped uncommitted.
pub(crate) struct DirFile {
    dir: std::os::fd::OwnedFd,
    tmp: std::ffi::OsString,
    name: std::ffi::OsString,
    file: std::fs::File,
    committed: bool,
    label: String,
    written: Written,
    fsync: bool,
    /// Removed if the process exits on a signal (see [`crate::signals`]).
    _tracked: crate::signals::Tracked,
}

fn dir_flags() -> rustix::fs::OFlags {
    use rustix::fs::OFlags;
    OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC
}

impl DestDir {
    /// Opens (creating it if needed) the destination root. The root itself is the caller's choice
    /// and may be a symlink. With `fsync`, every file is flushed to disk before it is renamed
    /// into place, and its directory after.
    pub(crate) fn open(root: &Path, fsync: bool, mode: Option<u32>) -> std::io::Result<Self> {
        std::fs::create_dir_all(root)?;
        let fd = rustix::fs::open(
            root,
            rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )?;
        Ok(Self {
            root: fd,
            written: Default::default(),
            fsync,
            mode,
            swept: Default::default(),
        })
    }

    /// Creates `rel` (a path from [`relative_path`]) under a temporary name; `label` names what
    /// it holds (the object) in a collision message.
    pub(crate) fn create(&self, rel: &Path, label: &str) -> Result<DirFile, String> {
        use rustix::fs::{Mode, OFlags};
        let mut dir = self.root.try_clone().map_err(|e| e.to_string())?;
        let mut shown = PathBuf::new();
        if let Some(parent) = rel.parent() {
            for c in parent.components() {
                let name = c.as_os_str();
                shown.push(name);
                match rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(0o755)) {
                    // A new directory's entry must be on disk too for --fsync to hold.
                    Ok(()) if self.fsync => rustix::fs::fsync(&dir)
                        .map_err(|e| format!("cannot flush {}: {e}", shown.display()))?,
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
        self.sweep_once(&dir);
        let seed =
            std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), rel);
        for attempt in 0..16u64 {
            let tmp = std::ffi::OsString::from(format!(
                "{}{:016x}{}",
                crate::partials::PREFIX,
                seed.wrapping_add(attempt),
                crate::partials::SUFFIX
            ));
            let flags =
                OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            match rustix::fs::openat(&dir, &tmp, flags, Mode::from_raw_mode(0o600)) {
                Ok(fd) => {
                    // Ours is in use: no other run's sweep takes it.
                    let file = std::fs::File::from(fd);
                    crate::partials::hold(&file);
                    if let Some(m) = self.mode {
                        rustix::fs::fchmod(&file, Mode::from_raw_mode(m)).map_err(|e| {
                            format!("cannot set the mode of {}: {e}", rel.display())
                        })?;
                    }
                    // By the directory's descriptor: whatever happens to the path meanwhile.
                    let path = PathBuf::from(format!(
                        "/proc/self/fd/{}",
                        std::os::fd::AsRawFd::as_raw_fd(&dir)
                    ))
                    .join(&tmp);
                    return Ok(DirFile {
                        _tracked: crate::signals::track(path),
                        dir,
                        tmp,
                        name,
                        file,
                        committed: false,
                        label: label.to_owned(),
                        written: std::sync::Arc::clone(&self.written),
                        fsync: self.fsync,
                    });
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

impl DestDir {
    /// Sweeps `dir` of leftover temporary files, the first time this run creates a file in it.
    fn sweep_once(&self, dir: &std::os::fd::OwnedFd) {
        // The field types differ between platforms (u64 here, i32/u64 on macOS).
        #[allow(clippy::unnecessary_cast)]
        let Ok(id) = rustix::fs::fstat(dir).map(|st| (st.st_dev as u64, st.st_ino as u64)) else {
            return;
        };
        let first = self
            .swept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id);
        if first {
            crate::partials::sweep(dir);
        }
    }
}

impl std::io::Write for DirFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file
            .write(&buf[..buf.len().min(crate::streams::WRITE_CHUNK)])
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl crate::streams::Positional for DirFile {
    fn positional(&self) -> Option<&std::fs::File> {
        Some(&self.file)
    }

    fn early_writeback(&self) -> bool {
        self.fsync
    }
}

impl DirFile {
    /// Renames into place (replacing whatever was there, a symlink included, without following
    /// it; flushed to disk first, and the directory after, when the destination asked for it),
    /// unless the name already is a file this run wrote for another key
    /// (the file system folded the two names together): then [`std::io::ErrorKind::AlreadyExists`]
    /// naming that key, and the temporary file is removed.
    pub(crate) fn commit(mut self) -> std::io::Result<()> {
        let say =
            |what: &str, e: std::io::Error| std::io::Error::new(e.kind(), format!("{what}: {e}"));
        if self.fsync {
            self.file
                .sync_all()
                .map_err(|e| say("cannot flush it to disk", e))?;
        }
        // The field types differ between platforms (u64 here, i32/u64 on macOS).
        #[allow(clippy::unnecessary_cast)]
        let id = |st: &rustix::fs::Stat| (st.st_dev as u64, st.st_ino as u64);
        let mine = id(&rustix::fs::fstat(&self.file)?);
        // Check and rename under one lock, so that two colliding objects finishing at the same
        // time cannot both pass the check.
        let mut written = self
            .written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Ok(st) =
            rustix::fs::statat(&self.dir, &self.name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
        {
            if let Some(first) = written.get(&id(&st)) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    format!(
                        "it names the same file as {first}, already written: this file system \
                         does not distinguish the two names (case or Unicode normalization)"
                    ),
                ));
            }
        }
        rustix::fs::renameat(&self.dir, &self.tmp, &self.dir, &self.name)
            .map_err(|e| say("cannot rename it into place", e.into()))?;
        self.committed = true;
        written.insert(mine, std::mem::take(&mut self.label));
        drop(written);
        if self.fsync {
            rustix::fs::fsync(&self.dir).map_err(|e| {
                say(
                    "it is in place, but flushing its directory failed",
                    e.into(),
                )
            })?;
        }
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
pub(crate) fn files(root: &Path) -> std::io::Result<Vec<(PathBuf, String)>> {
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
    fn a_name_written_for_one_key_is_not_replaced_by_another() {
        use std::io::Write;
        // On a case-insensitive file system "R.txt" and "r.txt" resolve to one file; here (a
        // case-sensitive Linux file system) the same name twice stands in for that.
        let root = tempfile::tempdir().unwrap();
        let d = DestDir::open(root.path(), false, None).unwrap();
        let mut first = d.create(Path::new("dir/R.txt"), "s3://b/R.txt").unwrap();
        let mut second = d.create(Path::new("dir/R.txt"), "s3://b/r.txt").unwrap();
        first.write_all(b"first").unwrap();
        second.write_all(b"second").unwrap();
        first.commit().unwrap();
        let e = second.commit().unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        assert!(e.to_string().contains("s3://b/R.txt"), "{e}");
        assert_eq!(
            std::fs::read(root.path().join("dir/R.txt")).unwrap(),
            b"first"
        );
        assert_eq!(
            std::fs::read_dir(root.path().join("dir")).unwrap().count(),
            1
        );
        // A file that was there before the run is replaced as usual.
        std::fs::write(root.path().join("old"), b"old").unwrap();
        let mut f = d.create(Path::new("old"), "s3://b/old").unwrap();
        f.write_all(b"new").unwrap();
        f.commit().unwrap();
        assert_eq!(std::fs::read(root.path().join("old")).unwrap(), b"new");
    }

    #[test]
    fn symlinks_below_the_root_are_never_followed() {
        use std::io::Write;
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("link")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("f"), root.path().join("file-link"))
            .unwrap();
        let d = DestDir::open(root.path(), false, None).unwrap();
        assert!(d.create(Path::new("link/x"), "l").is_err());
        // Two writers creating the same new directory at once both succeed.
        let a = d.create(Path::new("real/deeper/x"), "x").unwrap();
        let b = d.create(Path::new("real/deeper/y"), "y").unwrap();
        let mut f = d.create(Path::new("file-link"), "f").unwrap();
        f.write_all(b"data").unwrap();
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
