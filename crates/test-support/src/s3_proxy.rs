//! A fault-injecting HTTP/1.1 proxy for the S3 tests: forwards each request to the real server
//! on its own upstream connection, unless a rule says to answer 5xx, reset the connection
//! (mid-request or mid-response) or stall. Every rule counts its hits, so a test can prove the
//! faults it meant to inject really happened.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// What a proxied request looks like to a rule.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Lower-cased names.
    pub headers: Vec<(String, String)>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// An UploadPart request for this part number.
    pub fn is_part(&self, n: u32) -> bool {
        let q = self.target.split_once('?').map_or("", |(_, q)| q);
        self.method == "PUT" && q.split('&').any(|p| p == format!("partNumber={n}"))
    }

    /// A ranged GET.
    pub fn is_ranged_get(&self) -> bool {
        self.method == "GET" && self.header("range").is_some()
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// Answer with this status and S3 error code, without forwarding.
    Status(u16, &'static str),
    /// Read this many bytes of the request body, then reset the connection.
    ResetRequest { after: usize },
    /// Forward, send the response head and this many body bytes, then reset.
    ResetResponse { after: usize },
    /// Forward, then hold the response head back for this long.
    StallHead(Duration),
    /// Forward, send the head and this many body bytes, then send nothing more for this long
    /// (or until the client gives up, which is counted in [`Proxy::abandoned`]).
    StallResponse { after: usize, stall: Duration },
}

type Matcher = Box<dyn Fn(&Request) -> bool + Send + Sync>;

struct Rule {
    matches: Matcher,
    fault: Fault,
    remaining: usize,
    hits: Arc<AtomicUsize>,
}

#[derive(Default)]
struct State {
    rules: Vec<Rule>,
    requests: Vec<String>,
}

pub struct Proxy {
    pub endpoint: String,
    state: Arc<Mutex<State>>,
    abandoned: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    /// A proxy on a free loopback port in front of `upstream` (`http://host:port`).
    pub async fn start(upstream: &str) -> Proxy {
        let upstream = upstream
            .strip_prefix("http://")
            .expect("an http:// upstream")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let abandoned = Arc::new(AtomicUsize::new(0));
        let (st, ab) = (state.clone(), abandoned.clone());
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (st, ab, up) = (st.clone(), ab.clone(), upstream.clone());
                tokio::spawn(async move {
                    let _ = serve(conn, &up, st, ab).await;
                });
            }
        });
        Proxy {
            endpoint,
            state,
            abandoned,
            task,
        }
    }

    /// Injects `fault` into the next `times` requests that match. Rules are tried in the order
    /// they were added. Returns the rule's hit counter.
    pub fn inject(
        &self,
        times: usize,
        fault: Fault,
        matches: impl Fn(&Request) -> bool + Send + Sync + 'static,
    ) -> Arc<AtomicUsize> {
        let hits = Arc::new(AtomicUsize::new(0));
        self.state.lock().unwrap().rules.push(Rule {
            matches: Box::new(matches),
            fault,
            remaining: times,
            hits: hits.clone(),
        });
        hits
    }

    /// Removes every rule.
    pub fn clear(&self) {
        self.state.lock().unwrap().rules.clear();
    }

    /// Stalled responses the client gave up on (closed the connection) during the stall.
    pub fn abandoned(&self) -> usize {
        self.abandoned.load(Ordering::SeqCst)
    }

    /// "METHOD target" of every request seen.
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }
}

async fn read_head<R: AsyncBufReadExt + Unpin>(r: &mut R) -> std::io::Result<Option<Vec<String>>> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await? == 0 {
            return Ok(if lines.is_empty() {
                None
            } else {
                Err(std::io::Error::other("truncated head"))?
            });
        }
        let line = line.trim_end_matches(['\r', '\n']).to_owned();
        if line.is_empty() {
            return Ok(Some(lines));
        }
        lines.push(line);
    }
}

fn headers(lines: &[String]) -> Vec<(String, String)> {
    lines[1..]
        .iter()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect()
}

/// The head with any `Connection` header replaced by `Connection: close`.
fn closing_head(lines: &[String]) -> Vec<u8> {
    let mut out = String::new();
    for (i, l) in lines.iter().enumerate() {
        if i > 0 && l.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        out.push_str(l);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    out.into_bytes()
}

fn reset(conn: TcpStream) {
    // SO_LINGER 0: closing sends RST instead of FIN (and a zero linger never blocks, which is
    // why tokio deprecates the setter in general).
    #[allow(deprecated)]
    let _ = conn.set_linger(Some(Duration::ZERO));
    drop(conn);
}

/// One request per client connection (the response says `Connection: close`).
async fn serve(
    conn: TcpStream,
    upstream: &str,
    state: Arc<Mutex<State>>,
    abandoned: Arc<AtomicUsize>,
) -> std::io::Result<()> {
    let mut client = BufReader::new(conn);
    let Some(head) = read_head(&mut client).await? else {
        return Ok(());
    };
    let mut parts = head[0].split(' ');
    let req = Request {
        method: parts.next().unwrap_or_default().to_owned(),
        target: parts.next().unwrap_or_default().to_owned(),
        headers: headers(&head),
    };
    assert!(
        req.header("transfer-encoding").is_none(),
        "the proxy handles Content-Length bodies only: {head:?}"
    );
    let body_len: usize = req
        .header("content-length")
        .map(|v| v.parse().unwrap())
        .unwrap_or(0);
    let fault = {
        let mut st = state.lock().unwrap();
        st.requests.push(format!("{} {}", req.method, req.target));
        st.rules
            .iter_mut()
            .find(|r| r.remaining > 0 && (r.matches)(&req))
            .map(|r| {
                r.remaining -= 1;
                r.hits.fetch_add(1, Ordering::SeqCst);
                r.fault
            })
    };
    match fault {
        Some(Fault::Status(status, code)) => {
            let mut body = vec![0u8; body_len];
            client.read_exact(&mut body).await?;
            let xml = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>injected by the test proxy</Message><RequestId>proxy</RequestId></Error>"
            );
            let resp = format!(
                "HTTP/1.1 {status} Injected\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{xml}",
                xml.len()
            );
            client.get_mut().write_all(resp.as_bytes()).await?;
            return client.get_mut().shutdown().await;
        }
        Some(Fault::ResetRequest { after }) => {
            let mut body = vec![0u8; after.min(body_len)];
            client.read_exact(&mut body).await?;
            reset(client.into_inner());
            return Ok(());
        }
        _ => {}
    }
    let mut up = TcpStream::connect(upstream).await?;
    up.write_all(&closing_head(&head)).await?;
    let mut body = vec![0u8; body_len];
    client.read_exact(&mut body).await?;
    up.write_all(&body).await?;
    let mut up = BufReader::new(up);
    let resp_head = read_head(&mut up)
        .await?
        .ok_or_else(|| std::io::Error::other("upstream closed"))?;
    let mut rest = Vec::new();
    up.read_to_end(&mut rest).await?;
    let mut client = client.into_inner();
    if let Some(Fault::StallHead(d)) = fault {
        if stall_or_abandon(&mut client, d).await {
            abandoned.fetch_add(1, Ordering::SeqCst);
            return Ok(());
        }
    }
    client.write_all(&closing_head(&resp_head)).await?;
    match fault {
        Some(Fault::ResetResponse { after }) => {
            client.write_all(&rest[..after.min(rest.len())]).await?;
            client.flush().await?;
            reset(client);
            return Ok(());
        }
        Some(Fault::StallResponse { after, stall }) => {
            let after = after.min(rest.len());
            client.write_all(&rest[..after]).await?;
            client.flush().await?;
            if stall_or_abandon(&mut client, stall).await {
                abandoned.fetch_add(1, Ordering::SeqCst);
                return Ok(());
            }
            client.write_all(&rest[after..]).await?;
        }
        _ => client.write_all(&rest).await?,
    }
    client.shutdown().await
}

/// Waits `d`, or until the client closes the connection (true).
async fn stall_or_abandon(client: &mut TcpStream, d: Duration) -> bool {
    let mut b = [0u8; 1];
    tokio::select! {
        () = tokio::time::sleep(d) => false,
        r = client.read(&mut b) => matches!(r, Ok(0) | Err(_)),
    }
}
