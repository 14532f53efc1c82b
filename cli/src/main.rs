//! `s3crypt`: parse arguments, resolve them into a configuration, dispatch, report.

#![forbid(unsafe_code)]

mod args;
mod config;
mod exit;
mod inspect;
mod keygen;
mod partials;
mod s3cmd;
mod streams;
mod transform;
mod tree;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = args::Cli::parse();
    let result = match cli.command {
        args::Command::Keygen(a) => keygen::run(a),
        args::Command::Encrypt(a) => transform::encrypt(a),
        args::Command::Decrypt(a) => transform::decrypt(a),
        args::Command::Inspect(a) if s3cmd::is_s3_url(a.input.as_deref()) => {
            s3cmd::run(s3cmd::Op::Inspect(a))
        }
        args::Command::Inspect(a) => inspect::run(a),
        args::Command::Put(a) => s3cmd::run(s3cmd::Op::Put(a)),
        args::Command::Get(a) => s3cmd::run(s3cmd::Op::Get(a)),
        args::Command::Ls(a) => s3cmd::run(s3cmd::Op::Ls(a)),
        args::Command::Rm(a) => s3cmd::run(s3cmd::Op::Rm(a)),
        args::Command::Cp(a) => s3cmd::run(s3cmd::Op::Copy(a, false)),
        args::Command::Mv(a) => s3cmd::run(s3cmd::Op::Copy(a, true)),
        args::Command::Rewrap(a) => s3cmd::run(s3cmd::Op::Rewrap(a)),
        args::Command::ScanIds(a) => s3cmd::run(s3cmd::Op::ScanIds(a)),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => e.report(),
    }
}
