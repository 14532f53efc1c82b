//! Starting and stopping local S3 servers.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Moto,
    S3sFs,
}

pub struct Server {
    child: Child,
    pub endpoint: String,
    pub kind: Kind,
    _dir: Option<tempfile::TempDir>,
    /// moto's request recording (every request's method, URL and headers), when enabled.
    pub recording: Option<std::path::PathBuf>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn binary(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(p) => Some(p),
        Err(_) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{var} must be set in CI (scripts/test sets it)"
            );
            eprintln!("skipped: {var} is not set (scripts/test sets it)");
            None
        }
    }
}

/// Waits until the server answers an HTTP request.
fn wait_ready(port: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("server exited early: {status}");
        }
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            if s.write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                .is_ok()
            {
                let mut buf = [0u8; 12];
                if s.read(&mut buf).map(|n| n > 0).unwrap_or(false) {
                    return;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("server on port {port} not ready after 30 s");
}

pub fn start(kind: Kind) -> Option<Server> {
    let port = free_port();
    let (mut child, dir) = match kind {
        Kind::Moto => {
            let bin = binary("S3CRYPT_TEST_MOTO")?;
            let dir = tempfile::tempdir().unwrap();
            let child = Command::new(bin)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .env("MOTO_RECORDER_FILEPATH", dir.path().join("recording.jsonl"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            (child, Some(dir))
        }
        Kind::S3sFs => {
            let bin = binary("S3CRYPT_TEST_S3S_FS")?;
            let dir = tempfile::tempdir().unwrap();
            let child = Command::new(bin)
                .args([
                    "--host",
                    "127.0.0.1",
                    "--port",
                    &port.to_string(),
                    "--access-key",
                    "testing",
                    "--secret-key",
                    "testing",
                ])
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            (child, Some(dir))
        }
    };
    wait_ready(port, &mut child);
    let recording =
        (kind == Kind::Moto).then(|| dir.as_ref().unwrap().path().join("recording.jsonl"));
    Some(Server {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
        kind,
        _dir: dir,
        recording,
    })
}

impl Server {
    /// Starts moto's request recorder (moto only).
    #[allow(dead_code)]
    pub fn start_recording(&self) {
        let port = self.endpoint.rsplit(':').next().unwrap();
        let mut s = TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).unwrap();
        s.write_all(b"POST /moto-api/recorder/start-recording HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n").unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        assert!(
            resp.starts_with("HTTP/1.") && resp.contains(" 200 "),
            "{resp}"
        );
    }

    /// The recorded requests: (method, URL, lower-cased headers). moto appends to the recording
    /// as requests finish: a last line still being written is waited for.
    #[allow(dead_code)]
    pub fn recorded(&self) -> Vec<(String, String, std::collections::HashMap<String, String>)> {
        type Row = (String, String, std::collections::HashMap<String, String>);
        fn parse(line: &str) -> Option<Row> {
            let v: serde_json::Value = serde_json::from_str(line).ok()?;
            let headers = v["headers"]
                .as_object()?
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_ascii_lowercase(),
                        v.as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect();
            Some((
                v["method"].as_str()?.to_owned(),
                v["url"].as_str()?.to_owned(),
                headers,
            ))
        }
        for _ in 0..100 {
            let text =
                std::fs::read_to_string(self.recording.as_ref().unwrap()).unwrap_or_default();
            if let Some(rows) = text.lines().map(parse).collect::<Option<Vec<_>>>() {
                return rows;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("moto's recording does not parse");
    }

    /// A KMS client for the server (moto serves KMS on the same endpoint), in us-east-1.
    // Unused by the S3 tests built without the `kms` feature.
    #[allow(dead_code)]
    pub fn kms(&self) -> aws_sdk_kms::Client {
        let conf = aws_sdk_kms::Config::builder()
            .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(aws_sdk_kms::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_kms::config::Credentials::new(
                "testing", "testing", None, None, "tests",
            ))
            .build();
        aws_sdk_kms::Client::from_conf(conf)
    }

    pub fn s3(&self) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "testing", "testing", None, None, "tests",
            ))
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }
}
