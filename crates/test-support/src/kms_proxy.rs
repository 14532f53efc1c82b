//! A fault-injecting HTTP proxy in front of moto: answers chosen KMS requests with a KMS error,
//! as real KMS does, and forwards the rest. moto 5.2.5 does not enforce key states (a disabled
//! key still encrypts and decrypts) and never throttles, so those answers are made here.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Answer requests for operation `op` whose body contains `needle` with error `code`, `times`
/// times (`None`: always).
pub struct Rule {
    pub op: &'static str,
    pub needle: String,
    pub code: &'static str,
    pub message: String,
    pub times: Option<usize>,
}

#[derive(Default)]
struct State {
    rules: Vec<Rule>,
    /// (operation, answered with an injected error) for every request seen.
    seen: Vec<(String, bool)>,
}

pub struct FaultProxy {
    pub endpoint: String,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    port: u16,
    thread: Option<JoinHandle<()>>,
}

impl FaultProxy {
    pub fn start(upstream: &str, rules: Vec<Rule>) -> Self {
        let upstream = upstream
            .strip_prefix("http://")
            .unwrap()
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State {
            rules,
            seen: Vec::new(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let (state, upstream) = (state.clone(), upstream.clone());
                    std::thread::spawn(move || {
                        let _ = serve(conn, &upstream, &state);
                    });
                }
            })
        };
        Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            state,
            stop,
            port,
            thread: Some(thread),
        }
    }

    /// How many requests for `op` arrived, and how many of them got an injected error.
    pub fn count(&self, op: &str) -> (usize, usize) {
        let s = self.state.lock().unwrap();
        let all = s.seen.iter().filter(|(o, _)| o == op);
        let n = all.clone().count();
        (n, all.filter(|(_, injected)| *injected).count())
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves the requests of one client connection, keeping it open between requests as KMS does
/// (each forwarded request uses a fresh connection to moto, which closes after answering).
fn serve(mut conn: TcpStream, upstream: &str, state: &Mutex<State>) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    loop {
        let mut head = Vec::new();
        let mut content_length = 0usize;
        let mut target = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            if line == "\r\n" {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                content_length = v.trim().parse().unwrap_or(0);
            }
            if lower.starts_with("x-amz-target:") {
                target = line["x-amz-target:".len()..].trim().to_owned();
            }
            if !lower.starts_with("connection:") {
                head.push(line);
            }
        }
        let mut body = vec![0; content_length];
        reader.read_exact(&mut body)?;
        let op = op_name(&target);
        let body_text = String::from_utf8_lossy(&body);

        let injected = {
            let mut s = state.lock().unwrap();
            let hit = s.rules.iter_mut().find(|r| {
                r.op == op && body_text.contains(&r.needle) && r.times.is_none_or(|t| t > 0)
            });
            let answer = hit.map(|r| {
                if let Some(t) = r.times.as_mut() {
                    *t -= 1;
                }
                (r.code, r.message.clone())
            });
            s.seen.push((op, answer.is_some()));
            answer
        };

        let (status_line, headers, payload) = if let Some((code, message)) = injected {
            let json = serde_json::json!({ "__type": code, "message": message }).to_string();
            (
                "HTTP/1.1 400 Bad Request\r\n".to_owned(),
                vec![
                    "Content-Type: application/x-amz-json-1.1\r\n".to_owned(),
                    "x-amzn-RequestId: fault-proxy\r\n".to_owned(),
                ],
                json.into_bytes(),
            )
        } else {
            let mut up = TcpStream::connect(upstream)?;
            for line in &head {
                up.write_all(line.as_bytes())?;
            }
            up.write_all(b"Connection: close\r\n\r\n")?;
            up.write_all(&body)?;
            let mut resp = Vec::new();
            up.read_to_end(&mut resp)?;
            let split = resp
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .ok_or(std::io::ErrorKind::InvalidData)?;
            let head_text = String::from_utf8_lossy(&resp[..split]).into_owned();
            let mut lines = head_text.split("\r\n");
            let status = format!("{}\r\n", lines.next().unwrap_or("HTTP/1.1 502 Bad Gateway"));
            let kept = lines
                .filter(|l| {
                    let l = l.to_ascii_lowercase();
                    !(l.starts_with("connection:")
                        || l.starts_with("content-length:")
                        || l.starts_with("keep-alive:"))
                })
                .map(|l| format!("{l}\r\n"))
                .collect();
            (status, kept, resp[split + 4..].to_vec())
        };
        let mut out = status_line.into_bytes();
        for h in headers {
            out.extend_from_slice(h.as_bytes());
        }
        out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", payload.len()).as_bytes());
        out.extend_from_slice(&payload);
        conn.write_all(&out)?;
        conn.flush()?;
    }
}

/// `TrentService.Decrypt` → `Decrypt`.
fn op_name(target: &str) -> String {
    target.rsplit('.').next().unwrap_or_default().to_owned()
}
