//! `s3crypt inspect`: the header of a message (a file, stdin or `s3://bucket/key`), without any key. Never prints secrets (the header
//! holds none: wrapped keys are shown by provider and key name only).
//!
//! Everything shown comes from the message or from S3 and is unauthenticated: human output escapes
//! control and invisible formatting characters ([`printable`]), so that a crafted context pair or
//! metadata value cannot send escape sequences to the terminal; `--json` output is exact (JSON
//! escapes control characters itself).

use std::io::Read;
use std::path::Path;

use s3crypt_core::keyring::raw_aes::key_name_of;
use s3crypt_core::range::MessageLayout;
use s3crypt_core::text::printable;
use s3crypt_core::{ParsedHeader, ReadLimits};
use serde_json::json;

use crate::args::InspectArgs;
use crate::commands::hex;
use crate::exit::Failure;
use crate::s3url::object_url;
use crate::streams::open_input;

/// Reads a header without key: any frame length or EDK count the format allows is shown (inspect
/// allocates nothing per frame).
pub(crate) fn read_header(r: &mut impl Read) -> Result<ParsedHeader, Failure> {
    let limits = ReadLimits {
        max_frame_length: u32::MAX,
        max_encrypted_data_keys: u16::MAX,
    };
    Ok(s3crypt_core::header::read_from(r, &limits)?.0)
}

pub(crate) fn run(a: InspectArgs) -> Result<(), Failure> {
    let mut input = open_input(&a.input)?;
    let parsed = read_header(&mut input.file)?;
    let layout = match input.len {
        Some(total) if !parsed.header.suite.is_signed() => {
            MessageLayout::new(parsed.len() as u64, parsed.header.frame_length, total).ok()
        }
        _ => None,
    };
    report(
        &parsed,
        layout.map(|l| (l.plaintext_len(), l.regular_frames + 1)),
        a.json,
        None,
    );
    Ok(())
}

/// Prints a header (and, for S3 objects, the object's metadata as `extra`).
pub(crate) fn report(
    parsed: &ParsedHeader,
    plaintext: Option<(u64, u64)>,
    json: bool,
    extra: Option<serde_json::Value>,
) {
    let h = &parsed.header;
    let edks: Vec<_> = h
        .encrypted_data_keys
        .iter()
        .map(|e| {
            let (kind, key) = if e.provider_id == "aws-kms" {
                ("aws-kms", String::from_utf8_lossy(&e.provider_info).into_owned())
            } else if let Some(name) = key_name_of(e) {
                ("raw-aes", name.to_owned())
            } else {
                ("unknown", String::from_utf8_lossy(&e.provider_info).into_owned())
            };
            json!({"provider_id": e.provider_id, "key_name": key, "kind": kind, "ciphertext_bytes": e.ciphertext.len()})
        })
        .collect();
    let ctx: serde_json::Map<_, _> = h
        .context
        .iter()
        .map(|(k, v)| (k.to_owned(), json!(v)))
        .collect();
    if json {
        let mut v = json!({
            "format": "aws-encryption-sdk-message", "version": 2, "framing": "framed",
            "suite": format!("0x{:04X}", h.suite.id()), "suite_name": h.suite.esdk_name(),
            "signed": h.suite.is_signed(), "esdk_standard": h.suite.is_esdk_standard(),
            "message_id": hex(&h.message_id), "frame_length": h.frame_length, "header_bytes": parsed.len(),
            "encryption_context": ctx, "encrypted_data_keys": edks,
        });
        if let Some((bytes, frames)) = plaintext {
            v["plaintext_bytes"] = json!(bytes);
            v["frames"] = json!(frames);
        }
        if let Some(x) = extra {
            v["object"] = x;
        }
        crate::json_out::emit(v);
        return;
    }
    if let Some(x) = &extra {
        for (k, v) in x
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, v)| !v.is_null())
        {
            let value = v
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| v.to_string());
            println!(
                "{:<15} {}",
                format!("{}:", printable(&k.replace('_', " "), usize::MAX)),
                printable(&value, usize::MAX)
            );
        }
    }
    println!("format:         AWS Encryption SDK message, version 2, framed");
    let readable = if h.suite.is_esdk_standard() {
        "readable by every AWS Encryption SDK"
    } else {
        "s3crypt extension: other ESDKs cannot read it"
    };
    println!(
        "suite:          0x{:04X} {} ({readable})",
        h.suite.id(),
        h.suite.esdk_name()
    );
    println!("message id:     {}", hex(&h.message_id));
    println!("frame length:   {} bytes", h.frame_length);
    println!("header length:  {} bytes", parsed.len());
    if let Some((bytes, frames)) = plaintext {
        println!(
            "plaintext:      {bytes} bytes in {frames} frame{}",
            if frames == 1 { "" } else { "s" }
        );
    }
    if h.context.is_empty() {
        println!("encryption context: (empty)");
    } else {
        println!("encryption context:");
        for (k, v) in h.context.iter() {
            println!(
                "  {} = {}",
                printable(k, usize::MAX),
                printable(v, usize::MAX)
            );
        }
    }
    println!("encrypted data keys ({}):", edks.len());
    // `{:?}` escapes control and formatting characters too (and quotes the names).
    for (i, e) in edks.iter().enumerate() {
        println!(
            "  {}. {} key {:?} (provider {:?})",
            i + 1,
            e["kind"].as_str().unwrap_or_default(),
            e["key_name"].as_str().unwrap_or_default(),
            e["provider_id"].as_str().unwrap_or_default()
        );
    }
}

/// `inspect s3://bucket/key`: the header, read with one ranged GET (and a HEAD).
pub(crate) async fn run_s3(a: InspectArgs) -> Result<(), Failure> {
    let url = a
        .input
        .as_deref()
        .and_then(Path::to_str)
        .unwrap_or_default()
        .to_owned();
    let (bucket, key) = object_url(&url)?;
    let c = crate::resolve::metadata_client(&a.s3).await?;
    let (info, bytes) = match c
        .head_object()
        .bucket(&bucket)
        .key(&key)
        .fetch_header()
        .await
    {
        Ok(x) => x,
        Err(e) => return Err(crate::batch::which_missing(&c, e).await.into()),
    };
    let parsed = read_header(&mut &bytes[..])?;
    let extra = json!({
        "bucket": bucket, "key": key, "stored_bytes": info.size, "content_type": info.content_type,
        "user_metadata": info.user_metadata, "etag": info.etag, "version_id": info.version_id,
    });
    let layout =
        s3crypt_core::range::MessageLayout::new(parsed.len() as u64, info.frame_length, info.size)
            .ok();
    let plaintext = layout
        .filter(|_| !info.suite.is_signed())
        .map(|l| (l.plaintext_len(), l.regular_frames + 1));
    report(&parsed, plaintext, a.json, Some(extra));
    Ok(())
}
