//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  other error
  2  usage or configuration error
  3  I/O error (reading input, writing output)
  4  invalid message: truncated, malformed, unsupported version or suite, over a limit
  5  authentication failed: the message was tampered with or corrupted
  6  no configured key can decrypt the message
  7  encryption context mismatch (a required -c pair is missing or differs)
  8  keyring error: unreadable, malformed, or accessible by group/others
  9  range not satisfiable";

/// Client-side encryption in the AWS Encryption SDK message format.
#[derive(Debug, Parser)]
#[command(name = "s3crypt", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a keyring file with a new 256-bit key (or import one, or rotate).
    Keygen(KeygenArgs),
    /// Encrypt a file or stdin into an AWS Encryption SDK message.
    Encrypt(EncryptArgs),
    /// Decrypt a message; output is released only once authenticated.
    Decrypt(DecryptArgs),
    /// Show a message's header: suite, frame length, context, wrapped keys (no key needed).
    Inspect(InspectArgs),
}

#[derive(Debug, Args)]
#[command(
    after_help = "The keyring file is created with mode 0600. Keep it private and backed up:\n\
without it nothing encrypted with it can be decrypted."
)]
pub struct KeygenArgs {
    /// Keyring file to create (or to add a key to, with --rotate).
    #[arg(short = 'o', long = "output", value_name = "KEYRING")]
    pub output: PathBuf,
    /// Key namespace (the ESDK raw keyring's "key namespace"/provider id).
    #[arg(long, value_name = "NS", default_value = "s3crypt")]
    pub namespace: String,
    /// Key name (default: key-YYYYMMDD-RANDOM).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Import an existing key instead of generating one: a file holding 32 raw bytes, or 64 hex
    /// digits, or base64 of 32 bytes ("-" for stdin).
    #[arg(long, value_name = "RAWKEYFILE")]
    pub import: Option<PathBuf>,
    /// Add the key to an existing keyring as the new primary; older keys stay for decryption.
    #[arg(long)]
    pub rotate: bool,
}

#[derive(Debug, Args)]
pub struct KeyArgs {
    /// Keyring file (repeatable). Default: $S3CRYPT_KEYRING (paths separated by ':'), then
    /// `keyrings` in the config file ($S3CRYPT_CONFIG or ~/.config/s3crypt/config.toml).
    #[arg(short = 'k', long = "keyring", value_name = "KEYRING")]
    pub keyrings: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct EncryptArgs {
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Encryption context pair (repeatable): authenticated, stored in clear in the header.
    #[arg(short = 'c', long = "context", value_name = "KEY=VALUE")]
    pub context: Vec<String>,
    /// Plaintext bytes per frame: a multiple of 16 (suffixes K, KiB, M, MiB). Default 64KiB.
    #[arg(long, value_name = "N")]
    pub frame_size: Option<String>,
    /// Algorithm suite: aes256gcm-commit (0x0478, default), aes256gcm-commit-p384 (0x0578, signed),
    /// chacha20poly1305-commit (0x7378, s3crypt extension that other ESDKs cannot read).
    #[arg(long, value_name = "NAME")]
    pub suite: Option<String>,
    #[command(flatten)]
    pub io: IoArgs,
}

#[derive(Debug, Args)]
pub struct DecryptArgs {
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Require this encryption context pair (repeatable); a mismatch fails with exit code 7.
    #[arg(short = 'c', long = "context", value_name = "KEY=VALUE")]
    pub context: Vec<String>,
    /// Decrypt only this plaintext byte range, reading only the frames it needs: START-END
    /// (inclusive), START- or -SUFFIXLEN, as in HTTP Range. Needs a seekable input file.
    #[arg(long, value_name = "RANGE", allow_hyphen_values = true)]
    pub range: Option<String>,
    /// Refuse messages whose frame length exceeds N (memory bound). Default 64MiB.
    #[arg(long, value_name = "N")]
    pub max_frame_size: Option<String>,
    #[command(flatten)]
    pub io: IoArgs,
}

#[derive(Debug, Args)]
pub struct IoArgs {
    /// Output file ("-" or absent: stdout). Written to a temporary file in the same directory
    /// and renamed into place only when complete.
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    pub output: Option<PathBuf>,
    /// Worker threads (default: all cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,
    /// Print a JSON summary on stderr when done.
    #[arg(long)]
    pub json: bool,
    /// Input file ("-" or absent: stdin).
    #[arg(value_name = "IN")]
    pub input: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// Message file ("-" or absent: stdin).
    #[arg(value_name = "IN")]
    pub input: Option<PathBuf>,
}
