//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

const EXIT_CODES: &str = "\
Exit codes:
  0    success
  1    other error
  2    usage or configuration error (also: no AWS credentials, unknown profile)
  3    I/O error (reading input, writing output)
  4    invalid message: truncated, malformed, unsupported version or suite,
       over a limit
  5    authentication failed: the message was tampered with or corrupted
  6    no configured key can decrypt the message
  7    encryption context mismatch (a required -c pair is missing or differs)
  8    keyring error: a keyring file unreadable, malformed or accessible by
       group/others, or a key service (AWS KMS) refusing or failing
  9    range not satisfiable
  10   S3 object or bucket not found
  11   S3 refused or failed a request, or could not be reached
  12   not an s3crypt object (no s3crypt metadata)
  13   recursive transfer, rm: some objects failed or were refused (each is
       reported); scan-ids: some objects could not be read
  14   scan-ids: objects or versions share a message id with different
       headers (advisory S3C-2026-01; re-encrypt them with rewrap)
  129  SIGHUP, 130 SIGINT (Ctrl-C), 143 SIGTERM: stopped; uploads aborted,
       temporary files removed";

/// `--mode`: permission bits in octal (`644`, `0644`, `0o644`); no setuid, setgid or sticky bit.
fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    let m = u32::from_str_radix(digits, 8).map_err(|_| format!("{s:?} is not an octal mode"))?;
    if m > 0o777 {
        return Err(format!(
            "{s:?}: only permission bits (at most 777; no setuid, setgid or sticky bit)"
        ));
    }
    Ok(m)
}

/// The command line as parsed: [`Cli`], with the options that do not apply to a command hidden
/// from its help (still accepted, and refused with a reason by the command).
pub(crate) fn command() -> clap::Command {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    // Discovery only decrypts: encrypt, put, cp and mv refuse it.
    for sub in ["encrypt", "put", "cp", "mv"] {
        cmd = cmd.mut_subcommand(sub, |c| {
            [
                "kms_discovery",
                "kms_discovery_accounts",
                "kms_discovery_partition",
            ]
            .into_iter()
            .fold(c, |c, id| c.mut_arg(id, |a| a.hide(true)))
        });
    }
    cmd
}

/// Parses the process's arguments (exits with clap's message on a usage error, or after
/// printing help or the version).
pub(crate) fn parse() -> Cli {
    use clap::FromArgMatches;
    let matches = command().get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// Client-side encryption in the AWS Encryption SDK message format.
#[derive(Debug, Parser)]
#[command(name = "s3crypt", version, about, after_help = EXIT_CODES)]
pub(crate) struct Cli {
    /// On an error, also print its whole chain of causes (the AWS SDK's own words).
    #[arg(short, long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create a keyring file with a new 256-bit key (or import one, or rotate).
    Keygen(KeygenArgs),
    /// Encrypt a file or stdin into an AWS Encryption SDK message.
    Encrypt(EncryptArgs),
    /// Decrypt a message; output is released only once authenticated.
    Decrypt(DecryptArgs),
    /// Show a message's header: suite, frame length, context, wrapped keys (no key needed).
    /// Accepts a file, stdin, or s3://bucket/key (then also the object's metadata).
    Inspect(InspectArgs),
    /// Encrypt a file or stdin and upload it: s3crypt put SRC s3://bucket/key.
    Put(PutArgs),
    /// Download and decrypt an object: s3crypt get s3://bucket/key DST.
    Get(GetArgs),
    /// List buckets, or objects and prefixes as `aws s3 ls` does: s3crypt ls [s3://bucket[/prefix]].
    Ls(LsArgs),
    /// Delete objects: s3crypt rm s3://bucket/key...; with -r, everything under a prefix.
    Rm(RmArgs),
    /// Make a bucket: s3crypt mb s3://bucket.
    Mb(BucketArgs),
    /// Remove an empty bucket: s3crypt rb s3://bucket.
    Rb(BucketArgs),
    /// Copy an object: s3crypt cp s3://bucket/key s3://bucket2/key2. It is re-encrypted (read and
    /// sealed again under a new data key, download and upload overlapped), unless its header
    /// stays the same (--bind bucket, same bucket): then S3 copies it byte for byte.
    Cp(CopyArgs),
    /// Move an object: copy as `cp`, then delete the source once the copy is complete.
    Mv(CopyArgs),
    /// Change who can decrypt an object, in place: it is re-encrypted under a new data key
    /// wrapped under the new set of keys, and replaces the object atomically (only if unchanged
    /// meanwhile). Costs a download and an upload of the object.
    Rewrap(RewrapArgs),
    /// Find objects and versions under a prefix that share a message id with different headers
    /// (advisory S3C-2026-01: written by cp, mv or rewrap before the fix, forgeable by whoever
    /// reads two of them): s3crypt scan-ids s3://bucket[/prefix]. Reads only headers (a HEAD
    /// and a ranged GET per object); no key needed. Exit code 14 if any are affected, 13 if some
    /// objects could not be read.
    ScanIds(ScanIdsArgs),
    /// Print a shell completion script: s3crypt completions bash > ~/.local/share/bash-completion/completions/s3crypt
    Completions(CompletionsArgs),
    /// Print the manual page (roff): s3crypt man | man -l -
    Man,
}

#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Affected objects are re-encrypted under a new data key and message id by \
`s3crypt rewrap --force` (it keeps the object's keys); then delete the old versions. See SECURITY.md, advisory S3C-2026-01."
)]
pub(crate) struct ScanIdsArgs {
    /// Keys that derive SSE-C keys (only with --sse-c; nothing is decrypted).
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub sse_c: SseCArgs,
    #[command(flatten)]
    pub s3: S3Args,
    /// JSON on stdout: one record (see the README's JSON schemas).
    #[arg(long)]
    pub json: bool,
    /// s3://bucket or s3://bucket/prefix.
    #[arg(value_name = "S3URL")]
    pub url: String,
}

#[derive(Debug, Args)]
pub(crate) struct CopyArgs {
    /// Keys that decrypt the source and wrap the new data key for the destination.
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Require this encryption context pair of the source (repeatable).
    #[arg(short = 'c', long = "context", value_name = "KEY=VALUE")]
    pub context: Vec<String>,
    /// Accept a source whose authenticated location differs from where it is read.
    #[arg(long)]
    pub allow_moved: bool,
    #[command(flatten)]
    pub sse_c: SseCArgs,
    /// A specific version of the source.
    #[arg(long, value_name = "ID")]
    pub version_id: Option<String>,
    /// No progress bar or summary.
    #[arg(short, long)]
    pub quiet: bool,
    /// Recursive: every object under the source prefix, to the destination prefix.
    #[arg(short = 'r', long)]
    pub recursive: bool,
    /// Objects copied at once with -r.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub jobs: usize,
    #[command(flatten)]
    pub s3: S3Args,
    /// JSON on stdout: one record per object (see the README's JSON schemas).
    #[arg(long)]
    pub json: bool,
    /// Source s3://bucket/key (with -r: s3://bucket/prefix).
    #[arg(value_name = "SRC")]
    pub src: String,
    /// Destination s3://bucket/key (with -r: s3://bucket/prefix).
    #[arg(value_name = "DST")]
    pub dst: String,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
s3crypt rewrap -k old.kr --add-key new.kr s3://bucket/key\n  \
s3crypt rewrap -k team.kr --add-kms-key alias/backup s3://bucket/key\n  \
s3crypt rewrap -k team.kr --remove-key s3crypt/key-2024 -r s3://bucket/dir/\n\n\
The object is re-encrypted under a new data key (a new header can never be tagged under the old \
one). Every key the object keeps must be available (-k, --kms-key): a key this command does not \
hold is named in the error; drop it with --remove-key or give it.")]
pub(crate) struct RewrapArgs {
    /// Keys that unwrap the object's data key.
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Also wrap the data key under this keyring file's primary key (repeatable).
    #[arg(long = "add-key", value_name = "KEYRING")]
    pub add_keys: Vec<PathBuf>,
    /// Also wrap the data key under this AWS KMS key (repeatable).
    #[arg(long = "add-kms-key", value_name = "ID")]
    pub add_kms_keys: Vec<String>,
    /// Drop the wrapped key of NAME (repeatable): NAMESPACE/NAME or NAME for a keyring key, the
    /// key ARN for KMS (as `s3crypt inspect` shows them). A bare NAME that names keys of two
    /// namespaces in an object is refused for that object.
    #[arg(long = "remove-key", value_name = "NAME")]
    pub remove_keys: Vec<String>,
    /// Re-encrypt under a new data key and message id even when the keys would stay the same
    /// (without it, such objects are left alone and reported unchanged). Alone, it re-encrypts
    /// under the same keys: the remedy for advisory S3C-2026-01.
    #[arg(long)]
    pub force: bool,
    /// Print nothing but errors.
    #[arg(short, long)]
    pub quiet: bool,
    /// Require this encryption context pair (repeatable).
    #[arg(short = 'c', long = "context", value_name = "KEY=VALUE")]
    pub context: Vec<String>,
    #[command(flatten)]
    pub sse_c: SseCArgs,
    /// Recursive: every object under the prefix.
    #[arg(short = 'r', long)]
    pub recursive: bool,
    /// Objects rewrapped at once with -r.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub jobs: usize,
    #[command(flatten)]
    pub s3: S3Args,
    /// JSON on stdout: one record per object (see the README's JSON schemas).
    #[arg(long)]
    pub json: bool,
    /// s3://bucket/key (with -r: s3://bucket/prefix).
    #[arg(value_name = "S3URL")]
    pub url: String,
}

/// SSE-C: S3 encrypts the object a second time with a per-object key that it never stores.
#[derive(Debug, Args, Clone, Default)]
pub(crate) struct SseCArgs {
    /// SSE-C: every request for the object carries a per-object key (S3 never stores it),
    /// derived from the keyring and the object's location, or computed by AWS KMS when
    /// --sse-c-kms-key (or $S3CRYPT_SSE_C_KMS_KEY, or `sse_c_kms_keys` in the config file) names
    /// an HMAC key. cp/mv: on source and destination, each with its own key.
    #[arg(long)]
    pub sse_c: bool,
    /// SSE-C with keys computed by AWS KMS (GenerateMac, HMAC-SHA-256) under this HMAC_256 key:
    /// no local key needed. Repeatable: the first writes, reads try each. Implies --sse-c.
    #[arg(long = "sse-c-kms-key", value_name = "ID")]
    pub sse_c_kms_keys: Vec<String>,
}

impl SseCArgs {
    /// Whether SSE-C is on.
    pub(crate) fn on(&self) -> bool {
        self.sse_c || !self.sse_c_kms_keys.is_empty()
    }
}

/// Where S3 is and how to reach it (the standard AWS environment and profiles apply too).
#[derive(Debug, Args, Clone)]
pub(crate) struct Endpoint {
    /// S3 endpoint for S3-compatible stores (also AWS_ENDPOINT_URL); implies path-style.
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// Region (also AWS_REGION / the profile).
    #[arg(long)]
    pub region: Option<String>,
    /// Named profile from ~/.aws/config (also AWS_PROFILE).
    #[arg(long)]
    pub profile: Option<String>,
    /// Path-style addressing (bucket in the path, not the host name).
    #[arg(long)]
    pub path_style: bool,
}

/// [`Endpoint`], and how objects are transferred and bound to their location.
#[derive(Debug, Args, Clone)]
pub(crate) struct S3Args {
    #[command(flatten)]
    pub endpoint: Endpoint,
    /// Parts (uploads) or ranged GETs (downloads) in flight at once [default: 8 parts, 16
    /// ranges].
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
    /// Plaintext bytes per multipart part and per ranged GET (at least 5 MiB).
    #[arg(long, value_name = "N", default_value = "16MiB")]
    pub part_size: String,
    /// Location binding: "key" (default: bucket and object key are authenticated; objects cannot
    /// be swapped) or "bucket" (only the bucket: needed for --cache-data-keys; objects within
    /// the bucket can be swapped by anyone who can write to it). Reads use it too.
    #[arg(long, value_name = "KIND", default_value = "key")]
    pub bind: String,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
s3crypt put report.pdf s3://bucket/reports/\n  \
tar c dir | s3crypt put - s3://bucket/backups/dir.tar\n  \
s3crypt put -r --jobs 16 photos/ s3://bucket/photos/\n  \
s3crypt put --kms-key alias/backup db.dump s3://bucket/db.dump")]
pub(crate) struct PutArgs {
    #[command(flatten)]
    pub keys: KeyArgs,
    /// With -r: reuse each data key for up to N objects (and at most --cache-max-age), instead
    /// of one key-service call per object. Needs --bind bucket; see SECURITY.md.
    #[arg(long, value_name = "N")]
    pub cache_data_keys: Option<u64>,
    /// Longest a cached data key is used, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub cache_max_age: u64,
    /// Encryption context pair (repeatable); the object's bucket and key are added.
    #[arg(short = 'c', long = "context", value_name = "KEY=VALUE")]
    pub context: Vec<String>,
    /// User metadata (repeatable): stored in clear, not authenticated.
    #[arg(long = "meta", value_name = "KEY=VALUE")]
    pub meta: Vec<String>,
    /// The plaintext's content type.
    #[arg(long, value_name = "TYPE")]
    pub content_type: Option<String>,
    #[command(flatten)]
    pub sse_c: SseCArgs,
    /// Ask S3 to encrypt at rest as well: AES256 (SSE-S3) or aws:kms (SSE-KMS).
    #[arg(long, value_name = "ALG")]
    pub sse: Option<String>,
    /// KMS key for --sse aws:kms.
    #[arg(long, value_name = "KEY")]
    pub sse_kms_key_id: Option<String>,
    /// Storage class (STANDARD, STANDARD_IA, GLACIER_IR, ...).
    #[arg(long, value_name = "CLASS")]
    pub storage_class: Option<String>,
    /// Object lock mode: GOVERNANCE or COMPLIANCE (needs --object-lock-retain-until).
    #[arg(long, value_name = "MODE")]
    pub object_lock_mode: Option<String>,
    /// Object lock retain-until date, RFC 3339 (e.g. 2030-01-01T00:00:00Z).
    #[arg(long, value_name = "DATE")]
    pub object_lock_retain_until: Option<String>,
    /// Plaintext bytes per frame (default 64KiB).
    #[arg(long, value_name = "N")]
    pub frame_size: Option<String>,
    /// Algorithm suite (see `s3crypt encrypt --help`).
    #[arg(long, value_name = "NAME")]
    pub suite: Option<String>,
    /// Recursive: SRC is a directory and the destination a prefix (objects in parallel).
    #[arg(short = 'r', long)]
    pub recursive: bool,
    /// Objects transferred at once with -r.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub jobs: usize,
    #[command(flatten)]
    pub s3: S3Args,
    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,
    /// JSON on stdout: one record per object (see the README's JSON schemas).
    #[arg(long)]
    pub json: bool,
    /// File to upload ("-" for stdin).
    #[arg(value_name = "SRC")]
    pub src: PathBuf,
    /// Destination s3://bucket/key.
    #[arg(value_name = "S3URL")]
    pub dst: String,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
s3crypt get s3://bucket/reports/report.pdf .\n  \
s3crypt get s3://bucket/backups/dir.tar - | tar x\n  \
s3crypt get --range 0-1023 s3://bucket/big.bin head.bin\n  \
s3crypt get -r s3://bucket/photos/ photos/")]
pub(crate) struct GetArgs {
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Require this encryption context pair (repeatable).
    #[arg(short = 'c', long = "context", value_name = "KEY=VALUE")]
    pub context: Vec<String>,
    /// Only this plaintext byte range: START-END (inclusive), START- or -SUFFIXLEN.
    #[arg(long, value_name = "RANGE", allow_hyphen_values = true)]
    pub range: Option<String>,
    /// A specific object version.
    #[arg(long, value_name = "ID")]
    pub version_id: Option<String>,
    #[command(flatten)]
    pub sse_c: SseCArgs,
    /// Accept an object whose authenticated location differs from where it is read (it was
    /// copied or moved). Without this, such objects are refused: see SECURITY.md.
    #[arg(long)]
    pub allow_moved: bool,
    /// Recursive: SRC is a prefix and DST a directory (objects in parallel).
    #[arg(short = 'r', long)]
    pub recursive: bool,
    /// Flush each output file to disk before renaming it into place (and its directory after),
    /// so that it survives a power failure. Slower when the disk is slower than the network.
    #[arg(long)]
    pub fsync: bool,
    /// Permissions of the files written (octal, e.g. 644), whatever the umask. Default 600:
    /// they hold plaintext.
    #[arg(long, value_name = "OCTAL", value_parser = parse_mode)]
    pub mode: Option<u32>,
    /// Objects transferred at once with -r.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub jobs: usize,
    #[command(flatten)]
    pub s3: S3Args,
    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,
    /// JSON records, one per object: on stdout, or on stderr when the data goes to stdout.
    #[arg(long)]
    pub json: bool,
    /// Source s3://bucket/key.
    #[arg(value_name = "S3URL")]
    pub src: String,
    /// Destination file ("-" for stdout): written under a temporary name, renamed when verified.
    #[arg(value_name = "DST")]
    pub dst: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct LsArgs {
    #[command(flatten)]
    pub s3: Endpoint,
    /// Every object under the prefix, not one level (no PRE lines).
    #[arg(short, long)]
    pub recursive: bool,
    /// Sizes in KiB, MiB, GiB.
    #[arg(long)]
    pub human_readable: bool,
    /// End with the number of objects and their total size.
    #[arg(long)]
    pub summarize: bool,
    /// Also show each object's plaintext size and suite (one HEAD per object, 16 at a time;
    /// without it, one request per 1,000 objects).
    #[arg(long)]
    pub plaintext_size: bool,
    /// JSON on stdout: one record per line (see the README's JSON schemas).
    #[arg(long)]
    pub json: bool,
    /// s3://bucket[/prefix]; none, or s3://, lists the buckets.
    #[arg(value_name = "S3URL")]
    pub url: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct BucketArgs {
    #[command(flatten)]
    pub s3: Endpoint,
    /// s3://bucket.
    #[arg(value_name = "S3URL")]
    pub url: String,
}

#[derive(Debug, Args)]
pub(crate) struct RmArgs {
    #[command(flatten)]
    pub s3: Endpoint,
    /// Delete every object under each prefix (DeleteObjects, 1,000 keys per request).
    #[arg(short, long)]
    pub recursive: bool,
    /// Print what would be deleted; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print nothing but errors.
    #[arg(short, long)]
    pub quiet: bool,
    /// JSON on stdout: one record per line (see the README's JSON schemas).
    #[arg(long)]
    pub json: bool,
    /// s3://bucket/key (or, with -r, s3://bucket[/prefix]); several may be given.
    #[arg(value_name = "S3URL", required = true)]
    pub urls: Vec<String>,
}

#[derive(Debug, Args)]
#[command(
    after_help = "The keyring file is created with mode 0600. Keep it private and backed up:\n\
without it nothing encrypted with it can be decrypted."
)]
pub(crate) struct KeygenArgs {
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
pub(crate) struct KeyArgs {
    /// Keyring file (repeatable). Default: $S3CRYPT_KEYRING (paths separated by ':'), then
    /// `keyrings` in the config file ($S3CRYPT_CONFIG or ~/.config/s3crypt/config.toml).
    #[arg(short = 'k', long = "keyring", value_name = "KEYRING")]
    pub keyrings: Vec<PathBuf>,
    /// AWS KMS key (repeatable): key ARN, key id, alias/NAME or alias ARN (decryption needs the
    /// key ARN). Default: $S3CRYPT_KMS_KEY (comma-separated), then `kms_keys` in the config file.
    /// Credentials, region and endpoint come from the standard AWS environment.
    #[arg(long = "kms-key", value_name = "ID")]
    pub kms_keys: Vec<String>,
    /// AWS KMS discovery: also try to decrypt with whatever KMS key ARN the message names, in the
    /// KMS client's region (--region / AWS_REGION). Decryption only (decrypt, get, rewrap).
    #[arg(long)]
    pub kms_discovery: bool,
    /// Limit --kms-discovery to keys of this AWS account (repeatable; implies --kms-discovery).
    #[arg(long = "kms-discovery-account", value_name = "ID")]
    pub kms_discovery_accounts: Vec<String>,
    /// The partition of the --kms-discovery-account keys.
    #[arg(long, value_name = "NAME", default_value = "aws")]
    pub kms_discovery_partition: String,
}

impl KeyArgs {
    /// Whether KMS discovery was asked for.
    pub(crate) fn discovery(&self) -> bool {
        self.kms_discovery || !self.kms_discovery_accounts.is_empty()
    }
}

#[derive(Debug, Args)]
pub(crate) struct EncryptArgs {
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
pub(crate) struct DecryptArgs {
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
pub(crate) struct IoArgs {
    /// Output file ("-" or absent: stdout). Written to a temporary file in the same directory
    /// and renamed into place only when complete.
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    pub output: Option<PathBuf>,
    /// Flush the output file to disk before renaming it into place (and its directory after),
    /// so that it survives a power failure. Slower when the disk is slower than the data.
    #[arg(long)]
    pub fsync: bool,
    /// Permissions of the output file (octal, e.g. 644), whatever the umask. Default 600.
    #[arg(long, value_name = "OCTAL", value_parser = parse_mode)]
    pub mode: Option<u32>,
    /// Worker threads (default: all cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,
    /// A JSON record when done: on stdout, or on stderr when the output goes to stdout.
    #[arg(long)]
    pub json: bool,
    /// Input file ("-" or absent: stdin).
    #[arg(value_name = "IN")]
    pub input: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub s3: Endpoint,
    /// Message file ("-" or absent: stdin), or s3://bucket/key.
    #[arg(value_name = "IN")]
    pub input: Option<PathBuf>,
}
