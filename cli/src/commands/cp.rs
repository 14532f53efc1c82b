//! `s3crypt cp` and `s3crypt mv`: copy or move objects within S3, server-side when the
//! encryption context allows it, re-encrypted under a new data key otherwise.

use serde_json::json;

use crate::args::CopyArgs;
use crate::batch::{cancel_signal, finish, list_keys};
use crate::config;
use crate::exit::Failure;
use crate::resolve::S3Setup;
use crate::s3url::{destination_key, key_base_name, parse_url, prefix_of};

/// Sends a copy, move or rewrap and counts it in `overall`; a missing source says whether its
/// bucket or its key is missing.
pub(crate) async fn send_copy(
    c: &s3crypt::Client,
    req: s3crypt::CopyObject,
    overall: &crate::streams::Overall,
) -> Result<s3crypt::CopyOutput, Failure> {
    let o = match req.send().await {
        Ok(o) => o,
        Err(e) => return Err(crate::batch::which_missing(c, e).await.into()),
    };
    overall.bytes(o.size);
    overall.file_done();
    Ok(o)
}

/// The `--json` line of a copy, move or rewrap.
pub(crate) fn copy_json(
    op: &str,
    src: (&str, &str),
    dst: (&str, &str),
    o: &s3crypt::CopyOutput,
) -> serde_json::Value {
    let mode = match o.mode {
        s3crypt::CopyMode::ServerSide => "server-side",
        s3crypt::CopyMode::Reencrypted => "reencrypted",
        s3crypt::CopyMode::Unchanged => "unchanged",
        _ => "other",
    };
    json!({
        "operation": op,
        "mode": mode,
        "bucket": dst.0,
        "key": dst.1,
        "source": {"bucket": src.0, "key": src.1},
        "stored_bytes": o.size,
        "parts": o.parts,
        "header_bytes_before": o.header_length_before,
        "header_bytes": o.header_length_after,
        "downloaded_bytes": o.bytes_downloaded,
        "uploaded_bytes": o.bytes_uploaded,
        "etag": o.etag,
        "version_id": o.version_id,
    })
}

/// `cp` (`delete` false) or `mv` (`delete` true).
pub(crate) async fn run(a: CopyArgs, delete: bool) -> Result<(), Failure> {
    config::refuse_discovery(&a.keys, if delete { "mv" } else { "cp" })?;
    let c = S3Setup::resolve(&a.s3, &a.keys, &a.sse_c, None)
        .await?
        .decrypting_client()?;
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
        if sk.is_empty() {
            return Err(Failure::Usage(
                "cp and mv need s3://bucket/key as the source (or -r for a prefix)".into(),
            ));
        }
        // Like `aws s3 cp`: a destination bucket or `dir/` takes the source key's last segment.
        let (_, dk) = destination_key(&a.dst, key_base_name(&sk))?;
        vec![(sk, dk)]
    };
    let op = if delete { "mv" } else { "cp" };
    if delete && a.version_id.is_some() {
        return Err(Failure::Usage(
            "mv --version-id is not supported: cp the version, then rm what you mean to".into(),
        ));
    }
    let (cancel, cancelled) = tokio::sync::watch::channel(false);
    let overall = crate::streams::Overall::new(
        if delete { "moved" } else { "copied" },
        pairs.len() as u64,
        a.quiet || a.json || !a.recursive,
    );
    let items = pairs
        .into_iter()
        .map(|(sk, dk)| {
            let overall = overall.clone();
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
                let o = send_copy(&c, req, &overall).await?;
                if json {
                    crate::json_out::emit(copy_json(op, (&sb, &sk), (&db, &dk), &o));
                }
                Ok(())
            })
        })
        .collect();
    let r = finish(a.jobs, items, a.recursive, cancel).await;
    overall.finish(match &r {
        Err(Failure::Partial(n)) => *n,
        _ => 0,
    });
    r
}
