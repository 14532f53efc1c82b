//! `s3crypt get`: decrypt an object (or a byte range of it, or with `-r` every object under a
//! prefix) from S3 into a file or stdout.

use std::path::Path;
use std::sync::Arc;

use s3crypt::{ByteRange, Client};
use serde_json::json;

use crate::args::GetArgs;
use crate::batch::{interrupted, list_keys, run_all};
use crate::config;
use crate::exit::Failure;
use crate::resolve::S3Setup;
use crate::s3url::{download_target, object_url, parse_url, prefix_of};
use crate::streams::{progress, save, Output};

/// Objects up to this stored size are written by `get -r` in one step (see [`get_recursive`]).
const SMALL_OBJECT: u64 = 256 << 10;

/// `get -r`: every object under the prefix into the destination directory, `--jobs` at a time.
async fn get_recursive(a: &GetArgs, c: Client) -> Result<(), Failure> {
    let (bucket, prefix) = parse_url(&a.src)?;
    let prefix = prefix_of(&prefix);
    let root = a.dst.clone();
    let dest = Arc::new(
        crate::tree::DestDir::open(&root, a.fsync, a.mode)
            .map_err(|e| Failure::Io(format!("cannot open {}", root.display()), e))?,
    );
    let required = config::parse_context(&a.context)?;
    // File creations and renames of small objects, two per core at a time: they take the
    // directory's lock, so many writers only spin on it, but one per core leaves cores idle
    // while a creation waits on the disk (2,000 files of 4 KiB through s3s-fs on 2 cores,
    // medians of 5: 1.48 s with 2 at a time, 1.30 s with 4, 1.26 s with 8 in a shorter run,
    // 1.35 s with 32).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let fs_slots = Arc::new(tokio::sync::Semaphore::new(2 * cores));
    let mut refused = 0;
    let mut items = Vec::new();
    let keys = list_keys(&c, &bucket, &prefix).await?;
    if keys.is_empty() {
        // As aws s3 cp --recursive, not an error; but say it, or an empty restore looks like a
        // successful one.
        eprintln!(
            "s3crypt: nothing under s3://{bucket}/{}: no object downloaded",
            s3crypt_core::text::printable(&prefix, usize::MAX)
        );
        return Ok(());
    }
    let overall = crate::streams::Overall::new("downloaded", keys.len() as u64, a.quiet || a.json);
    for key in keys {
        let key = key.as_str();
        let rel = match crate::tree::relative_path(key, &prefix) {
            Ok(Some(rel)) => rel,
            Ok(None) => continue,
            Err(why) => {
                eprintln!(
                    "s3crypt: refusing s3://{bucket}/{}: {why} (it would not stay inside {})",
                    key.escape_debug(),
                    root.display()
                );
                refused += 1;
                continue;
            }
        };
        let fs_slots = Arc::clone(&fs_slots);
        let (c, bucket, key, dest, required, allow_moved, json) = (
            c.clone(),
            bucket.clone(),
            key.to_owned(),
            Arc::clone(&dest),
            required.clone(),
            a.allow_moved,
            a.json,
        );
        let sse_c = a.sse_c.on();
        let overall = overall.clone();
        items.push((format!("s3://{bucket}/{key}"), async move {
            let out = c
                .get_object()
                .bucket(&bucket)
                .key(&key)
                .required_context(required)
                .allow_moved(allow_moved)
                .sse_c(sse_c)
                .send()
                .await?;
            let label = format!("s3://{bucket}/{key}");
            let finish = |output: crate::tree::DirFile| {
                output.commit().map_err(|e| {
                    let what = match e.kind() {
                        std::io::ErrorKind::AlreadyExists => "refusing to write the output",
                        _ => "cannot finish the output",
                    };
                    Failure::Io(what.into(), e)
                })
            };
            // Created (through directory handles, never following symlinks) only once the
            // download started; renamed into place only after everything verified.
            let n = if out.info.size <= SMALL_OBJECT {
                // A small object (by its stored size, which S3 reports, not by metadata): its
                // plaintext is collected, then created, written and renamed in one hand-off to
                // the blocking pool.
                let data = out.body.collect().await?;
                let n = data.len() as u64;
                let _permit = fs_slots.acquire().await.map_err(|e| {
                    Failure::Io("the writer stopped".into(), std::io::Error::other(e))
                })?;
                tokio::task::spawn_blocking(move || {
                    let mut output = dest.create(&rel, &label).map_err(Failure::Usage)?;
                    std::io::Write::write_all(&mut output, &data)
                        .map_err(crate::streams::write_failure)?;
                    finish(output)
                })
                .await
                .map_err(|e| {
                    Failure::Io("the writer stopped".into(), std::io::Error::other(e))
                })??;
                n
            } else {
                let output = tokio::task::block_in_place(|| dest.create(&rel, &label))
                    .map_err(Failure::Usage)?;
                save(out.body, output, finish, |_| {}).await?.1
            };
            overall.bytes(n);
            overall.file_done();
            if json {
                crate::json_out::emit(json!({"bucket": bucket, "key": key, "plaintext_bytes": n}));
            }
            Ok(())
        }));
    }
    let failed = tokio::select! {
        n = run_all(a.jobs, items) => n,
        sig = interrupted() => return Err(Failure::Interrupted(sig)),
    };
    overall.finish(failed + refused);
    if failed + refused > 0 {
        return Err(Failure::Partial(failed + refused));
    }
    Ok(())
}

pub(crate) async fn run(a: GetArgs) -> Result<(), Failure> {
    let c = S3Setup::resolve(&a.s3, &a.keys, &a.sse_c, None)
        .await?
        .decrypting_client()?;
    if a.recursive {
        return get_recursive(&a, c).await;
    }
    let (bucket, key) = object_url(&a.src)?;
    let mut req = c
        .get_object()
        .bucket(&bucket)
        .key(&key)
        .required_context(config::parse_context(&a.context)?)
        .allow_moved(a.allow_moved)
        .sse_c(a.sse_c.on());
    if let Some(r) = &a.range {
        req = req.range(ByteRange::parse(r)?);
    }
    if let Some(v) = &a.version_id {
        req = req.version_id(v);
    }
    let dst = match a.dst == Path::new("-") {
        true => None,
        false => {
            let (path, create) = download_target(&a.dst, &key)?;
            if create {
                std::fs::create_dir_all(&a.dst).map_err(|e| {
                    Failure::Io(format!("cannot create directory {}", a.dst.display()), e)
                })?;
            }
            Some(path)
        }
    };
    let work = async {
        let out = match req.send().await {
            Ok(o) => o,
            Err(e) => return Err(crate::batch::which_missing(&c, e).await.into()),
        };
        let output = Output::open(&dst, false, a.fsync, a.mode)?;
        let total = out
            .range
            .as_ref()
            .map(|r| r.end - r.start)
            .or(out.info.plaintext_length);
        let bar = progress(total, a.quiet);
        let started = std::time::Instant::now();
        let ((), n) = save(out.body, output, Output::commit, |len| bar.inc(len)).await?;
        bar.finish_and_clear();
        if let Some(p) = &dst {
            crate::streams::summary(
                a.quiet || a.json,
                "downloaded",
                n,
                started,
                &p.display().to_string(),
            );
        }
        if a.json {
            crate::json_out::emit(json!({"bucket": bucket, "key": key, "plaintext_bytes": n,
                                         "range": out.range.map(|r| [r.start, r.end])}));
        }
        Ok::<(), Failure>(())
    };
    tokio::select! {
        r = work => r,
        sig = interrupted() => Err(Failure::Interrupted(sig)),
    }
}
