//! End-to-end tests of the `s3crypt` binary: exit codes, atomic output, stdin/stdout, keyrings.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_s3crypt"));
    c.env_remove("S3CRYPT_KEYRING")
        .env_remove("S3CRYPT_CONFIG")
        .env("XDG_CONFIG_HOME", "/nonexistent");
    c.env("HOME", "/nonexistent");
    c
}

fn run(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut c = bin();
    c.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut si = child.stdin.take().unwrap();
    if let Some(data) = stdin {
        // A command that fails before reading its input closes the pipe: that is its answer.
        if let Err(e) = si.write_all(data) {
            assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
        }
    }
    drop(si);
    child.wait_with_output().unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        let e = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        let o = run(&["keygen", "-o", e.p("k1").to_str().unwrap()], None);
        assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
        e
    }
    fn p(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn s(&self, name: &str) -> String {
        self.p(name).to_str().unwrap().to_owned()
    }
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 7 + 3) % 251) as u8).collect()
}

#[test]
fn file_round_trip_with_context_and_json() {
    let e = Env::new();
    let pt = pattern(300_000);
    std::fs::write(e.p("plain"), &pt).unwrap();
    let o = run(
        &[
            "encrypt",
            "-k",
            &e.s("k1"),
            "-c",
            "purpose=test",
            "--frame-size",
            "4KiB",
            "-o",
            &e.s("ct"),
            &e.s("plain"),
            "--json",
        ],
        None,
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    // With -o FILE, the JSON record is on stdout.
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["operation"], "encrypt");
    assert_eq!(summary["plaintext_bytes"], 300_000);
    assert_eq!(summary["frame_length"], 4096);
    let o = run(
        &[
            "decrypt",
            "-k",
            &e.s("k1"),
            "-c",
            "purpose=test",
            "-o",
            &e.s("back"),
            &e.s("ct"),
        ],
        None,
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read(e.p("back")).unwrap(), pt);
    let o = run(&["inspect", "--json", &e.s("ct")], None);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["suite"], "0x0478");
    assert_eq!(v["framing"], "framed");
    assert_eq!(v["encryption_context"]["purpose"], "test");
    assert_eq!(v["plaintext_bytes"], 300_000);
    assert_eq!(v["encrypted_data_keys"][0]["kind"], "raw-aes");
    let text = String::from_utf8_lossy(&o.stdout).to_string()
        + &String::from_utf8_lossy(&run(&["inspect", &e.s("ct")], None).stdout);
    let keyring = std::fs::read_to_string(e.p("k1")).unwrap();
    let secret = keyring
        .lines()
        .last()
        .unwrap()
        .split_whitespace()
        .last()
        .unwrap();
    assert!(
        !text.contains(secret),
        "inspect must never print key material"
    );
}

#[test]
fn stdin_to_stdout_for_every_suite() {
    let e = Env::new();
    let pt = pattern(200_001);
    for suite in [
        "aes256gcm-commit",
        "aes256gcm-commit-p384",
        "chacha20poly1305-commit",
    ] {
        let o = run(&["encrypt", "-k", &e.s("k1"), "--suite", suite], Some(&pt));
        assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
        let o = run(&["decrypt", "-k", &e.s("k1"), "-"], Some(&o.stdout));
        assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
        assert!(o.stdout == pt, "{suite}");
    }
}

#[test]
fn exit_codes_and_no_partial_output() {
    let e = Env::new();
    run(&["keygen", "-o", &e.s("k2")], None);
    let pt = pattern(100_000);
    std::fs::write(e.p("plain"), &pt).unwrap();
    let o = run(
        &[
            "encrypt",
            "-k",
            &e.s("k1"),
            "-c",
            "a=b",
            "--frame-size",
            "1024",
            "-o",
            &e.s("ct"),
            &e.s("plain"),
        ],
        None,
    );
    assert_eq!(code(&o), 0);
    // Transfer options are refused where nothing is transferred (usage error, nothing sent).
    for args in [
        &["ls", "--bind", "bucket", "s3://b"][..],
        &["rm", "--part-size", "8MiB", "s3://b/k"],
        &["inspect", "--concurrency", "2", &e.s("ct")],
    ] {
        assert_eq!(code(&run(args, None)), 2, "{args:?}");
    }
    let ct = std::fs::read(e.p("ct")).unwrap();
    let out = e.s("out");
    let decrypt = |file: &str, extra: &[&str]| {
        let mut args = vec!["decrypt", "-o", &out, file];
        args.extend_from_slice(extra);
        let o = run(&args, None);
        (code(&o), String::from_utf8_lossy(&o.stderr).into_owned())
    };
    let mut flipped = ct.clone();
    let n = flipped.len();
    flipped[n / 2] ^= 1;
    std::fs::write(e.p("flipped"), &flipped).unwrap();
    std::fs::write(e.p("truncated"), &ct[..n - 10]).unwrap();
    let (k1, k2) = (e.s("k1"), e.s("k2"));
    let cases: Vec<(&str, Vec<&str>, i32)> = vec![
        ("flipped", vec!["-k", &k1], 5),
        ("flipped", vec!["-k", &k1, "--fsync"], 5),
        ("truncated", vec!["-k", &k1], 4),
        ("ct", vec!["-k", &k2], 6),
        ("ct", vec!["-k", &k1, "-c", "a=c"], 7),
        ("ct", vec!["-k", "/nonexistent/keyring"], 8),
        ("ct", vec![], 2),
        ("missing-input", vec!["-k", &k1], 3),
    ];
    for (file, extra, want) in cases {
        let _ = std::fs::remove_file(&out);
        let (c, err) = decrypt(&e.s(file), &extra);
        assert_eq!(c, want, "{file} {extra:?}: {err}");
        assert!(err.starts_with("s3crypt: error: "), "{err}");
        assert!(
            !Path::new(&out).exists(),
            "{file}: partial output left under the target name"
        );
    }
    // Nothing but the inputs and keyrings in the directory: temporary files were removed.
    let mut names: Vec<_> = std::fs::read_dir(e.dir.path())
        .unwrap()
        .map(|d| d.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["ct", "flipped", "k1", "k2", "plain", "truncated"]);
    // A tampered message to stdout: only authenticated frames come out, and the exit code says so.
    let o = run(&["decrypt", "-k", &e.s("k1"), &e.s("flipped")], None);
    assert_eq!(code(&o), 5);
    assert!(pt.starts_with(&o.stdout) && o.stdout.len() < pt.len());
    // --fsync: the same output, flushed before the rename.
    let (c, err) = decrypt(&e.s("ct"), &["-k", &k1, "--fsync"]);
    assert_eq!(c, 0, "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), pt);
}

#[cfg(unix)]
#[test]
fn keyring_permissions_import_and_rotation() {
    use std::os::unix::fs::PermissionsExt;
    let e = Env::new();
    assert_eq!(
        std::fs::metadata(e.p("k1")).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        code(&run(&["keygen", "-o", &e.s("k1")], None)),
        2,
        "no silent overwrite"
    );
    // Import a raw 32-byte key under a chosen namespace/name; hex and base64 work too.
    std::fs::write(e.p("raw"), [0x11u8; 32]).unwrap();
    let o = run(
        &[
            "keygen",
            "-o",
            &e.s("imp"),
            "--namespace",
            "s3crypt-test",
            "--name",
            "key-1",
            "--import",
            &e.s("raw"),
        ],
        None,
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::write(e.p("hex"), "11".repeat(32) + "\n").unwrap();
    assert_eq!(
        code(&run(
            &["keygen", "-o", &e.s("imp2"), "--import", &e.s("hex")],
            None
        )),
        0
    );
    std::fs::write(e.p("short"), [1u8; 31]).unwrap();
    assert_eq!(
        code(&run(
            &["keygen", "-o", &e.s("imp3"), "--import", &e.s("short")],
            None
        )),
        2
    );
    // Rotation: old messages stay readable, new ones use the new primary.
    let old = run(&["encrypt", "-k", &e.s("k1")], Some(b"old"));
    assert_eq!(
        code(&run(
            &["keygen", "-o", &e.s("k1"), "--rotate", "--name", "second"],
            None
        )),
        0
    );
    assert_eq!(
        std::fs::metadata(e.p("k1")).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let new = run(&["encrypt", "-k", &e.s("k1")], Some(b"new"));
    let o = run(&["inspect", "--json"], Some(&new.stdout));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["encrypted_data_keys"][0]["key_name"], "second");
    assert_eq!(
        run(&["decrypt", "-k", &e.s("k1")], Some(&old.stdout)).stdout,
        b"old"
    );
    // Over-permissive keyrings are refused.
    std::fs::set_permissions(e.p("k1"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = run(&["decrypt", "-k", &e.s("k1")], Some(&new.stdout));
    assert_eq!(code(&o), 8);
    assert!(String::from_utf8_lossy(&o.stderr).contains("chmod 600"));
}

#[test]
fn default_keyring_from_environment_and_config() {
    let e = Env::new();
    let ct = bin()
        .args(["encrypt"])
        .env("S3CRYPT_KEYRING", e.p("k1"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        ct.status.success(),
        "{}",
        String::from_utf8_lossy(&ct.stderr)
    );
    std::fs::write(e.p("config.toml"), "keyrings = [\"k1\"]\n").unwrap();
    // Writable only by its owner (whatever the umask), or it is refused.
    std::fs::set_permissions(
        e.p("config.toml"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let mut c = bin();
    c.env("S3CRYPT_CONFIG", e.p("config.toml"))
        .args(["decrypt"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child.stdin.take().unwrap().write_all(&ct.stdout).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success());
    assert!(o.stdout.is_empty());
}

#[test]
fn ranges_on_files() {
    let e = Env::new();
    let pt = pattern(50_000);
    std::fs::write(e.p("plain"), &pt).unwrap();
    run(
        &[
            "encrypt",
            "-k",
            &e.s("k1"),
            "--frame-size",
            "1024",
            "-o",
            &e.s("ct"),
            &e.s("plain"),
        ],
        None,
    );
    for (spec, want) in [
        ("0-0", &pt[0..1]),
        ("1000-2999", &pt[1000..3000]),
        ("49990-", &pt[49990..]),
        ("-5", &pt[49995..]),
        ("49000-999999", &pt[49000..]),
    ] {
        let o = run(
            &["decrypt", "-k", &e.s("k1"), "--range", spec, &e.s("ct")],
            None,
        );
        assert_eq!(
            code(&o),
            0,
            "{spec}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(o.stdout == want, "{spec}");
    }
    assert_eq!(
        code(&run(
            &["decrypt", "-k", &e.s("k1"), "--range", "50000-", &e.s("ct")],
            None
        )),
        9
    );
}

/// Ranges longer than one read step (8 MiB of ciphertext: 127 frames of 64 KiB, see RANGE_STEP in
/// cli/src/commands/decrypt.rs) are read, authenticated and written a step at a time; a frame tampered
/// with in a later step fails the whole range, and nothing appears under the output's name.
#[test]
fn long_ranges_on_files_go_step_by_step() {
    let e = Env::new();
    let n = 20 * 1024 * 1024 + 123;
    let pt = pattern(n);
    std::fs::write(e.p("plain"), &pt).unwrap();
    let o = run(
        &[
            "encrypt",
            "-k",
            &e.s("k1"),
            "--frame-size",
            "65536",
            "-o",
            &e.s("ct"),
            &e.s("plain"),
        ],
        None,
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let step = 127 * 65_536;
    let decrypt_range = |spec: &str, file: &str| {
        run(
            &[
                "decrypt",
                "-k",
                &e.s("k1"),
                "--range",
                spec,
                "-o",
                &e.s("out"),
                &e.s(file),
            ],
            None,
        )
    };
    for (spec, want) in [
        ("0-", &pt[..]),
        (
            &*format!("{}-{}", step - 10, step + 9),
            &pt[step - 10..step + 10],
        ),
        (&*format!("{}-", step), &pt[step..]),
        (&*format!("-{}", 2 * step + 1), &pt[n - 2 * step - 1..]),
        ("100-16777315", &pt[100..16_777_316]),
    ] {
        let o = decrypt_range(spec, "ct");
        assert_eq!(
            code(&o),
            0,
            "{spec}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(std::fs::read(e.p("out")).unwrap() == want, "{spec}");
    }
    // Flip one byte of a frame in the third step (frame slots are 65,536 + 32 bytes).
    let mut ct = std::fs::read(e.p("ct")).unwrap();
    let at = ct.len() - 1000 - 65_568;
    ct[at] ^= 1;
    std::fs::write(e.p("bad"), &ct).unwrap();
    std::fs::remove_file(e.p("out")).unwrap();
    let o = decrypt_range("0-", "bad");
    assert_eq!(code(&o), 5, "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!e.p("out").exists(), "no output under the final name");
    // Cut at a frame boundary: a range to the end notices the missing final frame.
    let cut = std::fs::read(e.p("ct")).unwrap();
    std::fs::write(e.p("cut"), &cut[..cut.len() - 123 - 40 - 65_568]).unwrap();
    for spec in ["-10", "0-"] {
        let o = decrypt_range(spec, "cut");
        assert!(
            matches!(code(&o), 4 | 5),
            "{spec} of a truncated message: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(!e.p("out").exists(), "no output under the final name");
    }
}

#[test]
fn decrypts_a_python_sdk_vector() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let e = Env::new();
    let raw = hex_key("1760447bc759e120cc439d4e3cf255ecf84091b381ee742894abe5b39a844752");
    std::fs::write(e.p("raw"), raw).unwrap();
    run(
        &[
            "keygen",
            "-o",
            &e.s("py"),
            "--namespace",
            "s3crypt-test",
            "--name",
            "key-1",
            "--import",
            &e.s("raw"),
        ],
        None,
    );
    let v = root.join("test-vectors/positive/p-0578-f4096-n12305-ctx.bin");
    let o = run(
        &[
            "decrypt",
            "-k",
            &e.s("py"),
            "-c",
            "purpose=test",
            v.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert!(o.stdout == pattern(12305));
}

fn hex_key(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn refuses_ciphertext_to_a_terminal_only() {
    // stdout is a pipe here: encryption to stdout works (the terminal refusal is covered by the
    // message in --help); usage errors exit 2.
    let e = Env::new();
    assert_eq!(
        code(&run(
            &["encrypt", "-k", &e.s("k1"), "--frame-size", "100"],
            Some(b"x")
        )),
        2
    );
    assert_eq!(
        code(&run(
            &["encrypt", "-k", &e.s("k1"), "--suite", "rot13"],
            Some(b"x")
        )),
        2
    );
    assert_eq!(code(&run(&["frobnicate"], None)), 2);
}

#[test]
fn inspect_escapes_terminal_sequences_in_the_context() {
    // A context pair (anyone who can write a message chooses it) that would retitle the terminal
    // and clear the screen, with a bidi override and a C1 control for good measure.
    let e = Env::new();
    let evil_value = "\u{1b}]0;pwned\u{7}\u{1b}[2J\u{202e}gpj.exe\u{9b}1m";
    let evil_key = "k\u{1b}[31m";
    let ct = run(
        &[
            "encrypt",
            "-k",
            &e.s("k1"),
            "-c",
            &format!("title={evil_value}"),
            "-c",
            &format!("{evil_key}=v"),
            "-o",
            &e.s("ct"),
        ],
        Some(b"x"),
    );
    assert_eq!(code(&ct), 0, "{}", String::from_utf8_lossy(&ct.stderr));
    let o = run(&["inspect", &e.s("ct")], None);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(
        !text.contains(['\u{1b}', '\u{7}', '\u{202e}', '\u{9b}']),
        "{text:?}"
    );
    assert!(
        text.contains("title = \\u{1b}]0;pwned\\u{7}\\u{1b}[2J\\u{202e}gpj.exe\\u{9b}1m"),
        "{text}"
    );
    assert!(text.contains("k\\u{1b}[31m = v"), "{text}");
    // --json stays exact: JSON escapes what needs escaping, and the value parses back as it was.
    let o = run(&["inspect", "--json", &e.s("ct")], None);
    assert!(!o.stdout.contains(&0x1b), "{:?}", o.stdout);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["encryption_context"]["title"], evil_value);
    assert_eq!(v["encryption_context"][evil_key], "v");
}

#[test]
fn world_writable_config_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let e = Env::new();
    // Whoever can write the config file chooses the keys new data is encrypted for.
    std::fs::write(e.p("config.toml"), "keyrings = [\"k1\"]\n").unwrap();
    std::fs::set_permissions(e.p("config.toml"), std::fs::Permissions::from_mode(0o666)).unwrap();
    let o = bin()
        .env("S3CRYPT_CONFIG", e.p("config.toml"))
        .args(["encrypt"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(code(&o), 2, "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("writable by group or others")
            && err.contains(&format!("chmod 600 {}", e.s("config.toml"))),
        "{err}"
    );
    assert!(o.stdout.is_empty());
}

/// Runs `args`, killing it (and failing) if it has not finished within 30 seconds.
fn run_with_deadline(args: &[&str]) -> Output {
    let mut child = bin()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("s3crypt {args:?} hung");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn symlinked_and_fifo_keyrings_are_refused() {
    let e = Env::new();
    std::os::unix::fs::symlink(e.p("k1"), e.p("link")).unwrap();
    let o = run_with_deadline(&["encrypt", "-k", &e.s("link")]);
    assert_eq!(code(&o), 8, "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("is a symbolic link"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // A FIFO with no writer: opening it would block forever without O_NONBLOCK.
    let made = Command::new("mkfifo").arg(e.p("fifo")).status().unwrap();
    assert!(made.success());
    let o = run_with_deadline(&["encrypt", "-k", &e.s("fifo")]);
    assert_eq!(code(&o), 8, "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("is a FIFO"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn plain_http_kms_endpoint_is_refused_before_any_request() {
    const ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    let with_endpoint = |endpoint: &str| {
        bin()
            .env("AWS_ENDPOINT_URL_KMS", endpoint)
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("AWS_PROFILE")
            .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
            .env("AWS_SECRET_ACCESS_KEY", "secret")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_MAX_ATTEMPTS", "1")
            .args(["encrypt", "--kms-key", ARN])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    // `.invalid` never resolves: only the refusal can produce this message.
    let o = with_endpoint("http://kms.s3crypt-test.invalid");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(code(&o), 8, "{err}");
    assert!(
        err.contains("refusing to send AWS KMS requests (they carry data keys) over http to kms.s3crypt-test.invalid")
            && err.contains(ARN),
        "{err}"
    );
    assert!(o.stdout.is_empty());
    // Loopback over plain http is allowed: the request goes out (and finds nobody listening).
    let o = with_endpoint("http://127.0.0.1:9");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(code(&o), 8, "{err}");
    assert!(
        !err.contains("refusing") && err.contains("could not reach AWS KMS"),
        "{err}"
    );
}

#[test]
fn stale_partials_are_swept_when_output_is_written() {
    let e = Env::new();
    let ct = run(&["encrypt", "-k", &e.s("k1"), "-o", &e.s("ct")], Some(b"x"));
    assert_eq!(code(&ct), 0, "{}", String::from_utf8_lossy(&ct.stderr));
    std::fs::create_dir(e.p("out")).unwrap();
    // Left by an s3crypt killed a day and more ago, and by one running right now.
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(25 * 3600);
    let stale = e.p("out").join(".s3crypt-Kill3d.partial");
    std::fs::File::create(&stale)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let fresh = e.p("out").join(".s3crypt-Runn1n.partial");
    std::fs::write(&fresh, b"").unwrap();
    let o = run(
        &[
            "decrypt",
            "-k",
            &e.s("k1"),
            "-o",
            e.p("out").join("plain").to_str().unwrap(),
            &e.s("ct"),
        ],
        None,
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read(e.p("out").join("plain")).unwrap(), b"x");
    assert!(!stale.exists(), "stale partial left");
    assert!(fresh.exists(), "a fresh partial was removed");
}

use s3crypt_test_support::process::{partials, signal};

#[test]
fn sigterm_and_sighup_stop_a_local_encrypt_like_ctrl_c_and_remove_its_temporary_file() {
    for (sig, want) in [("TERM", 143), ("HUP", 129), ("INT", 130)] {
        let e = Env::new();
        let mut child = bin()
            .args(["encrypt", "-k", &e.s("k1"), "-o", &e.s("out")])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Some input, the pipe left open: it is encrypting into its temporary file.
        let mut si = child.stdin.take().unwrap();
        si.write_all(&pattern(1 << 20)).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while partials(e.dir.path()) == 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(partials(e.dir.path()) > 0, "no temporary file appeared");
        signal(&child, sig);
        let o = child.wait_with_output().unwrap();
        drop(si);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(code(&o), want, "SIG{sig}: {stderr}");
        assert!(
            stderr.contains(&format!("interrupted (SIG{sig})")),
            "{stderr}"
        );
        assert!(
            !e.p("out").exists(),
            "SIG{sig} left output under the target name"
        );
        assert_eq!(partials(e.dir.path()), 0, "SIG{sig} left temporary files");
    }
}

#[test]
fn keygen_creates_the_missing_directory_private() {
    let e = Env::new();
    let path = e.p("home/.config/s3crypt/keyring");
    let o = run(&["keygen", "-o", path.to_str().unwrap()], None);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    assert_eq!(mode(&path), 0o600);
    // Under a regular file, it cannot: an I/O error (exit 3) that names the path.
    std::fs::write(e.p("file"), b"").unwrap();
    let o = run(&["keygen", "-o", &e.s("file/keyring")], None);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(code(&o), 3, "{stderr}");
    assert!(
        stderr.contains("file/keyring") || stderr.contains("file"),
        "{stderr}"
    );
}

#[test]
fn completions_and_the_manual_page() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let o = run(&["completions", shell], None);
        assert_eq!(
            code(&o),
            0,
            "{shell}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            text.contains("s3crypt") && text.contains("rewrap"),
            "{shell}"
        );
    }
    let o = run(&["man"], None);
    assert_eq!(code(&o), 0);
    let page = String::from_utf8_lossy(&o.stdout);
    assert!(
        page.starts_with(".ie") || page.contains(".TH s3crypt 1"),
        "{page}"
    );
    for sub in ["S3CRYPT PUT", "S3CRYPT GET", "S3CRYPT KEYGEN", "Exit codes"] {
        assert!(page.contains(sub), "the manual page lacks {sub}");
    }
}

#[test]
fn decrypted_files_are_private_whatever_the_umask_unless_mode_says_otherwise() {
    use std::os::unix::fs::PermissionsExt;
    let e = Env::new();
    std::fs::write(e.p("plain"), b"secret").unwrap();
    let o = run(
        &["encrypt", "-k", &e.s("k1"), "-o", &e.s("ct"), &e.s("plain")],
        None,
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    let decrypt = |out: &str, extra: &str| {
        let script = format!(
            "umask 000; exec \"$0\" decrypt -k {} {extra} -o {} {}",
            e.s("k1"),
            e.s(out),
            e.s("ct")
        );
        // (sh sets the umask, then runs s3crypt, given as $0.)
        let o = Command::new("sh")
            .args(["-c", &script, env!("CARGO_BIN_EXE_s3crypt")])
            .env_remove("S3CRYPT_KEYRING")
            .env_remove("S3CRYPT_CONFIG")
            .env("XDG_CONFIG_HOME", "/nonexistent")
            .env("HOME", "/nonexistent")
            .output()
            .unwrap();
        assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    };
    decrypt("default", "");
    assert_eq!(mode(&e.p("default")), 0o600);
    decrypt("shared", "--mode 644");
    assert_eq!(mode(&e.p("shared")), 0o644);
    let o = run(
        &[
            "decrypt",
            "-k",
            &e.s("k1"),
            "--mode",
            "4755",
            "-o",
            &e.s("x"),
            &e.s("ct"),
        ],
        None,
    );
    assert_eq!(code(&o), 2, "setuid is refused");
}
