//! Temporary output files (`.s3crypt-XXXXXX.partial`), and sweeping up those that a killed
//! s3crypt left behind.
//!
//! Output is written under a temporary name in its destination directory and renamed into place
//! once it verified ([`crate::streams::Output`], [`crate::tree::DestDir`]). A failure removes the
//! temporary file, but a process killed with SIGKILL (or a crash, or a power cut) cannot. So
//! whenever s3crypt writes output into a directory it first removes the leftovers there that are,
//! all at once:
//!
//! * named exactly as s3crypt names them: `.s3crypt-`, then 6 or 16 ASCII letters and digits,
//!   then `.partial`;
//! * regular files (a symbolic link is neither followed nor removed) owned by the effective user;
//! * last modified more than [`STALE_AFTER`] ago;
//! * not locked: a running s3crypt holds an exclusive `flock` on its temporary file ([`hold`]),
//!   which the kernel drops when the process dies, so a slow transfer's file is never taken away.
//!
//! Sweeping is best effort: whatever cannot be examined or removed is left alone, silently.
//!
//! (`O_TMPFILE` and `linkat` would leave nothing behind at all, but linking needs `/proc` or
//! `CAP_DAC_READ_SEARCH`, not every file system has `O_TMPFILE`, and a link cannot replace the
//! target in one step, so a named file would still be needed for the rename: the sweep is simpler
//! and works everywhere.)

use std::fs::File;
use std::os::fd::AsFd;
use std::time::{Duration, SystemTime};

use rustix::fs::{AtFlags, FlockOperation, Mode, OFlags};

/// Temporary output files start with this.
pub(crate) const PREFIX: &str = ".s3crypt-";
/// Temporary output files end with this.
pub(crate) const SUFFIX: &str = ".partial";
/// A leftover temporary file older than this (by modification time) is swept.
pub(crate) const STALE_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// Whether `name` is exactly the name of an s3crypt temporary file: [`PREFIX`], 6 (single
/// outputs) or 16 (recursive get) ASCII letters and digits, [`SUFFIX`].
pub(crate) fn is_partial_name(name: &[u8]) -> bool {
    let Some(middle) = name
        .strip_prefix(PREFIX.as_bytes())
        .and_then(|rest| rest.strip_suffix(SUFFIX.as_bytes()))
    else {
        return false;
    };
    matches!(middle.len(), 6 | 16) && middle.iter().all(u8::is_ascii_alphanumeric)
}

/// Marks `file` as in use by this process (an exclusive `flock`, dropped when the file is closed
/// or the process dies), so that no concurrent sweep removes it. Advisory and best effort.
pub(crate) fn hold(file: &File) {
    let _ = rustix::fs::flock(file, FlockOperation::NonBlockingLockExclusive);
}

/// Removes the stale temporary files in the directory `dir` (see the module docs); returns how
/// many.
pub(crate) fn sweep(dir: impl AsFd) -> usize {
    let dir = dir.as_fd();
    let Ok(entries) = rustix::fs::Dir::read_from(dir) else {
        return 0;
    };
    let me = rustix::process::geteuid().as_raw();
    let now = SystemTime::now();
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if is_partial_name(name.to_bytes()) && remove_if_stale(dir, name, me, now) {
            removed += 1;
        }
    }
    removed
}

/// Removes `name` in `dir` if it is a stale temporary file of user `me`.
fn remove_if_stale(
    dir: std::os::fd::BorrowedFd<'_>,
    name: &std::ffi::CStr,
    me: u32,
    now: SystemTime,
) -> bool {
    use std::os::unix::fs::MetadataExt;
    // Opened, not followed: a symlink fails here (ELOOP), a FIFO opens at once and is skipped.
    let flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let Ok(fd) = rustix::fs::openat(dir, name, flags, Mode::empty()) else {
        return false;
    };
    let file = File::from(fd);
    let Ok(meta) = file.metadata() else {
        return false;
    };
    let stale = meta
        .modified()
        .ok()
        .and_then(|m| now.duration_since(m).ok())
        .is_some_and(|age| age > STALE_AFTER);
    if !meta.is_file() || meta.uid() != me || !stale {
        return false;
    }
    // Locked: a running s3crypt is still writing it.
    if rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
        return false;
    }
    // The name must still lead to the file examined (not one renamed over it meanwhile).
    let same = match (
        rustix::fs::fstat(&file),
        rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW),
    ) {
        (Ok(a), Ok(b)) => (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino),
        _ => false,
    };
    same && rustix::fs::unlinkat(dir, name, AtFlags::empty()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_exactly() {
        for ok in [
            ".s3crypt-AbC123.partial",
            ".s3crypt-0123456789abcdef.partial",
        ] {
            assert!(is_partial_name(ok.as_bytes()), "{ok}");
        }
        for bad in [
            ".s3crypt-AbC12.partial",
            ".s3crypt-AbC1234.partial",
            ".s3crypt-AbC-23.partial",
            ".s3crypt-AbC123.partial.bak",
            "s3crypt-AbC123.partial",
            ".s3crypt-AbC123.part",
            "x.partial",
            ".s3crypt-.partial",
        ] {
            assert!(!is_partial_name(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn stale_partials_left_by_a_killed_run_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        let old = SystemTime::now() - STALE_AFTER - Duration::from_secs(3600);
        let make = |n: &str, mtime: SystemTime| {
            let f = File::create(p(n)).unwrap();
            f.set_modified(mtime).unwrap();
            f
        };
        // Left by killed runs: swept.
        make(".s3crypt-AbC123.partial", old);
        make(".s3crypt-0123456789abcdef.partial", old);
        // Kept: fresh; still being written (locked by a live process); other names.
        make(".s3crypt-Fresh1.partial", SystemTime::now());
        let live = make(".s3crypt-Live12.partial", old);
        hold(&live);
        for n in [
            ".s3crypt-AbC12.partial",
            ".s3crypt-AbC123.partial.bak",
            "s3crypt-AbC123.partial",
            "report.partial",
        ] {
            make(n, old);
        }
        // Kept: a symlink (and what it points to), a directory.
        make("target", old);
        std::os::unix::fs::symlink(p("target"), p(".s3crypt-LinkAB.partial")).unwrap();
        std::fs::create_dir(p(".s3crypt-DirABC.partial")).unwrap();
        // Kept: another user's file (needs root to make one).
        let root = rustix::process::geteuid().as_raw() == 0;
        if root {
            make(".s3crypt-NobodY.partial", old);
            std::os::unix::fs::chown(p(".s3crypt-NobodY.partial"), Some(65534), None).unwrap();
        } else {
            eprintln!("note: not root, cannot give a file to another user; skipping that part");
        }

        let d = File::open(dir.path()).unwrap();
        assert_eq!(sweep(&d), 2);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        let mut want = vec![
            ".s3crypt-AbC12.partial",
            ".s3crypt-AbC123.partial.bak",
            ".s3crypt-DirABC.partial",
            ".s3crypt-Fresh1.partial",
            ".s3crypt-LinkAB.partial",
            ".s3crypt-Live12.partial",
            "report.partial",
            "s3crypt-AbC123.partial",
            "target",
        ];
        if root {
            want.push(".s3crypt-NobodY.partial");
        }
        want.sort_unstable();
        assert_eq!(left, want);
        // Once the live run is gone (its lock with it), its file is a leftover too.
        drop(live);
        assert_eq!(sweep(&d), 1);
        assert!(!p(".s3crypt-Live12.partial").exists());
    }
}
