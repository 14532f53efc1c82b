//! `s3crypt rm`: delete objects, one or several, or (`-r`) everything under prefixes, with
//! DeleteObjects batches of 1,000 keys.

use std::collections::BTreeMap;

use serde_json::json;

use crate::args::RmArgs;
use crate::batch::list_keys;
use crate::exit::Failure;
use crate::resolve::metadata_client;
use crate::s3url::{object_url, parse_url, prefix_of};

/// What to delete, per bucket, in the order given.
fn targets(a: &RmArgs) -> Result<BTreeMap<String, Vec<Target>>, Failure> {
    let mut by_bucket: BTreeMap<String, Vec<Target>> = BTreeMap::new();
    for u in &a.urls {
        let (bucket, t) = match a.recursive {
            true => {
                let (b, p) = parse_url(u)?;
                (b, Target::Prefix(prefix_of(&p)))
            }
            false => {
                let (b, k) = object_url(u)?;
                if k.ends_with('/') {
                    return Err(Failure::Usage(format!(
                        "{u:?} ends in '/': to delete everything under it, add -r (--recursive)"
                    )));
                }
                (b, Target::Key(k))
            }
        };
        by_bucket.entry(bucket).or_default().push(t);
    }
    Ok(by_bucket)
}

enum Target {
    Key(String),
    Prefix(String),
}

pub(crate) async fn run(a: RmArgs) -> Result<(), Failure> {
    let by_bucket = targets(&a)?;
    // Nothing is decrypted: no keyring needed.
    let c = metadata_client(&a.s3).await?;
    let mut failed = 0usize;
    for (bucket, targets) in by_bucket {
        let mut keys = Vec::new();
        for t in targets {
            match t {
                Target::Key(k) => keys.push(k),
                Target::Prefix(p) => {
                    let found = list_keys(&c, &bucket, &p).await?;
                    if found.is_empty() && !a.quiet && !a.json {
                        eprintln!("s3crypt: nothing under s3://{bucket}/{p}");
                    }
                    keys.extend(found);
                }
            }
        }
        if a.dry_run {
            for k in &keys {
                report(&a, &bucket, k, "would delete", None);
            }
            continue;
        }
        if !a.recursive && keys.len() == 1 {
            // One object: DeleteObject (it needs no s3:DeleteObject on a batch, and a missing
            // bucket is reported as such).
            c.delete_object()
                .bucket(&bucket)
                .key(&keys[0])
                .send()
                .await?;
            report(&a, &bucket, &keys[0], "deleted", None);
            continue;
        }
        let done = c.delete_objects().bucket(&bucket).keys(keys).send().await?;
        for k in &done.deleted {
            report(&a, &bucket, k, "deleted", None);
        }
        for (k, why) in &done.failed {
            report(&a, &bucket, k, "failed", Some(why));
        }
        failed += done.failed.len();
    }
    match failed {
        0 => Ok(()),
        n => Err(Failure::Partial(n)),
    }
}

/// One line per object on stdout, `delete: s3://b/k` as `aws s3 rm` prints it (`-q`: none), or a
/// JSON line; failures always (on stderr).
fn report(a: &RmArgs, bucket: &str, key: &str, what: &str, error: Option<&str>) {
    let url = format!("s3://{bucket}/{key}");
    if a.json {
        crate::json_out::emit(
            json!({"bucket": bucket, "key": key, "status": what.replace(' ', "_"),
                                     "dry_run": a.dry_run, "error": error}),
        );
        return;
    }
    let shown = s3crypt_core::text::printable(&url, usize::MAX);
    match error {
        Some(e) => eprintln!("s3crypt: {shown}: not deleted: {e}"),
        None if a.quiet => {}
        None => println!(
            "{}: {shown}",
            if a.dry_run {
                "(dryrun) delete"
            } else {
                "delete"
            }
        ),
    }
}
