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

/// Creates the directories from `root` down to `rel`'s parent, refusing any existing component
/// that is not a real directory (a symlink could point outside `root`).
pub fn prepare_parent(root: &Path, rel: &Path) -> Result<PathBuf, String> {
    let mut dir = root.to_path_buf();
    if let Some(parent) = rel.parent() {
        for c in parent.components() {
            dir.push(c);
            match std::fs::symlink_metadata(&dir) {
                Ok(m) if m.file_type().is_dir() => {}
                Ok(_) => {
                    return Err(format!(
                        "{} exists and is not a directory (or is a symlink)",
                        dir.display()
                    ))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    std::fs::create_dir(&dir)
                        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                }
                Err(e) => return Err(format!("cannot inspect {}: {e}", dir.display())),
            }
        }
    }
    let target = root.join(rel);
    if std::fs::symlink_metadata(&target).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(format!(
            "{} is a symlink; refusing to write through it",
            target.display()
        ));
    }
    Ok(target)
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

    #[cfg(unix)]
    #[test]
    fn symlinked_directories_are_not_followed() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("link")).unwrap();
        assert!(prepare_parent(root.path(), Path::new("link/x")).is_err());
        assert!(prepare_parent(root.path(), Path::new("real/deeper/x")).is_ok());
        assert!(root.path().join("real/deeper").is_dir());
    }
}
