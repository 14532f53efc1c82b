//! Child processes of the CLI tests: signals and the temporary files a command leaves.

use std::path::Path;
use std::process::{Child, Command};

/// Sends `sig` (a `kill` name: TERM, HUP, INT) to a child process.
pub fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} failed");
}

/// How many temporary output files (`*.partial`) are in `dir`.
pub fn partials(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
        .count()
}
