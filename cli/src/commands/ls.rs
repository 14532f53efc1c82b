//! `s3crypt ls`: objects under a prefix with their plaintext sizes and suites.

use std::io::Write;

use serde_json::json;

use crate::args::LsArgs;
use crate::batch::report_skipped;
use crate::exit::Failure;
use crate::resolve::metadata_client;
use crate::s3url::parse_url;

pub(crate) async fn run(a: LsArgs) -> Result<(), Failure> {
    let (bucket, prefix) = parse_url(&a.url)?;
    // Only metadata is read: no keyring needed.
    let c = metadata_client(&a.s3).await?;
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
