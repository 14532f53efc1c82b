//! `s3crypt put/get/ls/rm` and `inspect s3://…`: resolve arguments into an S3 client, run, report.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use s3crypt::{ByteRange, Client, Encryption, Transfer};
use serde_json::json;
use tokio::io::{AsyncRead, ReadBuf};

use crate::args::{
    CopyArgs, Endpoint, GetArgs, InspectArgs, LsArgs, PutArgs, RewrapArgs, RmArgs, S3Args,
    ScanIdsArgs, SseCArgs,
};
use crate::config::{self, parse_size};
use crate::exit::Failure;
use crate::streams::{progress, save, Output};

pub(crate) enum Op {
    Put(PutArgs),
    Get(GetArgs),
    Ls(LsArgs),
    Rm(RmArgs),
    Inspect(InspectArgs),
    /// Copy (`false`) or move (`true`).
    Copy(CopyArgs, bool),
    Rewrap(RewrapArgs),
    ScanIds(ScanIdsArgs),
}

/// Completes on Ctrl-C; never, if the handler cannot be installed (rather than at once, which
/// would cancel every transfer).
async fn interrupted() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

pub(crate) fn is_s3_url(p: Option<&Path>) -> bool {
    p.and_then(Path::to_str)
        .is_some_and(|s| s.starts_with("s3://"))
}

/// Splits `s3://bucket/key` (the key may be empty).
fn parse_url(s: &str) -> Result<(String, String), Failure> {
    let rest = s
        .strip_prefix("s3://")
        .ok_or_else(|| Failure::Usage(format!("{s:?} is not an s3://bucket/key URL")))?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(Failure::Usage(format!("{s:?} has no bucket")));
    }
    Ok((bucket.to_owned(), key.to_owned()))
}

fn object_url(s: &str) -> Result<(String, String), Failure> {
    let (b, k) = parse_url(s)?;
    if k.is_empty() {
        return Err(Failure::Usage(format!("{s:?} names no object key")));
    }
    Ok((b, k))
}

async fn s3_client(a: &Endpoint) -> aws_sdk_s3::Client {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(p) = &a.profile {
        loader = loader.profile_name(p);
    }
    if let Some(r) = &a.region {
        loader = loader.region(aws_config::Region::new(r.clone()));
    }
    if let Some(e) = &a.endpoint_url {
        loader = loader.endpoint_url(e);
    }
    let conf = loader.load().await;
    let custom_endpoint = a.endpoint_url.is_some()
        || std::env::var_os("AWS_ENDPOINT_URL").is_some()
        || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
    aws_sdk_s3::Client::from_conf(s3crypt::s3_config(&conf, a.path_style || custom_endpoint))
}

fn transfer(a: &S3Args) -> Result<Transfer, Failure> {
    if a.concurrency == Some(0) {
        return Err(Failure::Usage("--concurrency must be at least 1".into()));
    }
    let defaults = Transfer::default();
    let part = usize::try_from(parse_size(&a.part_size)?)
        .map_err(|_| Failure::Usage("--part-size is too large".into()))?;
    if part > (5 << 30) - (16 << 20) {
        return Err(Failure::Usage(
            "--part-size must be below 5GiB (S3's largest part)".into(),
        ));
    }
    if part < 5 << 20 {
        return Err(Failure::Usage(
            "--part-size must be at least 5MiB (S3's smallest part)".into(),
        ));
    }
    Ok(defaults
        .with_part_size(part)
        .with_multipart_threshold(part)
        .with_concurrency(a.concurrency.unwrap_or(defaults.concurrency))
        .with_download_concurrency(a.concurrency.unwrap_or(defaults.download_concurrency)))
}

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

pub(crate) fn run(op: Op) -> Result<(), Failure> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Io("cannot start the async runtime".into(), e))?;
    let result = rt.block_on(async move {
        match op {
            Op::Put(a) => put(a).await,
            Op::Get(a) => get(a).await,
            Op::Ls(a) => ls(a).await,
            Op::Rm(a) => rm(a).await,
            Op::Inspect(a) => inspect(a).await,
            Op::Copy(a, delete) => copy(a, delete).await,
            Op::Rewrap(a) => rewrap(a).await,
            Op::ScanIds(a) => scan_ids(a).await,
        }
    });
    // After Ctrl-C, file writers on the blocking pool see their input end and remove their
    // temporary files within moments; one stuck on a stalled pipe or disk must not keep the
    // process alive.
    rt.shutdown_timeout(std::time::Duration::from_secs(5));
    result
}

async fn client(
    s3: &S3Args,
    keys: &crate::args::KeyArgs,
    enc: Encryption,
    sse_c: &SseCArgs,
) -> Result<Client, Failure> {
    client_with(s3, keys, enc, sse_c, None).await
}

/// A KMS client for `--profile` and `--region` (and the standard AWS environment), when KMS keys
/// are used. `--endpoint-url` is S3's; KMS endpoints come from `AWS_ENDPOINT_URL_KMS` or
/// `AWS_ENDPOINT_URL`. Keys named by ARN are called in their own region whatever `--region` says.
/// The keyrings and HMAC keys built on it refuse a plain `http://` endpoint off loopback before
/// sending anything (`s3crypt_kms`'s transport guard): nothing to check here.
async fn kms_client(s3: &Endpoint) -> aws_sdk_kms::Client {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .retry_config(s3crypt_kms::recommended_retry_config())
        .timeout_config(s3crypt_kms::recommended_timeout_config());
    if let Some(p) = &s3.profile {
        loader = loader.profile_name(p);
    }
    if let Some(r) = &s3.region {
        loader = loader.region(aws_config::Region::new(r.clone()));
    }
    aws_sdk_kms::Client::new(&loader.load().await)
}

/// [`kms_client`] if `keys` use KMS.
async fn kms_client_for(s3: &Endpoint, keys: &config::Keys) -> Option<aws_sdk_kms::Client> {
    if keys.kms.is_empty() && keys.discovery.is_none() {
        None
    } else {
        Some(kms_client(s3).await)
    }
}

/// The location binding `--bind` asks for.
fn binding(s3: &S3Args) -> Result<s3crypt::location::Binding, Failure> {
    match s3.bind.as_str() {
        "key" => Ok(s3crypt::location::Binding::Key),
        "bucket" => Ok(s3crypt::location::Binding::Bucket),
        other => Err(Failure::Usage(format!(
            "--bind {other:?}: use key or bucket"
        ))),
    }
}

/// [`client`], with the keys behind a data-key cache when `cache` is given.
async fn client_with(
    s3: &S3Args,
    keys: &crate::args::KeyArgs,
    enc: Encryption,
    sse_c: &SseCArgs,
    cache: Option<&Arc<s3crypt_core::keyring::caching::CachingKeyring>>,
) -> Result<Client, Failure> {
    let cfg = config::load_config()?;
    let sse_c_kms_keys = if sse_c.on() {
        config::resolve_sse_c_kms_keys(sse_c, keys, &cfg)
    } else {
        Vec::new()
    };
    let keys = config::resolve_keys(keys, &cfg)?;
    // One KMS client (one configuration load) for the keyrings and the SSE-C keys alike.
    // (A caching keyring was built with its own.)
    let keyring_kms = match cache {
        None => kms_client_for(&s3.endpoint, &keys).await,
        Some(_) => None,
    };
    let kms = match keyring_kms {
        None if !sse_c_kms_keys.is_empty() => Some(kms_client(&s3.endpoint).await),
        kms => kms,
    };
    let keyring: Arc<dyn s3crypt_core::Keyring> = match cache {
        Some(c) => c.clone(),
        None => Arc::new(config::load_keys_with(&keys, kms.clone())?),
    };
    let mut b = Client::builder()
        .s3_client(s3_client(&s3.endpoint).await)
        .keyring(keyring)
        .transfer(transfer(s3)?)
        .location_binding(binding(s3)?)
        .encryption(enc);
    if sse_c.on() {
        let source: Arc<dyn s3crypt::sse_c::SseCSource> = match kms {
            Some(kms) if !sse_c_kms_keys.is_empty() => {
                Arc::new(config::load_kms_sse_c(&sse_c_kms_keys, kms)?)
            }
            _ => Arc::new(config::load_sse_c(&keys.paths)?),
        };
        b = b.sse_c(source);
    }
    Ok(b.build()?)
}

/// Counts bytes read, for the progress bar.
struct Counting<R> {
    inner: R,
    bar: indicatif::ProgressBar,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counting<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.bar.inc(n as u64);
        r
    }
}

fn prefix_of(p: &str) -> String {
    if p.is_empty() || p.ends_with('/') {
        p.to_owned()
    } else {
        format!("{p}/")
    }
}

/// Runs `jobs` transfers at a time; reports each failure; returns how many failed.
async fn run_all<F>(jobs: usize, items: Vec<(String, F)>) -> usize
where
    F: std::future::Future<Output = Result<(), Failure>> + Send + 'static,
{
    type Outcome = Result<(String, Result<(), Failure>), tokio::task::JoinError>;
    fn failed(r: Outcome) -> usize {
        match r {
            Ok((_, Ok(()))) => 0,
            Ok((name, Err(e))) => {
                eprintln!(
                    "s3crypt: {}: {}",
                    s3crypt_core::text::printable(&name, usize::MAX),
                    e.describe()
                );
                1
            }
            Err(e) => {
                eprintln!("s3crypt: a transfer task failed: {e}");
                1
            }
        }
    }
    let mut set: tokio::task::JoinSet<(String, Result<(), Failure>)> = tokio::task::JoinSet::new();
    let mut n = 0;
    for (name, f) in items {
        while set.len() >= jobs.max(1) {
            if let Some(r) = set.join_next().await {
                n += failed(r);
            }
        }
        set.spawn(async move { (name, f.await) });
    }
    while let Some(r) = set.join_next().await {
        n += failed(r);
    }
    n
}

async fn put_recursive(a: &PutArgs, c: Client) -> Result<(), Failure> {
    let (bucket, prefix) = parse_url(&a.dst)?;
    let prefix = prefix_of(&prefix);
    let files = crate::tree::files(&a.src)
        .map_err(|e| Failure::Io(format!("cannot walk {}", a.src.display()), e))?;
    let context = config::parse_context(&a.context)?;
    let meta = parse_meta(&a.meta)?;
    // Ctrl-C cancels every upload (each aborts its multipart upload) before the command exits.
    let (cancel_tx, cancel_rx) = tokio::sync::watch::channel(false);
    let mut items = Vec::new();
    for (path, rel) in files {
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
        items.push((key.clone(), async move {
            let f = tokio::fs::File::open(&path).await.map_err(|e| Failure::Io(format!("cannot open {}", path.display()), e))?;
            let len = f.metadata().await.map(|m| m.len()).ok();
            let mut req = c.put_object().bucket(&bucket).key(&key).context(context).metadata(meta).storage_options(options).sse_c(sse_c).body(f);
            req = req.cancel_on(stop);
            if let Some(ct) = content_type {
                req = req.content_type(ct);
            }
            if let Some(n) = len {
                req = req.size_hint(n);
            }
            let out = req.send().await?;
            if json {
                println!("{}", json!({"operation": "put", "bucket": bucket, "key": key, "plaintext_bytes": out.plaintext_length, "parts": out.parts}));
            }
            Ok(())
        }));
    }
    // On Ctrl-C every upload sees the cancellation and aborts before the command reports.
    finish(a.jobs, items, true, cancel_tx).await
}

async fn put(a: PutArgs) -> Result<(), Failure> {
    config::refuse_discovery(&a.keys, "put")?;
    if a.cache_data_keys.is_some() && !a.recursive {
        return Err(Failure::Usage(
            "--cache-data-keys is for many objects: use it with -r".into(),
        ));
    }
    if a.recursive {
        let cfg = config::load_config()?;
        let (suite, frame_length) =
            config::encryption(a.suite.as_deref(), a.frame_size.as_deref(), &cfg)?;
        let cache = match a.cache_data_keys {
            None => None,
            Some(n) => {
                if n < 2 {
                    return Err(Failure::Usage(
                        "--cache-data-keys N: N is the number of objects per data key, at least 2"
                            .into(),
                    ));
                }
                if binding(&a.s3)? != s3crypt::location::Binding::Bucket {
                    return Err(Failure::Usage(
                        "--cache-data-keys needs --bind bucket: a cached data key can only serve objects \
                         with the same encryption context, and binding each object's key makes every \
                         context unique (see SECURITY.md for what bucket binding gives up)"
                            .into(),
                    ));
                }
                let keys = config::resolve_keys(&a.keys, &cfg)?;
                let keys =
                    config::load_keys_with(&keys, kms_client_for(&a.s3.endpoint, &keys).await)?;
                let limits = s3crypt_core::keyring::caching::CacheLimits::new(
                    std::time::Duration::from_secs(a.cache_max_age.max(1)),
                )
                .with_max_messages(n)
                // Per data key; an object larger than this gets a key of its own.
                .with_max_bytes(64 << 30)
                .with_capacity(1024);
                Some(Arc::new(
                    s3crypt_core::keyring::caching::CachingKeyring::new(Arc::new(keys), limits)?,
                ))
            }
        };
        let c = client_with(
            &a.s3,
            &a.keys,
            Encryption::new()
                .with_suite(suite)
                .with_frame_length(frame_length),
            &a.sse_c,
            cache.as_ref(),
        )
        .await?;
        // Each cache reuse spares one request per KMS key (GenerateDataKey or Encrypt).
        let kms_keys = config::resolve_keys(&a.keys, &cfg)?.kms.len() as u64;
        let r = put_recursive(&a, c).await;
        if let Some(cache) = cache {
            let st = cache.stats();
            let calls = config::kms_calls().snapshot();
            let saved = st.hits * kms_keys;
            let msg = json!({
                "data_key_cache": {"new_data_keys": st.misses, "reused": st.hits, "uncached": st.bypassed},
                "kms_calls": {"generate_data_key": calls.generate_data_key, "encrypt": calls.encrypt,
                              "decrypt": calls.decrypt, "saved": saved},
            });
            if a.json {
                println!("{msg}");
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
        return r;
    }
    let (bucket, key) = object_url(&a.dst)?;
    let cfg = config::load_config()?;
    let (suite, frame_length) =
        config::encryption(a.suite.as_deref(), a.frame_size.as_deref(), &cfg)?;
    let c = client(
        &a.s3,
        &a.keys,
        Encryption::new()
            .with_suite(suite)
            .with_frame_length(frame_length),
        &a.sse_c,
    )
    .await?;
    let stdin = a.src == Path::new("-");
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
    let mut req = c
        .put_object()
        .bucket(&bucket)
        .key(&key)
        .context(config::parse_context(&a.context)?)
        .metadata(parse_meta(&a.meta)?)
        .storage_options(storage_options(&a)?)
        .sse_c(a.sse_c.on())
        .body(s3crypt::Body::from_reader(Counting {
            inner: body,
            bar: bar.clone(),
        }))
        .cancel_on(interrupted());
    if let Some(ct) = &a.content_type {
        req = req.content_type(ct);
    }
    if let Some(n) = len {
        req = req.size_hint(n);
    }
    let out = req.send().await?;
    bar.finish_and_clear();
    if a.json {
        println!(
            "{}",
            json!({"operation": "put", "bucket": bucket, "key": key, "plaintext_bytes": out.plaintext_length,
                   "stored_bytes": out.size, "parts": out.parts, "etag": out.etag, "version_id": out.version_id})
        );
    }
    Ok(())
}

async fn get_recursive(a: &GetArgs, c: Client) -> Result<(), Failure> {
    let (bucket, prefix) = parse_url(&a.src)?;
    let prefix = prefix_of(&prefix);
    let root = a.dst.clone();
    let dest = Arc::new(
        crate::tree::DestDir::open(&root, a.fsync)
            .map_err(|e| Failure::Io(format!("cannot open {}", root.display()), e))?,
    );
    let required = config::parse_context(&a.context)?;
    let mut refused = 0;
    let mut items = Vec::new();
    for key in list_keys(&c, &bucket, &prefix).await? {
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
            // Created (through directory handles, never following symlinks) only once the
            // download started; renamed into place only after everything verified.
            let output = dest
                .create(&rel, &format!("s3://{bucket}/{key}"))
                .map_err(Failure::Usage)?;
            let finish = |output: crate::tree::DirFile| {
                output.commit().map_err(|e| {
                    let what = match e.kind() {
                        std::io::ErrorKind::AlreadyExists => "refusing to write the output",
                        _ => "cannot finish the output",
                    };
                    Failure::Io(what.into(), e)
                })
            };
            let ((), n) = save(out.body, output, finish, |_| {}).await?;
            if json {
                eprintln!(
                    "{}",
                    json!({"operation": "get", "bucket": bucket, "key": key, "plaintext_bytes": n})
                );
            }
            Ok(())
        }));
    }
    let failed = tokio::select! {
        n = run_all(a.jobs, items) => n,
        () = interrupted() => return Err(Failure::Interrupted),
    };
    if failed + refused > 0 {
        return Err(Failure::Partial(failed + refused));
    }
    Ok(())
}

async fn get(a: GetArgs) -> Result<(), Failure> {
    let c = client(&a.s3, &a.keys, Encryption::default(), &a.sse_c).await?;
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
    let dst = (a.dst != Path::new("-")).then(|| a.dst.clone());
    let work = async {
        let out = req.send().await?;
        let output = Output::open(&dst, false, a.fsync)?;
        let total = out
            .range
            .as_ref()
            .map(|r| r.end - r.start)
            .or(out.info.plaintext_length);
        let bar = progress(total, a.quiet);
        let ((), n) = save(out.body, output, Output::commit, |len| bar.inc(len)).await?;
        bar.finish_and_clear();
        if a.json {
            eprintln!(
                "{}",
                json!({"operation": "get", "bucket": bucket, "key": key, "plaintext_bytes": n, "range": out.range.map(|r| [r.start, r.end])})
            );
        }
        Ok::<(), Failure>(())
    };
    tokio::select! {
        r = work => r,
        () = interrupted() => Err(Failure::Interrupted),
    }
}

async fn ls(a: LsArgs) -> Result<(), Failure> {
    let (bucket, prefix) = parse_url(&a.url)?;
    let s3 = s3_client(&a.s3).await;
    // Only metadata is read: no keyring needed.
    let keyring: Arc<dyn s3crypt_core::Keyring> =
        Arc::new(s3crypt_core::keyring::multi::MultiKeyring::default());
    let c = Client::builder().s3_client(s3).keyring(keyring).build()?;
    let mut stdout = std::io::stdout().lock();
    let mut pages = c.list_objects().bucket(&bucket).prefix(&prefix).send()?;
    while let Some(page) = pages.next_page().await {
        let keys: Vec<(String, u64)> = page?.into_iter().map(|o| (o.key, o.size)).collect();
        // HEAD each object (16 at a time) for its s3crypt metadata.
        let mut infos: Vec<Option<s3crypt::Result<s3crypt::ObjectInfo>>> =
            (0..keys.len()).map(|_| None).collect();
        let mut heads = tokio::task::JoinSet::new();
        for (i, (k, _)) in keys.iter().enumerate() {
            let (c, b, k) = (c.clone(), bucket.clone(), k.clone());
            heads.spawn(async move { (i, c.head_object().bucket(b).key(k).send().await) });
            while heads.len() >= 16 {
                if let Some(Ok((j, r))) = heads.join_next().await {
                    infos[j] = Some(r);
                }
            }
        }
        while let Some(Ok((i, r))) = heads.join_next().await {
            infos[i] = Some(r);
        }
        for ((k, stored), info) in keys.iter().zip(infos) {
            let (size, kind) = match info {
                Some(Ok(i)) => (
                    i.plaintext_length
                        .map(|n| n.to_string())
                        .unwrap_or_else(|| "?".into()),
                    format!("0x{:04X}", i.suite.id()),
                ),
                Some(Err(s3crypt::Error::NotEncrypted { .. })) => {
                    ("-".into(), "not-s3crypt".into())
                }
                _ => ("-".into(), "unknown".into()),
            };
            // Keys are anyone's who can write to the bucket: escaped for the terminal; exact
            // in JSON (which escapes control characters itself).
            let line = if a.json {
                json!({"key": k, "plaintext_bytes": size.parse::<u64>().ok(), "stored_bytes": stored, "suite": kind}).to_string()
            } else {
                format!(
                    "{size:>14}  {kind:<11}  {}",
                    s3crypt_core::text::printable(k, usize::MAX)
                )
            };
            if writeln!(stdout, "{line}").is_err() {
                return Err(Failure::BrokenPipe);
            }
        }
    }
    report_skipped(&prefix, pages.skipped());
    Ok(())
}

/// Listed keys that were left out (they do not decode, or lie outside the prefix), on stderr.
fn report_skipped(prefix: &str, skipped: &[String]) {
    for raw in skipped {
        eprintln!(
            "s3crypt: skipped a listed key that does not decode or is outside the prefix {}: {}",
            s3crypt_core::text::printable(prefix, 200),
            s3crypt_core::text::printable(raw, 200)
        );
    }
}

/// Every key under `prefix` (see [`s3crypt::listing`]).
async fn list_keys(c: &Client, bucket: &str, prefix: &str) -> Result<Vec<String>, Failure> {
    let (objects, skipped) = c
        .list_objects()
        .bucket(bucket)
        .prefix(prefix)
        .send()?
        .collect()
        .await?;
    report_skipped(prefix, &skipped);
    Ok(objects.into_iter().map(|o| o.key).collect())
}

fn copy_json(op: &str, src: (&str, &str), dst: (&str, &str), o: &s3crypt::CopyOutput) -> String {
    let mode = match o.mode {
        s3crypt::CopyMode::ServerSide => "server-side",
        s3crypt::CopyMode::Reencrypted => "reencrypted",
        s3crypt::CopyMode::Unchanged => "unchanged",
        _ => "other",
    };
    json!({
        "operation": op,
        "mode": mode,
        "source": format!("s3://{}/{}", src.0, src.1),
        "destination": format!("s3://{}/{}", dst.0, dst.1),
        "size": o.size,
        "parts": o.parts,
        "header_length_before": o.header_length_before,
        "header_length_after": o.header_length_after,
        "bytes_downloaded": o.bytes_downloaded,
        "bytes_uploaded": o.bytes_uploaded,
    })
    .to_string()
}

/// A cancellation signal for each copy, fired by [`finish`] on Ctrl-C.
fn cancel_signal(
    rx: &tokio::sync::watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut rx = rx.clone();
    async move {
        let _ = rx.wait_for(|c| *c).await;
    }
}

/// Runs single-object work, or `-r` work through `run_all`, until done or Ctrl-C. On Ctrl-C every
/// copy is told to stop (through `cancel`, see [`cancel_signal`]) and awaited: each aborts its
/// multipart upload before the command exits (the destination never appears half-written; a
/// move keeps its source).
async fn finish<F>(
    jobs: usize,
    items: Vec<(String, F)>,
    recursive: bool,
    cancel: tokio::sync::watch::Sender<bool>,
) -> Result<(), Failure>
where
    F: std::future::Future<Output = Result<(), Failure>> + Send + 'static,
{
    if !recursive {
        let Some((_, f)) = items.into_iter().next() else {
            return Ok(());
        };
        let mut f = std::pin::pin!(f);
        return tokio::select! {
            r = &mut f => r,
            () = interrupted() => {
                let _ = cancel.send(true);
                let _ = f.await;
                Err(Failure::Interrupted)
            }
        };
    }
    let mut work = std::pin::pin!(run_all(jobs, items));
    let failed = tokio::select! {
        n = &mut work => n,
        () = interrupted() => {
            let _ = cancel.send(true);
            work.await;
            return Err(Failure::Interrupted);
        }
    };
    if failed > 0 {
        return Err(Failure::Partial(failed));
    }
    Ok(())
}

async fn copy(a: CopyArgs, delete: bool) -> Result<(), Failure> {
    config::refuse_discovery(&a.keys, if delete { "mv" } else { "cp" })?;
    let c = client(&a.s3, &a.keys, Encryption::default(), &a.sse_c).await?;
    let required = config::parse_context(&a.context)?;
    let (sb, sk) = parse_url(&a.src)?;
    let (db, dk) = parse_url(&a.dst)?;
    let pairs: Vec<(String, String)> = if a.recursive {
        if a.version_id.is_some() {
            return Err(Failure::Usage(
                "--version-id names one object: not with -r".into(),
            ));
        }
        let (sp, dp) = (prefix_of(&sk), prefix_of(&dk));
        if sb == db && (dp.starts_with(&sp) || sp.starts_with(&dp)) {
            return Err(Failure::Usage(
                "with -r, the source and destination prefixes must not overlap".into(),
            ));
        }
        list_keys(&c, &sb, &sp)
            .await?
            .into_iter()
            .map(|k| {
                // (list_keys returns only keys under the prefix.)
                let d = format!("{dp}{}", k.strip_prefix(sp.as_str()).unwrap_or(&k));
                (k, d)
            })
            .collect()
    } else {
        if sk.is_empty() || dk.is_empty() {
            return Err(Failure::Usage(
                "cp and mv need s3://bucket/key on both sides (or -r)".into(),
            ));
        }
        vec![(sk, dk)]
    };
    let op = if delete { "mv" } else { "cp" };
    if delete && a.version_id.is_some() {
        return Err(Failure::Usage(
            "mv --version-id is not supported: cp the version, then rm what you mean to".into(),
        ));
    }
    let (cancel, cancelled) = tokio::sync::watch::channel(false);
    let items = pairs
        .into_iter()
        .map(|(sk, dk)| {
            let (c, sb, db, required) = (c.clone(), sb.clone(), db.clone(), required.clone());
            let (version, allow_moved, sse_c, json) =
                (a.version_id.clone(), a.allow_moved, a.sse_c.on(), a.json);
            let name = format!("s3://{sb}/{sk}");
            let stop = cancel_signal(&cancelled);
            (name, async move {
                let mut req = c
                    .copy_object()
                    .source(&sb, &sk)
                    .destination(&db, &dk)
                    .required_context(required)
                    .allow_moved(allow_moved)
                    .sse_c(sse_c, sse_c)
                    .delete_source(delete)
                    .cancel_on(stop);
                if let Some(v) = version {
                    req = req.source_version_id(v);
                }
                let o = req.send().await?;
                if json {
                    eprintln!("{}", copy_json(op, (&sb, &sk), (&db, &dk), &o));
                }
                Ok(())
            })
        })
        .collect();
    finish(a.jobs, items, a.recursive, cancel).await
}

async fn rewrap(a: RewrapArgs) -> Result<(), Failure> {
    if a.add_keys.is_empty() && a.add_kms_keys.is_empty() && a.remove_keys.is_empty() {
        return Err(Failure::Usage(
            "nothing to do: give --add-key, --add-kms-key or --remove-key".into(),
        ));
    }
    let c = client(&a.s3, &a.keys, Encryption::default(), &a.sse_c).await?;
    let add = config::Keys {
        paths: a.add_keys.clone(),
        kms: a.add_kms_keys.clone(),
        discovery: None,
    };
    let wrap: Option<Arc<dyn s3crypt_core::Keyring>> = if add.paths.is_empty() && add.kms.is_empty()
    {
        None
    } else {
        Some(Arc::new(config::load_keys_with(
            &add,
            kms_client_for(&a.s3.endpoint, &add).await,
        )?))
    };
    let required = config::parse_context(&a.context)?;
    let (bucket, key) = parse_url(&a.url)?;
    let keys = if a.recursive {
        list_keys(&c, &bucket, &prefix_of(&key)).await?
    } else {
        if key.is_empty() {
            return Err(Failure::Usage(format!(
                "{:?} names no object key (use -r for a prefix)",
                a.url
            )));
        }
        vec![key]
    };
    let keep = if a.remove_keys.is_empty() {
        s3crypt::KeepKeys::All
    } else {
        s3crypt::KeepKeys::AllBut(a.remove_keys.clone())
    };
    let (cancel, cancelled) = tokio::sync::watch::channel(false);
    let items = keys
        .into_iter()
        .map(|k| {
            let stop = cancel_signal(&cancelled);
            let (c, bucket, required, wrap, keep) = (
                c.clone(),
                bucket.clone(),
                required.clone(),
                wrap.clone(),
                keep.clone(),
            );
            let (sse_c, json) = (a.sse_c.on(), a.json);
            (format!("s3://{bucket}/{k}"), async move {
                let mut req = c
                    .copy_object()
                    .source(&bucket, &k)
                    .required_context(required)
                    .keep(keep)
                    .sse_c(sse_c, sse_c)
                    .cancel_on(stop);
                if let Some(w) = wrap {
                    req = req.wrap_with(w);
                }
                let o = req.send().await?;
                if json {
                    eprintln!("{}", copy_json("rewrap", (&bucket, &k), (&bucket, &k), &o));
                }
                Ok(())
            })
        })
        .collect();
    finish(a.jobs, items, a.recursive, cancel).await
}

async fn scan_ids(a: ScanIdsArgs) -> Result<(), Failure> {
    let (bucket, prefix) = parse_url(&a.url)?;
    let c = if a.sse_c.on() {
        client(&a.s3, &a.keys, Encryption::default(), &a.sse_c).await?
    } else {
        // Nothing is decrypted: no keyring needed.
        let keyring: Arc<dyn s3crypt_core::Keyring> =
            Arc::new(s3crypt_core::keyring::multi::MultiKeyring::default());
        Client::builder()
            .s3_client(s3_client(&a.s3.endpoint).await)
            .keyring(keyring)
            .build()?
    };
    let scan = c.scan_message_ids(&bucket, &prefix, a.sse_c.on()).await?;
    let name = |k: &str, v: &Option<String>| match v {
        Some(v) => format!("s3://{bucket}/{k} (version {v})"),
        None => format!("s3://{bucket}/{k}"),
    };
    let affected: Vec<&s3crypt::audit::SharedMessageId> = scan.affected().collect();
    if a.json {
        let groups: Vec<serde_json::Value> = scan
            .shared
            .iter()
            .map(|g| {
                json!({
                    "message_id": hex(&g.message_id),
                    "affected": g.affected(),
                    "distinct_headers": g.distinct_headers,
                    "objects": g.messages.iter().map(|m| json!({
                        "key": m.key, "version_id": m.version_id,
                        "header_sha256": hex(&m.header_digest),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let skipped: Vec<serde_json::Value> = scan
            .skipped
            .iter()
            .map(|(k, v, why)| json!({"key": k, "version_id": v, "reason": why}))
            .collect();
        println!(
            "{}",
            json!({
                "bucket": bucket, "prefix": prefix, "scanned": scan.scanned,
                "not_messages": scan.not_messages,
                "all_versions": scan.all_versions, "affected": affected.len(),
                "shared": groups, "skipped": skipped,
            })
        );
    } else {
        let p = |s: &str| s3crypt_core::text::printable(s, usize::MAX);
        for g in &affected {
            println!(
                "AFFECTED message id {}: {} different headers",
                hex(&g.message_id),
                g.distinct_headers
            );
            for m in &g.messages {
                println!("  {}", p(&name(&m.key, &m.version_id)));
            }
        }
        for (k, v, why) in &scan.skipped {
            eprintln!(
                "s3crypt: skipped {}: {}",
                p(&name(k, v)),
                s3crypt_core::text::printable(why, 300)
            );
        }
        let same = scan.shared.len() - affected.len();
        eprintln!(
            "{} message(s) scanned{}; {} message id(s) shared with different headers (affected), {} shared by identical copies (not affected); {} object(s) not messages; {} could not be read",
            scan.scanned,
            if scan.all_versions { ", every version" } else { ", current objects only (no version listing)" },
            affected.len(),
            same,
            scan.not_messages,
            scan.skipped.len()
        );
    }
    if !affected.is_empty() {
        Err(Failure::Affected(affected.len()))
    } else if !scan.skipped.is_empty() {
        // A scan that could not read everything does not say the prefix is clean.
        Err(Failure::Partial(scan.skipped.len()))
    } else {
        Ok(())
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

async fn rm(a: RmArgs) -> Result<(), Failure> {
    let (bucket, key) = object_url(&a.url)?;
    // Nothing is decrypted: no keyring needed.
    let keyring: Arc<dyn s3crypt_core::Keyring> =
        Arc::new(s3crypt_core::keyring::multi::MultiKeyring::default());
    Client::builder()
        .s3_client(s3_client(&a.s3).await)
        .keyring(keyring)
        .build()?
        .delete_object()
        .bucket(&bucket)
        .key(&key)
        .send()
        .await?;
    Ok(())
}

async fn inspect(a: InspectArgs) -> Result<(), Failure> {
    let url = a
        .input
        .as_deref()
        .and_then(Path::to_str)
        .unwrap_or_default()
        .to_owned();
    let (bucket, key) = object_url(&url)?;
    let keyring: Arc<dyn s3crypt_core::Keyring> =
        Arc::new(s3crypt_core::keyring::multi::MultiKeyring::default());
    let c = Client::builder()
        .s3_client(s3_client(&a.s3).await)
        .keyring(keyring)
        .build()?;
    let (info, bytes) = c
        .head_object()
        .bucket(&bucket)
        .key(&key)
        .fetch_header()
        .await?;
    let parsed = crate::inspect::read_header(&mut &bytes[..])?;
    let extra = json!({
        "object": format!("s3://{bucket}/{key}"), "stored_bytes": info.size, "content_type": info.content_type,
        "user_metadata": info.user_metadata, "etag": info.etag, "version_id": info.version_id,
    });
    let layout =
        s3crypt_core::range::MessageLayout::new(parsed.len() as u64, info.frame_length, info.size)
            .ok();
    let plaintext = layout
        .filter(|_| !info.suite.is_signed())
        .map(|l| (l.plaintext_len(), l.regular_frames + 1));
    crate::inspect::report(&parsed, plaintext, a.json, Some(extra));
    Ok(())
}
