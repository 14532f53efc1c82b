//! `s3crypt`: parse arguments, dispatch to the command (which resolves its configuration once and
//! runs), report.

#![forbid(unsafe_code)]

mod args;
mod aws_env;
mod batch;
mod commands;
mod config;
mod exit;
mod json_out;
mod partials;
mod resolve;
mod s3url;
mod signals;
mod streams;
mod tree;

fn main() -> std::process::ExitCode {
    signals::install();
    let cli = args::parse();
    exit::set_verbose(cli.verbose);
    match commands::run(cli.command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => e.report(),
    }
}
