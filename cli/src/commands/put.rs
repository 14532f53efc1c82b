//! `s3crypt put`: encrypt a file, stdin or (with `-r`) a directory tree into S3.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use s3crypt::{Client, Encryption};
use serde_json::json;
use tokio::io::AsyncRead;

use crate::args::PutArgs;
use crate::batch::{cancel_signal, finish, interrupted};
use crate::config;
use crate::exit::Failure;
use crate::resolve::S3Setup;
use crate::s3url::{destination_key, parse_url, prefix_of};
use crate::streams::progress;

/// The S3-side options of new objects (`--sse`, `--storage-class`, object lock).
fn storage_options(a: &PutArgs) -> Result<s3crypt::StorageOptions, Failure> {
    use aws_sdk_s3::types::{ObjectLockMode, ServerSideEncryption, StorageClass};
    let sse = match a.sse.as_deref() {
        None => None,
        Some("AES256") => Some(ServerSideEncryption::Aes256),
        Some("aws:kms") => Some(ServerSideEncryption::AwsKms),
        Some(other) => {
            return Err(Failure::Usage(format!(
                "--sse {other:?}: use AES256 or aws:kms"
            )))
        }
    };
    if a.sse_kms_key_id.is_some() && sse != Some(ServerSideEncryption::AwsKms) {
        return Err(Failure::Usage(
            "--sse-kms-key-id needs --sse aws:kms".into(),
        ));
    }
    let mode = match a.object_lock_mode.as_deref() {
        None => None,
        Some("GOVERNANCE") => Some(ObjectLockMode::Governance),
        Some("COMPLIANCE") => Some(ObjectLockMode::Compliance),
        Some(other) => {
            return Err(Failure::Usage(format!(
                "--object-lock-mode {other:?}: use GOVERNANCE or COMPLIANCE"
            )))
        }
    };
    let until = a
        .object_lock_retain_until
        .as_deref()
        .map(|d| {
            aws_smithy_types::DateTime::from_str(d, aws_smithy_types::date_time::Format::DateTime)
        })
        .transpose()
        .map_err(|e| {
            Failure::Usage(format!(
                "--object-lock-retain-until: {e} (use RFC 3339, e.g. 2030-01-01T00:00:00Z)"
            ))
        })?;
    if mode.is_some() != until.is_some() {
        return Err(Failure::Usage(
            "--object-lock-mode and --object-lock-retain-until go together".into(),
        ));
    }
    let mut o = s3crypt::StorageOptions::new();
    o.server_side_encryption = sse;
    o.sse_kms_key_id = a.sse_kms_key_id.clone();
    o.storage_class = a.storage_class.as_deref().map(StorageClass::from);
    o.object_lock_mode = mode;
    o.object_lock_retain_until = until;
    Ok(o)
}

/// `--meta KEY=VALUE` pairs.
fn parse_meta(pairs: &[String]) -> Result<BTreeMap<String, String>, Failure> {
    pairs
        .iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| Failure::Usage(format!("metadata {p:?} is not KEY=VALUE")))
        })
        .collect()
}

/// The JSON record of one upload.
fn put_json(bucket: &str, key: &str, out: &s3crypt::PutOutput) -> serde_json::Value {
    json!({"bucket": bucket, "key": key, "plaintext_bytes": out.plaintext_length,
           "stored_bytes": out.size, "header_bytes": out.header_length, "parts": out.parts,
           "etag": out.etag, "version_id": out.version_id})
}

/// `put -r`: every file under the source directory, `--jobs` at a time.
async fn put_recursive(a: &PutArgs, c: Client) -> Result<(), Failure> {
    let (bucket, prefix) = parse_url(&a.dst)?;
    let prefix = prefix_of(&prefix);
    let files = crate::tree::files(&a.src)
        .map_err(|e| Failure::Io(format!("cannot walk {}", a.src.display()), e))?;
    let context = config::parse_context(&a.context)?;
    let meta = parse_meta(&a.meta)?;
    // Ctrl-C cancels every upload (each aborts its multipart upload) before the command exits.
    let (cancel_tx, cancel_rx) = tokio::sync::watch::channel(false);
    let overall = crate::streams::Overall::new("uploaded", files.len() as u64, a.quiet || a.json);
    let mut items = Vec::new();
    for (path, rel) in files {
        let overall = overall.clone();
        let key = format!("{prefix}{rel}");
        let (c, bucket, context, meta, json) = (
            c.clone(),
            bucket.clone(),
            context.clone(),
            meta.clone(),
            a.json,
        );
        let content_type = a.content_type.clone();
        let options = storage_options(a)?;
        let sse_c = a.sse_c.on();
        let stop = cancel_signal(&cancel_rx);
        items.push((format!("s3://{bucket}/{key}"), async move {
            let f = tokio::fs::File::open(&path)
                .await
                .map_err(|e| Failure::Io(format!("cannot open {}", path.display()), e))?;
            let len = f.metadata().await.map(|m| m.len()).ok();
            let counted = overall.clone();
            let mut req = c
                .put_object()
                .bucket(&bucket)
                .key(&key)
                .context(context)
                .metadata(meta)
                .storage_options(options)
                .sse_c(sse_c)
                .body(f)
                .on_progress(move |n| counted.bytes(n));
            req = req.cancel_on(stop);
            if let Some(ct) = content_type {
                req = req.content_type(ct);
            }
            if let Some(n) = len {
                req = req.size_hint(n);
            }
            let out = req.send().await?;
            overall.file_done();
            if json {
                crate::json_out::emit(put_json(&bucket, &key, &out));
            }
            Ok(())
        }));
    }
    // On Ctrl-C every upload sees the cancellation and aborts before the command reports.
    let r = finish(a.jobs, items, true, cancel_tx).await;
    overall.finish(match &r {
        Err(Failure::Partial(n)) => *n,
        _ => 0,
    });
    r
}

/// The data-key cache limits `--cache-data-keys N` asks for (each data key serves up to N
/// objects).
fn cache_limits(
    a: &PutArgs,
    binding: s3crypt::location::Binding,
) -> Result<Option<s3crypt::keyring::CacheLimits>, Failure> {
    let Some(n) = a.cache_data_keys else {
        return Ok(None);
    };
    if !a.recursive {
        return Err(Failure::Usage(
            "--cache-data-keys is for many objects: use it with -r".into(),
        ));
    }
    if n < 2 {
        return Err(Failure::Usage(
            "--cache-data-keys N: N is the number of objects per data key, at least 2".into(),
        ));
    }
    if binding != s3crypt::location::Binding::Bucket {
        return Err(Failure::Usage(
            "--cache-data-keys needs --bind bucket: a cached data key can only serve objects \
             with the same encryption context, and binding each object's key makes every \
             context unique (see SECURITY.md for what bucket binding gives up)"
                .into(),
        ));
    }
    Ok(Some(
        s3crypt::keyring::CacheLimits::new(std::time::Duration::from_secs(a.cache_max_age.max(1)))
            .with_max_messages(n)
            // Per data key; an object larger than this gets a key of its own.
            .with_max_bytes(64 << 30)
            .with_capacity(1024),
    ))
}

/// What the data-key cache saved, on stderr (or stdout with `--json`).
fn report_cache(a: &PutArgs, cache: &s3crypt::CachingKeyring, kms_keys: u64) {
    let st = cache.stats();
    let calls = config::kms_calls().snapshot();
    // Each cache reuse spares one request per KMS key (GenerateDataKey or Encrypt).
    let saved = st.hits * kms_keys;
    let msg = json!({
        "type": "summary",
        "data_key_cache": {"new_data_keys": st.misses, "reused": st.hits, "uncached": st.bypassed},
        "kms_calls": {"generate_data_key": calls.generate_data_key, "encrypt": calls.encrypt,
                      "decrypt": calls.decrypt, "saved": saved},
    });
    if a.json {
        crate::json_out::emit(msg);
    } else if !a.quiet {
        eprintln!(
            "s3crypt: data keys: {} generated, {} reused from the cache, {} objects not cacheable",
            st.misses, st.hits, st.bypassed
        );
        if kms_keys > 0 {
            eprintln!(
                "s3crypt: AWS KMS data-key requests: {} made, {saved} saved by the cache",
                calls.total()
            );
        }
    }
}

/// A file's name, for the object key when the destination ends in `/` or names a bucket.
fn file_name(p: &Path) -> Result<String, Failure> {
    p.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| {
            Failure::Usage(format!(
                "{} has no UTF-8 file name to use as the object key: give the key",
                p.display()
            ))
        })
}

pub(crate) async fn run(a: PutArgs) -> Result<(), Failure> {
    config::refuse_discovery(&a.keys, "put")?;
    let limits = cache_limits(&a, crate::resolve::binding(&a.s3)?)?;
    let stdin = a.src == Path::new("-");
    let target = match a.recursive {
        true => None,
        false => {
            if !stdin && a.src.is_dir() {
                return Err(Failure::Usage(format!(
                    "{} is a directory: add -r (--recursive) to upload the files under it",
                    a.src.display()
                )));
            }
            let name = match stdin {
                true => None,
                false => Some(file_name(&a.src)?),
            };
            Some(destination_key(&a.dst, name.as_deref())?)
        }
    };
    let setup = S3Setup::resolve(&a.s3, &a.keys, &a.sse_c, None).await?;
    let (suite, frame_length) =
        config::encryption(a.suite.as_deref(), a.frame_size.as_deref(), &setup.cfg)?;
    let enc = Encryption::new()
        .with_suite(suite)
        .with_frame_length(frame_length);
    let keyring = Arc::new(setup.keyring()?);
    let Some((bucket, key)) = target else {
        let cache = match limits {
            Some(l) => Some(Arc::new(s3crypt::CachingKeyring::new(keyring.clone(), l)?)),
            None => None,
        };
        let keyring: Arc<dyn s3crypt::Keyring> = match &cache {
            Some(c) => c.clone(),
            None => keyring,
        };
        let r = put_recursive(&a, setup.client(keyring, enc)?).await;
        if let Some(cache) = cache {
            report_cache(&a, &cache, setup.keys.kms.len() as u64);
        }
        return r;
    };
    let c = setup.client(keyring, enc)?;
    let (body, len): (Box<dyn AsyncRead + Send + Unpin>, Option<u64>) = if stdin {
        (Box::new(tokio::io::stdin()), None)
    } else {
        let f = tokio::fs::File::open(&a.src)
            .await
            .map_err(|e| Failure::Io(format!("cannot open {}", a.src.display()), e))?;
        let meta = f
            .metadata()
            .await
            .map_err(|e| Failure::Io(format!("cannot read {}", a.src.display()), e))?;
        if meta.is_dir() {
            return Err(Failure::Usage(format!(
                "{} is a directory",
                a.src.display()
            )));
        }
        (Box::new(f), meta.is_file().then_some(meta.len()))
    };
    let bar = progress(len, a.quiet);
    let started = std::time::Instant::now();
    let counted = bar.clone();
    let mut req = c
        .put_object()
        .bucket(&bucket)
        .key(&key)
        .context(config::parse_context(&a.context)?)
        .metadata(parse_meta(&a.meta)?)
        .storage_options(storage_options(&a)?)
        .sse_c(a.sse_c.on())
        .body(s3crypt::Body::from_reader(body))
        // The bar counts what S3 acknowledged, not what was read.
        .on_progress(move |n| counted.inc(n))
        .cancel_on(async {
            interrupted().await;
        });
    if let Some(ct) = &a.content_type {
        req = req.content_type(ct);
    }
    if let Some(n) = len {
        req = req.size_hint(n);
    }
    let out = req.send().await?;
    bar.finish_and_clear();
    crate::streams::summary(
        a.quiet || a.json,
        "uploaded",
        out.plaintext_length,
        started,
        &format!("s3://{bucket}/{key}"),
    );
    if a.json {
        crate::json_out::emit(put_json(&bucket, &key, &out));
    }
    Ok(())
}
