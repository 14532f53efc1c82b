//! One file per command: each takes its parsed arguments, resolves them once (see
//! [`crate::resolve`]) and runs. Commands that talk to S3 run on one tokio runtime.

pub(crate) mod cp;
mod decrypt;
mod encrypt;
mod get;
mod inspect;
mod keygen;
mod ls;
mod put;
mod rewrap;
mod rm;
mod scan_ids;

use s3crypt_core::pipeline::PipelineOptions;

use crate::args::{Command, IoArgs};
use crate::exit::Failure;

/// Runs one command to completion.
pub(crate) fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Keygen(a) => keygen::run(a),
        Command::Encrypt(a) => encrypt::run(a),
        Command::Decrypt(a) => decrypt::run(a),
        Command::Inspect(a) if crate::s3url::is_s3_url(a.input.as_deref()) => {
            block_on(inspect::run_s3(a))
        }
        Command::Inspect(a) => inspect::run(a),
        Command::Put(a) => block_on(put::run(a)),
        Command::Get(a) => block_on(get::run(a)),
        Command::Ls(a) => block_on(ls::run(a)),
        Command::Rm(a) => block_on(rm::run(a)),
        Command::Cp(a) => block_on(cp::run(a, false)),
        Command::Mv(a) => block_on(cp::run(a, true)),
        Command::Rewrap(a) => block_on(rewrap::run(a)),
        Command::ScanIds(a) => block_on(scan_ids::run(a)),
    }
}

/// Runs an S3 command on a multi-threaded tokio runtime.
fn block_on(
    command: impl std::future::Future<Output = Result<(), Failure>>,
) -> Result<(), Failure> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Io("cannot start the async runtime".into(), e))?;
    let result = rt.block_on(command);
    // After Ctrl-C, file writers on the blocking pool see their input end and remove their
    // temporary files within moments; one stuck on a stalled pipe or disk must not keep the
    // process alive.
    rt.shutdown_timeout(std::time::Duration::from_secs(5));
    result
}

/// `--threads` for the local pipelines.
fn pipeline_options(io: &IoArgs) -> Result<PipelineOptions, Failure> {
    let mut p = PipelineOptions::default();
    if let Some(t) = io.threads {
        if t == 0 {
            return Err(Failure::Usage("--threads must be at least 1".into()));
        }
        p.threads = t;
    }
    Ok(p)
}

/// Lowercase hex.
fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
