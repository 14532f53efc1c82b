//! `s3://bucket/key` URLs.

use std::path::Path;

use crate::exit::Failure;

/// Whether a path argument is an `s3://` URL.
pub(crate) fn is_s3_url(p: Option<&Path>) -> bool {
    p.and_then(Path::to_str)
        .is_some_and(|s| s.starts_with("s3://"))
}

/// Splits `s3://bucket/key` (the key may be empty).
pub(crate) fn parse_url(s: &str) -> Result<(String, String), Failure> {
    let rest = s
        .strip_prefix("s3://")
        .ok_or_else(|| Failure::Usage(format!("{s:?} is not an s3://bucket/key URL")))?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(Failure::Usage(format!("{s:?} has no bucket")));
    }
    Ok((bucket.to_owned(), key.to_owned()))
}

/// Splits `s3://bucket/key`, which must name an object.
pub(crate) fn object_url(s: &str) -> Result<(String, String), Failure> {
    let (b, k) = parse_url(s)?;
    if k.is_empty() {
        return Err(Failure::Usage(format!("{s:?} names no object key")));
    }
    Ok((b, k))
}

/// `p` as a key prefix that ends at a `/` (empty stays empty).
pub(crate) fn prefix_of(p: &str) -> String {
    if p.is_empty() || p.ends_with('/') {
        p.to_owned()
    } else {
        format!("{p}/")
    }
}

/// The last path segment of an object key (`a/b/c.txt` → `c.txt`), as `aws s3 cp` names a
/// download; `None` for a key ending in `/`, or whose last segment is `.` or `..` (it would name
/// a directory, or escape it).
pub(crate) fn key_base_name(key: &str) -> Option<&str> {
    let base = key.rsplit('/').next().unwrap_or(key);
    match base {
        "" | "." | ".." => None,
        b => Some(b),
    }
}

/// The object key an upload or copy of one object writes, like `aws s3 cp`: a destination that
/// names only a bucket (`s3://bucket`) or ends in `/` (`s3://bucket/dir/`) takes the source's
/// base name (`source_name`: a file's name, or the source key's last segment); any other key is
/// used as given.
///
/// # Errors
/// [`Failure::Usage`] if the destination needs a name and the source has none (stdin).
pub(crate) fn destination_key(
    dst: &str,
    source_name: Option<&str>,
) -> Result<(String, String), Failure> {
    let (bucket, key) = parse_url(dst)?;
    if !key.is_empty() && !key.ends_with('/') {
        return Ok((bucket, key));
    }
    match source_name {
        Some(name) => Ok((bucket, format!("{key}{name}"))),
        None => Err(Failure::Usage(format!(
            "{dst:?} names no object and the source has no name to take: give the object key \
             (s3://{bucket}/{key}NAME)"
        ))),
    }
}

/// Where a download of `key` is written, like `aws s3 cp`: into a directory (one that exists,
/// or a path ending in `/`) under the key's base name; any other path as given. Returns the path
/// and whether it names a directory that does not exist yet (the caller creates it).
///
/// # Errors
/// [`Failure::Usage`] if the key has no usable base name.
pub(crate) fn download_target(
    dst: &Path,
    key: &str,
) -> Result<(std::path::PathBuf, bool), Failure> {
    let as_dir = dst.as_os_str().as_encoded_bytes().ends_with(b"/");
    let is_dir = dst.is_dir();
    if !as_dir && !is_dir {
        return Ok((dst.to_path_buf(), false));
    }
    let Some(name) = key_base_name(key) else {
        return Err(Failure::Usage(format!(
            "{} is a directory and the key {key:?} has no file name to take: give the file's path",
            dst.display()
        )));
    };
    Ok((dst.join(name), as_dir && !is_dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (destination, source name, expected bucket and key).
    type UploadCase<'a> = (&'a str, Option<&'a str>, Option<(&'a str, &'a str)>);
    /// (destination, key, expected path and whether to create it).
    type DownloadCase<'a> = (
        std::path::PathBuf,
        &'a str,
        Option<(std::path::PathBuf, bool)>,
    );

    /// `aws s3 cp` documents these (its "cp" examples): a destination that is a bucket or ends
    /// in `/` takes the source's base name.
    #[test]
    fn upload_destinations_follow_aws_s3_cp() {
        let cases: &[UploadCase<'_>] = &[
            (
                "s3://demo/hello.txt",
                Some("a.txt"),
                Some(("demo", "hello.txt")),
            ),
            ("s3://demo/dir/", Some("a.txt"), Some(("demo", "dir/a.txt"))),
            ("s3://demo/", Some("a.txt"), Some(("demo", "a.txt"))),
            ("s3://demo", Some("a.txt"), Some(("demo", "a.txt"))),
            ("s3://demo/a/b/", Some("x"), Some(("demo", "a/b/x"))),
            ("s3://demo/dir", Some("a.txt"), Some(("demo", "dir"))),
            ("s3://demo/dir/", None, None),
            ("s3://demo", None, None),
            ("s3://demo/k", None, Some(("demo", "k"))),
        ];
        for (dst, name, want) in cases {
            let got = destination_key(dst, *name).ok();
            let want = want.map(|(b, k)| (b.to_string(), k.to_string()));
            assert_eq!(got, want, "{dst} from {name:?}");
        }
    }

    #[test]
    fn download_targets_follow_aws_s3_cp() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        let file = dir.join("f");
        std::fs::write(&file, b"").unwrap();
        let slash = |p: &Path| std::path::PathBuf::from(format!("{}/", p.display()));
        let cases: Vec<DownloadCase<'_>> = vec![
            (
                dir.to_path_buf(),
                "a/b/c.txt",
                Some((dir.join("c.txt"), false)),
            ),
            (slash(dir), "c.txt", Some((dir.join("c.txt"), false))),
            (file.clone(), "c.txt", Some((file.clone(), false))),
            (
                dir.join("new.txt"),
                "c.txt",
                Some((dir.join("new.txt"), false)),
            ),
            (
                slash(&dir.join("newdir")),
                "x/c.txt",
                Some((dir.join("newdir").join("c.txt"), true)),
            ),
            (dir.to_path_buf(), "a/", None),
            (dir.to_path_buf(), "a/..", None),
            (dir.to_path_buf(), ".", None),
        ];
        for (dst, key, want) in cases {
            let got = download_target(&dst, key).ok();
            assert_eq!(got, want, "{} for {key}", dst.display());
        }
    }

    #[test]
    fn base_names_never_escape() {
        assert_eq!(key_base_name("a/b"), Some("b"));
        assert_eq!(key_base_name("b"), Some("b"));
        assert_eq!(key_base_name("a/"), None);
        assert_eq!(key_base_name(".."), None);
        assert_eq!(key_base_name("x/."), None);
        assert_eq!(key_base_name("..."), Some("..."));
    }
}
