//! `s3crypt encrypt`: a file or stdin into an AWS Encryption SDK message.

use s3crypt_core::pipeline;
use s3crypt_core::{EncryptOptions, Encryptor};
use serde_json::json;

use crate::args::EncryptArgs;
use crate::commands::{hex, pipeline_options};
use crate::config;
use crate::exit::Failure;
use crate::streams::{open_input, progress, Output};

pub(crate) fn run(a: EncryptArgs) -> Result<(), Failure> {
    config::refuse_discovery(&a.keys, "encrypt")?;
    let cfg = config::load_config()?;
    let keyring = config::load_keys(&config::resolve_keys(&a.keys, &cfg)?)?;
    let (suite, frame_length) =
        config::encryption(a.suite.as_deref(), a.frame_size.as_deref(), &cfg)?;
    let popts = pipeline_options(&a.io)?;
    let input = open_input(&a.io.input)?;
    let options = EncryptOptions {
        suite,
        frame_length,
        context: config::parse_context(&a.context)?,
        plaintext_length: input.len,
    };
    options.validate()?;
    let mut output = Output::open(&a.io.output, true, a.io.fsync, a.io.mode)?;
    let enc = Encryptor::new(&keyring, &options)?;
    let bar = progress(input.len, a.io.quiet);
    let summary = if input.len.is_some() {
        pipeline::encrypt_file(enc, &input.file, &mut output, &popts, |n| bar.inc(n))?
    } else {
        pipeline::encrypt(enc, &input.file, &mut output, &popts, |n| bar.inc(n))?
    };
    output.commit()?;
    bar.finish_and_clear();
    if a.io.json {
        crate::json_out::emit(json!({
            "input": input.name, "plaintext_bytes": summary.plaintext_len,
            "frames": summary.frames, "header_bytes": summary.header_len, "suite": format!("0x{:04X}", suite.id()),
            "frame_length": frame_length, "message_id": hex(&summary.message_id),
        }));
    }
    Ok(())
}
