//! `s3crypt scan-ids`: find messages that share a message id with a different header (the
//! rewrap nonce-reuse incident; see SECURITY.md).

use serde_json::json;

use crate::args::ScanIdsArgs;
use crate::commands::hex;
use crate::exit::Failure;
use crate::resolve::{metadata_client, S3Setup};
use crate::s3url::parse_url;

pub(crate) async fn run(a: ScanIdsArgs) -> Result<(), Failure> {
    let (bucket, prefix) = parse_url(&a.url)?;
    let c = if a.sse_c.on() {
        // Reading SSE-C objects needs their keys, derived from the keyrings.
        S3Setup::resolve(&a.s3, &a.keys, &a.sse_c, None)
            .await?
            .decrypting_client()?
    } else {
        // Nothing is decrypted: no keyring needed.
        metadata_client(&a.s3.endpoint).await?
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
        crate::json_out::emit(json!({
            "bucket": bucket, "prefix": prefix, "scanned": scan.scanned,
            "not_messages": scan.not_messages,
            "all_versions": scan.all_versions, "affected": affected.len(),
            "shared": groups, "skipped": skipped,
        }));
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
