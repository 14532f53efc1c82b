//! `s3crypt`: parse arguments, resolve them into a configuration, dispatch, report.

#![forbid(unsafe_code)]

mod args;
mod config;
mod exit;
mod inspect;
mod keygen;
mod streams;
mod transform;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = args::Cli::parse();
    let result = match cli.command {
        args::Command::Keygen(a) => keygen::run(a),
        args::Command::Encrypt(a) => transform::encrypt(a),
        args::Command::Decrypt(a) => transform::decrypt(a),
        args::Command::Inspect(a) => inspect::run(a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => e.report(),
    }
}
