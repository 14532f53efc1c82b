//! `s3crypt decrypt`: an AWS Encryption SDK message (or a byte range of it) into a file or stdout.

use std::io::{Read, Seek, SeekFrom};

use s3crypt_core::pipeline;
use s3crypt_core::range::RangeDecryptor;
use s3crypt_core::DecryptOptions;
use serde_json::json;

use crate::args::DecryptArgs;
use crate::commands::{hex, pipeline_options};
use crate::config::{self, parse_size};
use crate::exit::Failure;
use crate::streams::{open_input, progress, Output};

fn decrypt_options(a: &DecryptArgs) -> Result<DecryptOptions, Failure> {
    let mut o = DecryptOptions {
        required_context: config::parse_context(&a.context)?,
        ..Default::default()
    };
    if let Some(s) = &a.max_frame_size {
        o.limits.max_frame_length = u32::try_from(parse_size(s)?).unwrap_or(u32::MAX);
    }
    Ok(o)
}

pub(crate) fn run(a: DecryptArgs) -> Result<(), Failure> {
    let cfg = config::load_config()?;
    let keyring = config::load_keys(&config::resolve_keys(&a.keys, &cfg)?)?;
    let options = decrypt_options(&a)?;
    let popts = pipeline_options(&a.io)?;
    let input = open_input(&a.io.input)?;
    if let Some(r) = &a.range {
        return decrypt_range(&a, r, input, &keyring, &options);
    }
    let mut output = Output::open(&a.io.output, false, a.io.fsync, a.io.mode)?;
    let bar = progress(input.len, a.io.quiet);
    let summary = if input.len.is_some() {
        pipeline::decrypt_file(&keyring, &options, &input.file, &mut output, &popts, |n| {
            bar.inc(n)
        })?
    } else {
        pipeline::decrypt(&keyring, &options, &input.file, &mut output, &popts, |n| {
            bar.inc(n)
        })?
    };
    output.commit()?;
    bar.finish_and_clear();
    if a.io.json {
        let h = &summary.header.header;
        crate::json_out::emit(json!({
            "input": input.name, "plaintext_bytes": summary.plaintext_len,
            "frames": summary.frames, "suite": format!("0x{:04X}", h.suite.id()), "frame_length": h.frame_length,
            "message_id": hex(&h.message_id),
        }));
    }
    Ok(())
}

/// Ciphertext bytes `decrypt --range` reads, authenticates and writes at a time (whole frames;
/// at least one). `long_ranges_on_files_go_step_by_step` in cli/tests/cli.rs assumes 8 MiB.
const RANGE_STEP: u64 = 8 << 20;

fn decrypt_range(
    a: &DecryptArgs,
    range: &str,
    mut input: crate::streams::Input,
    keyring: &dyn s3crypt_core::Keyring,
    options: &DecryptOptions,
) -> Result<(), Failure> {
    let spec = s3crypt_core::range::ByteRange::parse(range)?;
    let Some(total) = input.len else {
        return Err(Failure::Usage(
            "--range needs a seekable input file, not a stream".into(),
        ));
    };
    let (parsed, _) = s3crypt_core::header::read_from(&mut input.file, &options.limits)?;
    let rd = RangeDecryptor::new(parsed, keyring, options, total)?;
    let plan = rd.plan(spec.resolve(rd.layout().plaintext_len()))?;
    let mut output = Output::open(&a.io.output, false, a.io.fsync, a.io.mode)?;
    // Whole frames of about RANGE_STEP bytes at a time, each authenticated before it is written:
    // memory stays bounded whatever the range (a range that reaches the end includes the final
    // frame in its last step, so truncation is still detected).
    // (Counted in ciphertext: with tiny frames the overhead would dominate the buffer.)
    let frame = u64::from(rd.header().header.frame_length);
    let slot = frame + s3crypt_core::key::REGULAR_OVERHEAD as u64;
    let step = (RANGE_STEP / slot).max(1) * frame;
    let mut ct = Vec::new();
    for part in s3crypt_core::range::aligned_steps(plan.plaintext.clone(), step) {
        let sub = rd.plan(part)?;
        let len = usize::try_from(sub.ciphertext.end - sub.ciphertext.start)
            .map_err(|_| Failure::Usage("--range: frames too large for this platform".into()))?;
        ct.resize(len, 0);
        input
            .file
            .seek(SeekFrom::Start(sub.ciphertext.start))
            .and_then(|_| input.file.read_exact(&mut ct))
            .map_err(|e| Failure::Io(format!("cannot read {}", input.name), e))?;
        let n = rd.decrypt_in_place(&sub, &mut ct)?;
        std::io::Write::write_all(&mut output, &ct[..n]).map_err(crate::streams::write_failure)?;
    }
    output.commit()?;
    if a.io.json {
        crate::json_out::emit(json!({
            "input": input.name, "range": [plan.plaintext.start, plan.plaintext.end],
            "ciphertext_range": [plan.ciphertext.start, plan.ciphertext.end],
            "plaintext_bytes": plan.plaintext.end - plan.plaintext.start,
            "message_plaintext_bytes": rd.layout().plaintext_len(),
        }));
    }
    Ok(())
}
