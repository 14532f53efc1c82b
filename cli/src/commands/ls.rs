//! `s3crypt ls` (buckets, or objects and prefixes as `aws s3 ls` shows them), `mb` and `rb`.

use std::io::Write;

use serde_json::json;

use crate::args::{BucketArgs, LsArgs};
use crate::batch::report_skipped;
use crate::exit::Failure;
use crate::resolve::metadata_client;
use crate::s3url::parse_url;
use crate::streams::human;

/// `2026-12-07 17:33:49` (UTC, whole seconds), as `aws s3 ls` lays dates out.
pub(crate) fn date(t: Option<std::time::SystemTime>) -> String {
    let Some(t) = t else {
        return " ".repeat(19);
    };
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let secs = i64::try_from(secs).unwrap_or(0);
    aws_smithy_types::DateTime::from_secs(secs)
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .map(|s| s.trim_end_matches('Z').replacen('T', " ", 1))
        .unwrap_or_else(|_| " ".repeat(19))
}

/// RFC 3339 (`2026-12-07T17:33:49Z`), for JSON.
fn rfc3339(t: Option<std::time::SystemTime>) -> Option<String> {
    t.and_then(|t| {
        aws_smithy_types::DateTime::from(t)
            .fmt(aws_smithy_types::date_time::Format::DateTime)
            .ok()
    })
}

fn size(n: u64, human_readable: bool) -> String {
    match human_readable {
        true => human(n),
        false => n.to_string(),
    }
}

fn out(stdout: &mut impl Write, line: &str) -> Result<(), Failure> {
    writeln!(stdout, "{line}").map_err(|_| Failure::BrokenPipe)
}

/// The buckets.
async fn buckets(a: &LsArgs) -> Result<(), Failure> {
    let c = metadata_client(&a.s3).await?;
    let mut stdout = std::io::stdout().lock();
    for b in c.list_buckets().await? {
        let line = match a.json {
            true => {
                crate::json_out::emit(
                    json!({"type": "bucket", "bucket": b.name, "created": rfc3339(b.created)}),
                );
                continue;
            }
            false => format!(
                "{} {}",
                date(b.created),
                s3crypt_core::text::printable(&b.name, usize::MAX)
            ),
        };
        out(&mut stdout, &line)?;
    }
    Ok(())
}

pub(crate) async fn run(a: LsArgs) -> Result<(), Failure> {
    let url = match a.url.as_deref() {
        None | Some("s3://") => return buckets(&a).await,
        Some(u) => u,
    };
    let (bucket, prefix) = parse_url(url)?;
    // Only metadata is read: no keyring needed.
    let c = metadata_client(&a.s3).await?;
    let mut stdout = std::io::stdout().lock();
    let mut list = c.list_objects().bucket(&bucket).prefix(&prefix);
    if !a.recursive {
        list = list.delimiter("/");
    }
    let mut pages = list.send()?;
    // Without -r, names are shown relative to the prefix's "directory", as aws s3 ls does.
    let shown_from = match a.recursive {
        true => 0,
        false => prefix.rfind('/').map_or(0, |i| i + 1),
    };
    let (mut count, mut total) = (0u64, 0u64);
    while let Some(page) = pages.next_page().await {
        let objects = page?;
        for p in pages.take_common_prefixes() {
            let name = p.get(shown_from..).unwrap_or(&p);
            let line = match a.json {
                true => {
                    crate::json_out::emit(json!({"type": "prefix", "bucket": bucket, "prefix": p}));
                    continue;
                }
                false => format!(
                    "{:>30} {}",
                    "PRE",
                    s3crypt_core::text::printable(name, usize::MAX)
                ),
            };
            out(&mut stdout, &line)?;
        }
        let infos = match a.plaintext_size {
            true => heads(&c, &bucket, &objects).await,
            false => Vec::new(),
        };
        for (i, o) in objects.iter().enumerate() {
            count += 1;
            total += o.size;
            let (plain, suite) = match infos.get(i) {
                Some(Some(Ok(info))) => (
                    info.plaintext_length,
                    Some(format!("0x{:04X}", info.suite.id())),
                ),
                Some(Some(Err(s3crypt::Error::NotEncrypted { .. }))) => {
                    (None, Some("not-s3crypt".to_owned()))
                }
                Some(_) => (None, Some("unknown".to_owned())),
                None => (None, None),
            };
            let name = o.key.get(shown_from..).unwrap_or(&o.key);
            // Keys are anyone's who can write to the bucket: escaped for the terminal; exact in
            // JSON (which escapes control characters itself).
            let line = if a.json {
                let mut v = json!({"type": "object", "bucket": bucket, "key": o.key,
                                   "stored_bytes": o.size, "last_modified": rfc3339(o.last_modified)});
                if a.plaintext_size {
                    v["plaintext_bytes"] = json!(plain);
                    v["suite"] = json!(suite);
                }
                crate::json_out::emit(v);
                continue;
            } else if a.plaintext_size {
                let p = plain.map_or_else(|| "-".to_owned(), |n| size(n, a.human_readable));
                format!(
                    "{} {:>10} {:>10}  {:<11}  {}",
                    date(o.last_modified),
                    size(o.size, a.human_readable),
                    p,
                    suite.unwrap_or_default(),
                    s3crypt_core::text::printable(name, usize::MAX)
                )
            } else {
                format!(
                    "{} {:>10} {}",
                    date(o.last_modified),
                    size(o.size, a.human_readable),
                    s3crypt_core::text::printable(name, usize::MAX)
                )
            };
            out(&mut stdout, &line)?;
        }
    }
    if a.summarize {
        match a.json {
            true => crate::json_out::emit(
                json!({"type": "summary", "objects": count, "stored_bytes": total}),
            ),
            false => out(
                &mut stdout,
                &format!(
                    "\nTotal Objects: {count}\n   Total Size: {}",
                    size(total, a.human_readable)
                ),
            )?,
        }
    }
    report_skipped(&prefix, pages.skipped());
    Ok(())
}

/// HEADs each object (16 at a time) for its s3crypt metadata; in the order of `objects`.
async fn heads(
    c: &s3crypt::Client,
    bucket: &str,
    objects: &[s3crypt::listing::ListedObject],
) -> Vec<Option<s3crypt::Result<s3crypt::ObjectInfo>>> {
    let mut infos: Vec<Option<s3crypt::Result<s3crypt::ObjectInfo>>> =
        (0..objects.len()).map(|_| None).collect();
    let mut set = tokio::task::JoinSet::new();
    for (i, o) in objects.iter().enumerate() {
        let (c, b, k) = (c.clone(), bucket.to_owned(), o.key.clone());
        set.spawn(async move { (i, c.head_object().bucket(b).key(k).send().await) });
        while set.len() >= 16 {
            if let Some(Ok((j, r))) = set.join_next().await {
                infos[j] = Some(r);
            }
        }
    }
    while let Some(Ok((i, r))) = set.join_next().await {
        infos[i] = Some(r);
    }
    infos
}

/// The bucket an `mb`/`rb` URL names (no key allowed).
fn bucket_of(url: &str) -> Result<String, Failure> {
    let (bucket, key) = parse_url(url)?;
    if !key.is_empty() {
        return Err(Failure::Usage(format!(
            "{url:?} names an object: give s3://BUCKET"
        )));
    }
    Ok(bucket)
}

/// `s3crypt mb s3://bucket`.
pub(crate) async fn make_bucket(a: BucketArgs) -> Result<(), Failure> {
    let bucket = bucket_of(&a.url)?;
    metadata_client(&a.s3).await?.create_bucket(&bucket).await?;
    eprintln!("s3crypt: made bucket {bucket}");
    Ok(())
}

/// `s3crypt rb s3://bucket`.
pub(crate) async fn remove_bucket(a: BucketArgs) -> Result<(), Failure> {
    let bucket = bucket_of(&a.url)?;
    metadata_client(&a.s3).await?.delete_bucket(&bucket).await?;
    eprintln!("s3crypt: removed bucket {bucket}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_dates_as_aws_s3_ls() {
        assert_eq!(human(0), "0 Bytes");
        assert_eq!(human(1023), "1023 Bytes");
        assert_eq!(human(4096), "4.0 KiB");
        assert_eq!(human(3 << 29), "1.5 GiB");
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_796_650_429);
        assert_eq!(date(Some(t)), "2026-12-07 13:33:49");
        assert_eq!(date(None).len(), 19);
    }
}
