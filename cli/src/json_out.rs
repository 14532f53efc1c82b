//! `--json`: where JSON goes and what every record shares (the schemas are in the README and
//! frozen by the snapshot tests in `cli/tests/snapshots/`).
//!
//! * One JSON object per line, on stdout; on stderr only when stdout carries the data itself
//!   (`encrypt`/`decrypt`/`get` writing to `-`).
//! * Every record names its `operation` (the command). Objects are `bucket` and `key` (for a
//!   copy, the destination; the source is `source: {bucket, key}`). Sizes end in `_bytes`:
//!   `plaintext_bytes`, `stored_bytes` (what S3 holds), `header_bytes`. Suites are their id,
//!   `"0x0478"`. Dates are RFC 3339 in UTC.
//! * Failures are records too: a per-object failure of a recursive command is
//!   `{"operation", "bucket", "key", "error": {...}}`, and a command that fails ends with
//!   `{"operation", "error": {"exit_code", "class", "message", "hint"}}` (the human message still
//!   goes to stderr).

use std::sync::OnceLock;

use serde_json::{json, Value};

struct Mode {
    operation: &'static str,
    to_stderr: bool,
}

static MODE: OnceLock<Mode> = OnceLock::new();

/// Turns JSON output on for `operation`; `data_on_stdout` when stdout carries the command's data.
pub(crate) fn enable(operation: &'static str, data_on_stdout: bool) {
    let _ = MODE.set(Mode {
        operation,
        to_stderr: data_on_stdout,
    });
}

/// Whether `--json` is on.
pub(crate) fn on() -> bool {
    MODE.get().is_some()
}

/// Prints one record (with `operation` added when missing).
pub(crate) fn emit(mut v: Value) {
    let Some(m) = MODE.get() else { return };
    if let Some(o) = v.as_object_mut() {
        o.entry("operation").or_insert_with(|| json!(m.operation));
    }
    // A vanished reader of stdout is reported by the command's own writes.
    match m.to_stderr {
        true => eprintln!("{v}"),
        false => {
            use std::io::Write;
            let _ = writeln!(std::io::stdout().lock(), "{v}");
        }
    }
}

/// `{"exit_code", "class", "message", "hint"}` for an error record.
pub(crate) fn error(exit_code: u8, class: &str, message: &str, hint: Option<&str>) -> Value {
    json!({"exit_code": exit_code, "class": class, "message": message, "hint": hint})
}
