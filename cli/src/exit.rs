//! Errors of the command and their exit codes (listed in `--help`).

use std::process::ExitCode;

use s3crypt_core::text::printable;
use s3crypt_core::Error;

/// A failure of a command: what to print and which exit code to return.
#[derive(Debug)]
pub(crate) enum Failure {
    /// A core error (its class decides the exit code).
    Core(Error),
    /// Usage or configuration error (exit 2).
    Usage(String),
    /// Reading or writing failed (exit 3); the string says what.
    Io(String, std::io::Error),
    /// The consumer of stdout went away: exit quietly.
    BrokenPipe,
    /// An S3-layer error.
    S3(s3crypt::Error),
    /// SIGINT (Ctrl-C), SIGTERM or SIGHUP: the command stopped cleanly (exit 128 + n).
    Interrupted(crate::signals::Signal),
    /// A recursive transfer in which some objects failed (each was reported already).
    Partial(usize),
    /// `scan-ids` found messages affected by advisory S3C-2026-01 (each was reported already).
    Affected(usize),
}

impl From<s3crypt::Error> for Failure {
    fn from(e: s3crypt::Error) -> Self {
        match e {
            s3crypt::Error::Crypto(c) => c.into(),
            s3crypt::Error::Cancelled => {
                Failure::Interrupted(crate::signals::which().unwrap_or(crate::signals::Signal::INT))
            }
            other => Failure::S3(other),
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        match e {
            Error::Io(io) if io.kind() == std::io::ErrorKind::BrokenPipe => Failure::BrokenPipe,
            Error::InvalidArgument(m) => Failure::Usage(m),
            other => Failure::Core(other),
        }
    }
}

pub(crate) fn code_of(e: &Error) -> u8 {
    match e {
        Error::Truncated(_)
        | Error::Malformed(_)
        | Error::Unsupported(_)
        | Error::LimitExceeded(_) => 4,
        Error::Authentication => 5,
        Error::NoDecryptableKey(_) => 6,
        Error::ContextMismatch(_) => 7,
        Error::Keyring(_) => 8,
        Error::RangeNotSatisfiable { .. } => 9,
        Error::InvalidArgument(_) => 2,
        Error::Io(_) => 3,
        _ => 1,
    }
}

/// One line for an S3-layer error: its `Display`, then what the service said (S3's or KMS's
/// message), or for a request that got no answer, the innermost cause (`Connection refused`).
fn s3_line(e: &s3crypt::Error) -> String {
    let mut line = e.to_string();
    let extra = match e {
        s3crypt::Error::Transport { .. } => root_cause(e),
        _ => e.service_message().map(str::to_owned),
    };
    if let Some(x) = extra.filter(|x| !x.is_empty() && !line.contains(x.as_str())) {
        line.push_str(": ");
        line.push_str(&x);
    }
    line
}

/// One line for a core error: its `Display`, then a key service's own message.
fn core_line(e: &Error) -> String {
    let mut line = e.to_string();
    if let Error::Keyring(k) = e {
        if let Some(m) = k.service_message().filter(|m| !line.contains(m)) {
            line.push_str(": ");
            line.push_str(m);
        }
    }
    line
}

/// The innermost cause in an error's chain of sources.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur = e.source()?;
    while let Some(next) = cur.source() {
        cur = next;
    }
    Some(cur.to_string())
}

static VERBOSE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `-v`: errors come with their whole chain of causes (the SDK's own words).
pub(crate) fn set_verbose(on: bool) {
    VERBOSE.store(on, std::sync::atomic::Ordering::Relaxed);
}

fn verbose() -> bool {
    VERBOSE.load(std::sync::atomic::Ordering::Relaxed)
}

/// Each cause of `e`, one per line (escaped: they quote S3's answers).
fn print_chain(e: &(dyn std::error::Error + 'static)) {
    for line in chain_lines(e) {
        eprintln!("{line}");
    }
}

fn chain_lines(e: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push(format!(
            "  caused by: {}",
            printable(&c.to_string(), usize::MAX)
        ));
        cur = c.source();
    }
    out
}

impl Failure {
    /// The message, printed once (for per-object reports in recursive transfers), with control
    /// characters escaped: messages quote object keys, S3's and KMS's answers.
    pub(crate) fn describe(&self) -> String {
        let msg = match self {
            Failure::Core(e) => core_line(e),
            Failure::Usage(m) => m.clone(),
            Failure::Io(w, e) => format!("{w}: {e}"),
            Failure::S3(e) => s3_line(e),
            Failure::BrokenPipe => "broken pipe".into(),
            Failure::Interrupted(s) => format!("interrupted ({})", s.name()),
            Failure::Partial(n) => format!("{n} object(s) failed"),
            Failure::Affected(n) => format!("{n} message id(s) with different headers"),
        };
        printable(&msg, usize::MAX)
    }

    /// A short class name for JSON error records: the library's error classes, plus `usage`,
    /// `io`, `interrupted`, `partial` and `affected`.
    pub(crate) fn class(&self) -> &'static str {
        match self {
            Failure::Core(e) => e.class(),
            Failure::S3(e) => e.class(),
            Failure::Usage(_) => "usage",
            Failure::Io(..) => "io",
            Failure::BrokenPipe => "broken-pipe",
            Failure::Interrupted(_) => "interrupted",
            Failure::Partial(_) => "partial",
            Failure::Affected(_) => "affected",
        }
    }

    /// Exit code, message and hint.
    pub(crate) fn summary(&self) -> (u8, String, Option<String>) {
        let owned = |h: Option<&str>| h.map(str::to_owned);
        match self {
            Failure::BrokenPipe => (0, "broken pipe".into(), None),
            Failure::Interrupted(s) => (s.exit_code(), format!("interrupted ({})", s.name()), None),
            Failure::Partial(n) => (
                13,
                format!("{n} object(s) failed or were refused (see above)"),
                None,
            ),
            Failure::Affected(n) => (
                14,
                format!("{n} message id(s) are shared by objects with different headers (see above)"),
                owned(Some("re-encrypt them with `s3crypt rewrap --force` and delete their old versions (SECURITY.md, advisory S3C-2026-01)")),
            ),
            Failure::S3(e) => {
                if let Some(x) = crate::aws_env::explain(e) {
                    return x;
                }
                let code = match e {
                    s3crypt::Error::NotFound { .. } | s3crypt::Error::NoSuchBucket { .. } => 10,
                    s3crypt::Error::Service { .. } | s3crypt::Error::Transport { .. } => 11,
                    s3crypt::Error::NotEncrypted { .. } => 12,
                    s3crypt::Error::InvalidArgument(_) => 2,
                    s3crypt::Error::Io(_) => 3,
                    _ => 1,
                };
                (code, s3_line(e), None)
            }
            Failure::Usage(m) => (2, m.clone(), None),
            Failure::Io(what, e) => (3, format!("{what}: {e}"), None),
            Failure::Core(Error::Io(e)) => (3, format!("I/O error: {e}"), None),
            Failure::Core(e) => {
                let hint = match e {
                    Error::NoDecryptableKey(_) => Some("pass the keyring that encrypted it with -k (s3crypt inspect shows which key it needs)"),
                    Error::Authentication => Some("the message was modified or corrupted; nothing that failed authentication was written"),
                    Error::Truncated(_) => Some("the message is incomplete (interrupted copy or upload?)"),
                    Error::ContextMismatch(m) if m.contains("s3crypt:") => Some(
                        "the object was written to another location (copied or moved, or substituted); \
                         pass --allow-moved if you trust that it was moved",
                    ),
                    _ => None,
                };
                (code_of(e), core_line(e), owned(hint))
            }
        }
    }

    /// Prints the error (and with `--json`, an error record) and returns the exit code.
    pub(crate) fn report(self) -> ExitCode {
        if matches!(self, Failure::BrokenPipe) {
            return ExitCode::SUCCESS;
        }
        let (code, msg, hint) = self.summary();
        // Messages quote untrusted text (object keys, S3's and KMS's answers): no control
        // sequence reaches the terminal.
        let msg = printable(&msg, usize::MAX);
        let hint = hint.map(|h| printable(&h, usize::MAX));
        eprintln!("s3crypt: error: {msg}");
        if let Some(h) = &hint {
            eprintln!("  hint: {h}");
        }
        if verbose() {
            match &self {
                Failure::S3(e) => print_chain(e),
                Failure::Core(e) => print_chain(e),
                Failure::Io(_, e) => print_chain(e),
                _ => {}
            }
        }
        crate::json_out::emit(serde_json::json!({
            "error": crate::json_out::error(code, self.class(), &msg, hint.as_deref())
        }));
        ExitCode::from(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_escape_object_keys() {
        // An object key (anyone's who can write to the bucket) quoted in an error message.
        let f = Failure::S3(s3crypt::Error::NotFound {
            bucket: "b".into(),
            key: "x\u{1b}]0;pwned\u{7}\u{202e}".into(),
        });
        let msg = f.describe();
        assert!(!msg.chars().any(char::is_control), "{msg:?}");
        assert!(
            msg.contains("s3://b/x\\u{1b}]0;pwned\\u{7}\\u{202e} does not exist"),
            "{msg}"
        );
    }
}
