//! A front for a real mint (or any HTTP/1.1 server) that misbehaves on the requests a test
//! picks: it answers a status of its own (a rate limit, a server error, a Cashu refusal), or
//! accepts and never answers, or streams a body that never ends. Every other request is passed
//! to the server behind it, and every request is recorded. This is the one fault the real parts
//! cannot make on their own: a mint that says "later" or stalls.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Largest request the front reads (headers and body).
const MAX_REQUEST: usize = 4 << 20;

/// What the front does instead of passing a request on.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer this status with this JSON body (and a `Retry-After` header when set).
    Status {
        /// HTTP status.
        code: u16,
        /// The JSON body.
        body: String,
        /// `Retry-After` seconds.
        retry_after: Option<u64>,
    },
    /// Read the request and never answer.
    Hang,
    /// Answer 200 with a JSON body that never ends.
    EndlessBody,
}

impl Fault {
    /// A rate limit as nutshell answers it (429, `{"detail": "Rate limit exceeded."}`).
    pub fn rate_limited() -> Self {
        Self::Status { code: 429, body: r#"{"detail":"Rate limit exceeded."}"#.into(), retry_after: Some(1) }
    }

    /// A server error without a Cashu error body.
    pub fn server_error() -> Self {
        Self::Status { code: 503, body: r#"{"detail":"Service Unavailable"}"#.into(), retry_after: None }
    }
}

/// One request the front saw.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `GET`, `POST`…
    pub method: String,
    /// The path (with any query).
    pub path: String,
    /// The body as text.
    pub body: String,
    /// Whether a fault answered it.
    pub faulted: bool,
}

#[derive(Debug)]
struct Rule {
    path: String,
    body_contains: Option<String>,
    times: usize,
    fault: Fault,
}

#[derive(Debug, Default)]
struct State {
    rules: Vec<Rule>,
    seen: Vec<Seen>,
}

/// The front: listens on a loopback port of its own until dropped.
#[derive(Debug)]
pub struct Front {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Front {
    /// Listen on a free loopback port and pass requests to `upstream` (`http://host:port`).
    pub async fn start(upstream: &str) -> Self {
        let upstream = upstream.trim_start_matches("http://").trim_end_matches('/').to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
        let addr = listener.local_addr().expect("its address");
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve(conn, upstream.clone(), st.clone()));
            }
        });
        Self { addr, state, task }
    }

    /// The front's URL, to give clients in place of the server's.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answer the next `times` requests whose path starts with `path` (and whose body contains
    /// `body_contains`, when set) with `fault`; `times` 0: every one from now on.
    pub fn fail(&self, path: &str, body_contains: Option<&str>, times: usize, fault: Fault) {
        let times = if times == 0 { usize::MAX } else { times };
        self.lock().rules.push(Rule { path: path.into(), body_contains: body_contains.map(str::to_owned), times, fault });
    }

    /// Stop every fault: from now on every request is passed on.
    pub fn heal(&self) {
        self.lock().rules.clear();
    }

    /// The requests seen so far whose path starts with `path`.
    pub fn seen(&self, path: &str) -> Vec<Seen> {
        self.lock().seen.iter().filter(|s| s.path.starts_with(path)).cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Read one request: the head (up to the blank line) and a `Content-Length` body.
async fn read_request(conn: &mut TcpStream) -> Option<(Vec<u8>, String, String, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() > MAX_REQUEST {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let len = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.trim().eq_ignore_ascii_case("content-length")).and_then(|(_, v)| v.trim().parse::<usize>().ok()))
        .unwrap_or(0);
    while buf.len() < head_end + len.min(MAX_REQUEST) {
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let mut first = head.lines().next().unwrap_or("").split(' ');
    let method = first.next().unwrap_or("").to_owned();
    let path = first.next().unwrap_or("").to_owned();
    let body = String::from_utf8_lossy(&buf[head_end..]).to_string();
    Some((buf, method, path, body))
}

/// Serve one client connection: one request, answered with `Connection: close`.
async fn serve(mut conn: TcpStream, upstream: String, state: Arc<Mutex<State>>) {
    let Some((raw, method, path, body)) = read_request(&mut conn).await else { return };
    let fault = {
        let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
        let fault = st
            .rules
            .iter_mut()
            .find(|r| r.times > 0 && path.starts_with(&r.path) && r.body_contains.as_ref().is_none_or(|c| body.contains(c.as_str())))
            .map(|r| {
                r.times -= 1;
                r.fault.clone()
            });
        st.seen.push(Seen { method, path, body, faulted: fault.is_some() });
        fault
    };
    match fault {
        None => {
            if let Some(answer) = forward(&raw, &upstream).await {
                let _ = conn.write_all(&answer).await;
            }
        }
        Some(Fault::Status { code, body, retry_after }) => {
            let retry = retry_after.map(|s| format!("retry-after: {s}\r\n")).unwrap_or_default();
            let answer = format!(
                "HTTP/1.1 {code} Fault\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{retry}connection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(answer.as_bytes()).await;
        }
        Some(Fault::Hang) => {
            // hold the connection open, answering nothing, until the client gives up
            let mut sink = [0u8; 1024];
            while let Ok(n) = conn.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        }
        Some(Fault::EndlessBody) => {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n1\r\n[\r\n";
            if conn.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let filler = format!("{:x}\r\n{}\r\n", 4096, " ".repeat(4096));
            while conn.write_all(filler.as_bytes()).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    let _ = conn.shutdown().await;
}

/// Pass a request to the server and return its whole answer, marked `Connection: close`.
async fn forward(raw: &[u8], upstream: &str) -> Option<Vec<u8>> {
    let mut up = TcpStream::connect(upstream).await.ok()?;
    up.write_all(&close_connection(raw)).await.ok()?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer).await.ok()?;
    Some(close_connection(&answer))
}

/// The message with its `Connection` header replaced by `Connection: close`.
fn close_connection(msg: &[u8]) -> Vec<u8> {
    let Some(end) = msg.windows(4).position(|w| w == b"\r\n\r\n") else { return msg.to_vec() };
    let head = String::from_utf8_lossy(&msg[..end]);
    let mut out: Vec<u8> = head
        .split("\r\n")
        .filter(|l| !l.split_once(':').is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case("connection")))
        .collect::<Vec<_>>()
        .join("\r\n")
        .into_bytes();
    out.extend_from_slice(b"\r\nconnection: close\r\n\r\n");
    out.extend_from_slice(&msg[end + 4..]);
    out
}
