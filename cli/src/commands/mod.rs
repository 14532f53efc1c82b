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

/// Which command this is and whether it asked for `--json` (and if so, whether its data goes to
/// stdout, so that JSON goes to stderr).
fn json_mode(command: &Command) -> Option<(&'static str, bool)> {
    let stdio = |p: &Option<std::path::PathBuf>| {
        p.as_deref().is_none_or(|p| p == std::path::Path::new("-"))
    };
    match command {
        Command::Encrypt(a) if a.io.json => Some(("encrypt", stdio(&a.io.output))),
        Command::Decrypt(a) if a.io.json => Some(("decrypt", stdio(&a.io.output))),
        Command::Inspect(a) if a.json => Some(("inspect", false)),
        Command::Put(a) if a.json => Some(("put", false)),
        Command::Get(a) if a.json => {
            Some(("get", !a.recursive && a.dst == std::path::Path::new("-")))
        }
        Command::Ls(a) if a.json => Some(("ls", false)),
        Command::Rm(a) if a.json => Some(("rm", false)),
        Command::Cp(a) if a.json => Some(("cp", false)),
        Command::Mv(a) if a.json => Some(("mv", false)),
        Command::Rewrap(a) if a.json => Some(("rewrap", false)),
        Command::ScanIds(a) if a.json => Some(("scan-ids", false)),
        _ => None,
    }
}

/// Runs one command to completion.
pub(crate) fn run(command: Command) -> Result<(), Failure> {
    if let Some((op, data_on_stdout)) = json_mode(&command) {
        crate::json_out::enable(op, data_on_stdout);
    }
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
        Command::Mb(a) => block_on(ls::make_bucket(a)),
        Command::Rb(a) => block_on(ls::remove_bucket(a)),
        Command::Cp(a) => block_on(cp::run(a, false)),
        Command::Mv(a) => block_on(cp::run(a, true)),
        Command::Rewrap(a) => block_on(rewrap::run(a)),
        Command::ScanIds(a) => block_on(scan_ids::run(a)),
        Command::Completions(a) => {
            let mut cmd = crate::args::command();
            clap_complete::generate(a.shell, &mut cmd, "s3crypt", &mut std::io::stdout());
            Ok(())
        }
        Command::Man => man(&mut std::io::stdout().lock())
            .map_err(|e| Failure::Io("cannot write the manual page".into(), e)),
    }
}

/// The manual page: the top-level page, then each command's synopsis, description and options
/// (one page, as `man s3crypt` readers expect, rather than one per command).
fn man(out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let mut cmd = crate::args::command();
    cmd.build();
    let top = clap_mangen::Man::new(cmd.clone());
    top.render_title(out)?;
    top.render_name_section(out)?;
    top.render_synopsis_section(out)?;
    top.render_description_section(out)?;
    top.render_subcommands_section(out)?;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("s3crypt {}", sub.get_name());
        writeln!(out, ".SH \"{}\"", name.to_uppercase())?;
        let page = clap_mangen::Man::new(sub.clone());
        let mut section = Vec::new();
        page.render_synopsis_section(&mut section)?;
        page.render_description_section(&mut section)?;
        page.render_options_section(&mut section)?;
        // Each part starts its own .SH: within a command's section they become sub-headings.
        let text = String::from_utf8_lossy(&section).replace(".SH ", ".SS ");
        out.write_all(text.as_bytes())?;
    }
    top.render_extra_section(out)?;
    top.render_version_section(out)
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
