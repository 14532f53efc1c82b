//! Resolves arguments, environment and the config file into what the commands need.
//!
//! Keys come from, in order: `-k`/`--kms-key` flags; `S3CRYPT_KEYRING` (paths separated by ':')
//! and `S3CRYPT_KMS_KEY` (comma-separated); the `keyrings` and `kms_keys` lists of the config file (`S3CRYPT_CONFIG`, else `$XDG_CONFIG_HOME/s3crypt/config.toml`,
//! else `~/.config/s3crypt/config.toml`). The config file may also set `suite` and `frame_size`.

use std::path::{Path, PathBuf};

use s3crypt_core::keyring::file::LocalKeyring;
use s3crypt_core::keyring::multi::MultiKeyring;
use s3crypt_core::{EncryptionContext, Keyring};
use serde::Deserialize;

use crate::exit::Failure;

/// The config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfigFile {
    /// Keyring files used when no `-k` is given.
    #[serde(default)]
    pub keyrings: Vec<PathBuf>,
    /// AWS KMS keys used when no `-k`/`--kms-key` is given.
    #[serde(default)]
    pub kms_keys: Vec<String>,
    /// AWS KMS HMAC keys that compute SSE-C keys (instead of the keyring files) for --sse-c.
    #[serde(default)]
    pub sse_c_kms_keys: Vec<String>,
    /// Default suite for `encrypt`.
    pub suite: Option<String>,
    /// Default frame size for `encrypt`.
    pub frame_size: Option<String>,
}

fn config_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("S3CRYPT_CONFIG") {
        return Some(PathBuf::from(p));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("s3crypt").join("config.toml"))
}

fn expand_home(p: &Path) -> PathBuf {
    match (p.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => p.to_path_buf(),
    }
}

/// Loads the config file; a missing default file is an empty config, an explicit
/// `S3CRYPT_CONFIG` that is missing or any invalid or insecure file is an error.
pub(crate) fn load_config() -> Result<ConfigFile, Failure> {
    let Some(path) = config_path() else {
        return Ok(ConfigFile::default());
    };
    load_config_at(&path, std::env::var_os("S3CRYPT_CONFIG").is_some())
}

/// Largest config file read (checked before reading).
const MAX_CONFIG_LEN: u64 = 1 << 20;

/// Reads the config file at `path` (`None` if there is none). The file chooses the keys that
/// encrypt and decrypt, so whoever can change it controls them: it must be a regular file owned
/// by the user running s3crypt (or by root) that group and others cannot write. It is opened
/// without blocking (a FIFO or device is refused, not waited on) and checked as opened (`fstat`);
/// a symbolic link is followed, and the file it leads to is what is checked.
fn read_config(path: &Path) -> Result<Option<String>, Failure> {
    use rustix::fs::{Mode, OFlags};
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let shown = path.display();
    let cannot =
        |e: std::io::Error| Failure::Usage(format!("cannot read config file {shown}: {e}"));
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let fd = match rustix::fs::open(path, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(e) => return Err(cannot(e.into())),
    };
    let file = std::fs::File::from(fd);
    let meta = file.metadata().map_err(cannot)?;
    if !meta.is_file() {
        return Err(Failure::Usage(format!(
            "config file {shown} is not a regular file"
        )));
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(Failure::Usage(format!(
            "config file {shown} belongs to another user (uid {}; s3crypt runs as uid {me}), who \
             could choose your keys: s3crypt reads only config files of the user running it or \
             root; to take it over, run: chown {me} {shown} && chmod 600 {shown}",
            meta.uid()
        )));
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(Failure::Usage(format!(
            "config file {shown} is writable by group or others (mode {mode:o}), who could choose \
             your keys; run: chmod 600 {shown}"
        )));
    }
    if meta.len() > MAX_CONFIG_LEN {
        return Err(Failure::Usage(format!(
            "config file {shown} is larger than {MAX_CONFIG_LEN} bytes"
        )));
    }
    let mut text = String::new();
    file.take(MAX_CONFIG_LEN)
        .read_to_string(&mut text)
        .map_err(cannot)?;
    Ok(Some(text))
}

/// [`load_config`] from `path`; `required`: a missing file is an error (it was named explicitly).
fn load_config_at(path: &Path, required: bool) -> Result<ConfigFile, Failure> {
    let text = match read_config(path)? {
        Some(t) => t,
        None if !required => return Ok(ConfigFile::default()),
        None => {
            return Err(Failure::Usage(format!(
                "cannot read config file {}: it does not exist",
                path.display()
            )))
        }
    };
    let mut cfg: ConfigFile = toml::from_str(&text)
        .map_err(|e| Failure::Usage(format!("config file {}: {e}", path.display())))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    for k in &mut cfg.keyrings {
        let expanded = expand_home(k);
        // Relative keyring paths in the config file are relative to the file.
        *k = if expanded.is_relative() {
            dir.join(expanded)
        } else {
            expanded
        };
    }
    Ok(cfg)
}

/// The keys a command uses: local keyring files and AWS KMS keys.
#[derive(Debug, Clone, Default)]
pub(crate) struct Keys {
    /// Keyring files.
    pub paths: Vec<PathBuf>,
    /// KMS key identifiers.
    pub kms: Vec<String>,
    /// KMS discovery (decryption with any key the message names), with its optional filter.
    pub discovery: Option<Option<s3crypt_kms::DiscoveryFilter>>,
}

impl Keys {
    /// Whether any key is in AWS KMS (a KMS client is needed).
    pub(crate) fn uses_kms(&self) -> bool {
        !self.kms.is_empty() || self.discovery.is_some()
    }
}

/// Refuses KMS discovery for a command that encrypts (a discovery keyring has no key to wrap with).
pub(crate) fn refuse_discovery(a: &crate::args::KeyArgs, command: &str) -> Result<(), Failure> {
    if a.discovery() {
        return Err(Failure::Usage(format!(
            "--kms-discovery only decrypts; {command} needs keys to encrypt with (-k or --kms-key)"
        )));
    }
    Ok(())
}

/// The keys to use: flags (`-k`, `--kms-key`), then the environment (`S3CRYPT_KEYRING`,
/// `S3CRYPT_KMS_KEY`), then the config file (`keyrings`, `kms_keys`).
///
/// `--kms-discovery` adds a KMS discovery keyring to whichever keys those give (it may also be
/// the only key).
pub(crate) fn resolve_keys(a: &crate::args::KeyArgs, cfg: &ConfigFile) -> Result<Keys, Failure> {
    let discovery = if a.discovery() {
        Some(if a.kms_discovery_accounts.is_empty() {
            None
        } else {
            Some(s3crypt_kms::DiscoveryFilter::new(
                a.kms_discovery_partition.clone(),
                a.kms_discovery_accounts.iter().cloned(),
            )?)
        })
    } else {
        None
    };
    match resolve_key_lists(a, cfg) {
        Ok(mut keys) => {
            keys.discovery = discovery;
            Ok(keys)
        }
        // Only "no key configured" can fail here; discovery alone is a key.
        Err(Failure::Usage(_)) if discovery.is_some() => Ok(Keys {
            discovery,
            ..Keys::default()
        }),
        Err(e) => Err(e),
    }
}

fn resolve_key_lists(a: &crate::args::KeyArgs, cfg: &ConfigFile) -> Result<Keys, Failure> {
    if !a.keyrings.is_empty() || !a.kms_keys.is_empty() {
        return Ok(Keys {
            paths: a.keyrings.clone(),
            kms: a.kms_keys.clone(),
            discovery: None,
        });
    }
    let mut env = Keys::default();
    if let Some(v) = std::env::var_os("S3CRYPT_KEYRING") {
        env.paths = std::env::split_paths(&v)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
    }
    env.kms = env_list("S3CRYPT_KMS_KEY");
    if !env.paths.is_empty() || !env.kms.is_empty() {
        return Ok(env);
    }
    if !cfg.keyrings.is_empty() || !cfg.kms_keys.is_empty() {
        return Ok(Keys {
            paths: cfg.keyrings.clone(),
            kms: cfg.kms_keys.clone(),
            discovery: None,
        });
    }
    Err(Failure::Usage(
        "no keyring: pass -k KEYRING or --kms-key ID, set S3CRYPT_KEYRING or S3CRYPT_KMS_KEY, or list \
         keyrings/kms_keys in ~/.config/s3crypt/config.toml (create a keyring with: s3crypt keygen -o KEYRING)"
            .into(),
    ))
}

/// Loads every key into one multi-keyring: on encrypt each keyring file's primary key and each
/// KMS key wraps the data key (the first one generates it); on decrypt any of them may unwrap it
/// (local keys are tried first: no network round trip).
pub(crate) fn load_keys(keys: &Keys) -> Result<MultiKeyring, Failure> {
    load_keys_with(keys, None)
}

/// [`load_keys`] with a given KMS client (default: one from the standard AWS environment).
pub(crate) fn load_keys_with(
    keys: &Keys,
    kms: Option<aws_sdk_kms::Client>,
) -> Result<MultiKeyring, Failure> {
    let mut multi = MultiKeyring::default();
    for p in &keys.paths {
        multi.push(Box::new(LocalKeyring::load(p)?) as Box<dyn Keyring>);
    }
    if !keys.kms.is_empty() || keys.discovery.is_some() {
        let client = match kms {
            Some(c) => c,
            None => s3crypt_kms::client_from_env_blocking()?,
        };
        for id in &keys.kms {
            multi.push(Box::new(
                s3crypt_kms::KmsKeyring::new(client.clone(), id.clone())?
                    .with_call_counter(kms_calls().clone()),
            ) as Box<dyn Keyring>);
        }
        // Last: configured keys are tried before asking KMS about whatever the message names.
        if let Some(filter) = &keys.discovery {
            multi.push(Box::new(
                s3crypt_kms::KmsKeyring::discovery(client.clone(), filter.clone())
                    .with_call_counter(kms_calls().clone()),
            ) as Box<dyn Keyring>);
        }
    }
    Ok(multi)
}

/// The KMS requests every keyring of this process made (for summaries).
pub(crate) fn kms_calls() -> &'static std::sync::Arc<s3crypt_kms::KmsCallCounter> {
    static CALLS: std::sync::OnceLock<std::sync::Arc<s3crypt_kms::KmsCallCounter>> =
        std::sync::OnceLock::new();
    CALLS.get_or_init(Default::default)
}

/// The SSE-C key source of the keyrings: every key of every file, the first file's primary
/// first (it derives keys for new objects).
pub(crate) fn load_sse_c(paths: &[PathBuf]) -> Result<s3crypt::sse_c::LocalSseC, Failure> {
    if paths.is_empty() {
        return Err(Failure::Usage(
            "--sse-c derives its keys from a keyring file (-k KEYRING) or from an AWS KMS HMAC key \
             (--sse-c-kms-key ID): pass one"
                .into(),
        ));
    }
    let files = paths
        .iter()
        .map(|p| s3crypt_core::keyring::file::KeyringFile::load(p))
        .collect::<Result<Vec<_>, _>>()?;
    // Each secret is copied straight into its wiped slot: sized up front, the vector never
    // reallocates (which would leave copies behind), and no key passes through the stack.
    let mut secrets = Vec::with_capacity(files.iter().map(|f| f.keys().count()).sum());
    for k in files.iter().flat_map(|f| f.keys()) {
        secrets.push(zeroize::Zeroizing::new([0u8; 32]));
        if let Some(slot) = secrets.last_mut() {
            slot.copy_from_slice(k.key.as_bytes());
        }
    }
    Ok(s3crypt::sse_c::LocalSseC::new(secrets)?)
}

/// The KMS HMAC keys that compute SSE-C keys: `--sse-c-kms-key` flags; else none if keyring
/// files are given on the command line (`-k`: the command line beats the environment); else
/// `S3CRYPT_SSE_C_KMS_KEY` (comma-separated), else `sse_c_kms_keys` in the config file. Empty:
/// SSE-C keys are derived from the keyring files.
pub(crate) fn resolve_sse_c_kms_keys(
    a: &crate::args::SseCArgs,
    keys: &crate::args::KeyArgs,
    cfg: &ConfigFile,
) -> Vec<String> {
    if !a.sse_c_kms_keys.is_empty() {
        return a.sse_c_kms_keys.clone();
    }
    if !keys.keyrings.is_empty() {
        return Vec::new();
    }
    let env = env_list("S3CRYPT_SSE_C_KMS_KEY");
    if !env.is_empty() {
        return env;
    }
    cfg.sse_c_kms_keys.clone()
}

/// A comma-separated list from the environment (empty items dropped).
fn env_list(name: &str) -> Vec<String> {
    std::env::var(name)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The SSE-C key source of AWS KMS HMAC keys (the first one computes keys for new objects).
pub(crate) fn load_kms_sse_c(
    ids: &[String],
    client: aws_sdk_kms::Client,
) -> Result<s3crypt::sse_c::KmsSseC, Failure> {
    let keys = ids
        .iter()
        .map(|id| s3crypt_kms::KmsHmacKey::new(client.clone(), id.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(s3crypt::sse_c::KmsSseC::new(keys)?)
}

/// Parses `KEY=VALUE` pairs into a context.
pub(crate) fn parse_context(pairs: &[String]) -> Result<EncryptionContext, Failure> {
    let mut ctx = EncryptionContext::new();
    for p in pairs {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| Failure::Usage(format!("context pair {p:?} is not KEY=VALUE")))?;
        ctx.insert(k, v)?;
    }
    Ok(ctx)
}

/// Parses a byte size: `65536`, `64K`, `64KiB`, `1M`, `1MiB` (K and M are binary units).
pub(crate) fn parse_size(s: &str) -> Result<u64, Failure> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| Failure::Usage(format!("invalid size {s:?}")))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" | "kb" => 1 << 10,
        "m" | "mib" | "mb" => 1 << 20,
        "g" | "gib" | "gb" => 1 << 30,
        _ => {
            return Err(Failure::Usage(format!(
                "invalid size unit in {s:?} (use K, KiB, M, MiB, G, GiB)"
            )))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| Failure::Usage(format!("size {s:?} is too large")))
}

/// Resolves the suite and frame length for new messages: flag, then config file, then default.
pub(crate) fn encryption(
    suite: Option<&str>,
    frame_size: Option<&str>,
    cfg: &ConfigFile,
) -> Result<(s3crypt_core::Suite, u32), Failure> {
    let suite = match suite.or(cfg.suite.as_deref()) {
        Some(s) => s.parse()?,
        None => s3crypt_core::Suite::DEFAULT,
    };
    let frame = match frame_size.or(cfg.frame_size.as_deref()) {
        Some(s) => u32::try_from(parse_size(s)?)
            .map_err(|_| Failure::Usage(format!("frame size {s} is too large")))?,
        None => s3crypt_core::DEFAULT_FRAME_LENGTH,
    };
    Ok((suite, frame))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("65536").ok(), Some(65536));
        assert_eq!(parse_size("64KiB").ok(), Some(65536));
        assert_eq!(parse_size("1M").ok(), Some(1 << 20));
        assert!(parse_size("1X").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn world_writable_config_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.toml");
        std::fs::write(&p, "kms_keys = [\"alias/attacker\"]\n").unwrap();
        for mode in [0o666, 0o646, 0o664] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            let Err(Failure::Usage(m)) = load_config_at(&p, true) else {
                panic!("mode {mode:o} accepted");
            };
            assert!(
                m.contains("writable by group or others")
                    && m.contains(&format!("chmod 600 {}", p.display())),
                "{m}"
            );
        }
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let cfg = load_config_at(&p, true).unwrap();
        assert_eq!(cfg.kms_keys, ["alias/attacker"]);
        // Missing: an empty config, unless named explicitly.
        let gone = dir.path().join("none.toml");
        assert!(load_config_at(&gone, false).unwrap().kms_keys.is_empty());
        assert!(matches!(
            load_config_at(&gone, true),
            Err(Failure::Usage(_))
        ));
    }

    #[test]
    fn config_of_another_user_or_not_a_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let Err(Failure::Usage(m)) = load_config_at(dir.path(), true) else {
            panic!("a directory accepted");
        };
        assert!(m.contains("not a regular file"), "{m}");
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        // O_NONBLOCK: refused at once rather than waiting for a writer.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(matches!(
                load_config_at(&fifo, true),
                Err(Failure::Usage(_))
            ));
        });
        let refused = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("reading a FIFO as the config file blocked");
        assert!(refused);
        if rustix::process::geteuid().as_raw() != 0 {
            eprintln!("note: not root, cannot give a file to another user; skipping that part");
            return;
        }
        let p = dir.path().join("config.toml");
        std::fs::write(&p, "").unwrap();
        std::os::unix::fs::chown(&p, Some(65534), None).unwrap();
        let Err(Failure::Usage(m)) = load_config_at(&p, true) else {
            panic!("another user's config accepted");
        };
        assert!(m.contains("belongs to another user (uid 65534"), "{m}");
    }

    #[test]
    fn context_pairs() {
        let c = parse_context(&["a=b=c".into(), "x=".into()]).ok().unwrap();
        assert_eq!(c.get("a"), Some("b=c"));
        assert_eq!(c.get("x"), Some(""));
        assert!(parse_context(&["novalue".into()]).is_err());
        assert!(parse_context(&["a=1".into(), "a=2".into()]).is_err());
    }
}
