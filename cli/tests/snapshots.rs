//! Snapshots of what users and scripts read: `--help` of every command, and the shape of every
//! `--json` record (field names and types; values vary). A change shows up as a failing test
//! with a diff; accept it deliberately with `INSTA_UPDATE=always cargo test -p s3crypt-cli --test
//! snapshots` (or `cargo insta review`) and update the README's JSON schemas with it.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use s3crypt_test_support::servers::{start, Kind, Server};
use serde_json::{json, Value};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_s3crypt"));
    c.env_remove("S3CRYPT_KEYRING")
        .env_remove("S3CRYPT_KMS_KEY")
        .env_remove("S3CRYPT_CONFIG")
        .env("XDG_CONFIG_HOME", "/nonexistent")
        .env("HOME", "/nonexistent")
        .stdin(Stdio::null());
    c
}

fn ok(o: Output) -> Output {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o
}

/// Every command's name, and "" for the top level.
const COMMANDS: &[&str] = &[
    "",
    "keygen",
    "encrypt",
    "decrypt",
    "inspect",
    "put",
    "get",
    "ls",
    "rm",
    "mb",
    "rb",
    "cp",
    "mv",
    "rewrap",
    "scan-ids",
    "completions",
    "man",
];

#[test]
fn help_of_every_command() {
    for cmd in COMMANDS {
        let mut args: Vec<&str> = cmd.split_whitespace().collect();
        args.push("--help");
        let o = ok(bin().args(&args).output().unwrap());
        let name = if cmd.is_empty() { "top" } else { cmd };
        insta::assert_snapshot!(format!("help-{name}"), String::from_utf8(o.stdout).unwrap());
    }
}

/// A JSON value's shape: each value replaced by its type, objects by their fields' shapes,
/// arrays by the shape of their first element.
fn shape(v: &Value) -> Value {
    match v {
        Value::Null => json!("null"),
        Value::Bool(_) => json!("bool"),
        Value::Number(_) => json!("number"),
        Value::String(_) => json!("string"),
        Value::Array(a) => json!([a.first().map(shape).unwrap_or(json!("empty"))]),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
    }
}

/// The shapes of the JSON lines of `text`, one per distinct shape, in order.
fn shapes(text: &[u8]) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for line in String::from_utf8_lossy(text).lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let s = shape(&v);
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

struct S3 {
    server: Server,
    dir: tempfile::TempDir,
}

impl S3 {
    fn new() -> Option<Self> {
        let server = start(Kind::Moto)?;
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let s3 = server.s3();
        rt.block_on(async { s3.create_bucket().bucket("snap").send().await.unwrap() });
        let s = Self { server, dir };
        ok(s.cmd(&["keygen", "-o", s.p("k").to_str().unwrap()])
            .output()
            .unwrap());
        Some(s)
    }

    fn p(&self, n: &str) -> PathBuf {
        self.dir.path().join(n)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = bin();
        c.args(args)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL", &self.server.endpoint)
            .env("AWS_CONFIG_FILE", "/nonexistent")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
            .env("S3CRYPT_KEYRING", self.p("k"));
        c
    }

    /// The JSON shapes a command prints on stdout (it must succeed unless `code` says otherwise).
    fn json(&self, args: &[&str], code: i32) -> Vec<Value> {
        let o = self.cmd(args).output().unwrap();
        assert_eq!(
            o.status.code(),
            Some(code),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        shapes(&o.stdout)
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn json_schemas_of_every_command() {
    let Some(c) = S3::new() else {
        return;
    };
    std::fs::write(c.p("plain"), vec![7u8; 100_000]).unwrap();
    std::fs::create_dir_all(c.p("tree/sub")).unwrap();
    std::fs::write(c.p("tree/a"), b"a").unwrap();
    std::fs::write(c.p("tree/sub/b"), b"b").unwrap();
    let (plain, ct, out) = (c.p("plain"), c.p("ct"), c.p("out"));
    let mut all = serde_json::Map::new();
    let mut add = |name: &str, v: Vec<Value>| {
        all.insert(name.to_owned(), Value::Array(v));
    };
    add(
        "encrypt",
        c.json(&["encrypt", "--json", "-o", s(&ct), s(&plain)], 0),
    );
    add(
        "decrypt",
        c.json(&["decrypt", "--json", "-o", s(&out), s(&ct)], 0),
    );
    add(
        "decrypt --range",
        c.json(
            &["decrypt", "--json", "--range", "0-9", "-o", s(&out), s(&ct)],
            0,
        ),
    );
    add("inspect FILE", c.json(&["inspect", "--json", s(&ct)], 0));
    add(
        "put",
        c.json(&["put", "--json", s(&plain), "s3://snap/one"], 0),
    );
    add(
        "put -r",
        c.json(
            &["put", "-r", "--json", s(&c.p("tree")), "s3://snap/tree/"],
            0,
        ),
    );
    add(
        "get",
        c.json(&["get", "--json", "s3://snap/one", s(&out)], 0),
    );
    add(
        "get -r",
        c.json(
            &["get", "-r", "--json", "s3://snap/tree/", s(&c.p("back"))],
            0,
        ),
    );
    add(
        "inspect S3URL",
        c.json(&["inspect", "--json", "s3://snap/one"], 0),
    );
    add(
        "ls",
        c.json(&["ls", "--json", "--summarize", "s3://snap/tree/"], 0),
    );
    add(
        "ls --plaintext-size",
        c.json(&["ls", "--json", "--plaintext-size", "s3://snap/one"], 0),
    );
    add("ls (buckets)", c.json(&["ls", "--json"], 0));
    add(
        "cp",
        c.json(&["cp", "--json", "s3://snap/one", "s3://snap/two"], 0),
    );
    add(
        "mv",
        c.json(&["mv", "--json", "s3://snap/two", "s3://snap/three"], 0),
    );
    add(
        "rewrap",
        c.json(&["rewrap", "--json", "--force", "s3://snap/three"], 0),
    );
    add("scan-ids", c.json(&["scan-ids", "--json", "s3://snap/"], 0));
    add(
        "rm",
        c.json(&["rm", "--json", "s3://snap/three", "s3://snap/one"], 0),
    );
    add(
        "rm -r --dry-run",
        c.json(&["rm", "-r", "--dry-run", "--json", "s3://snap/tree/"], 0),
    );
    // Failures: the command's error record.
    add(
        "error",
        c.json(&["get", "--json", "s3://snap/nosuchkey", s(&out)], 10),
    );
    insta::assert_json_snapshot!("json-schemas", Value::Object(all));
}
