//! A small Stratum V1 client over TCP: requests with numeric ids, notification tracking
//! (`mining.set_difficulty` applies from the next `mining.notify`), and raw line access so tests
//! can send anything a hostile miner would.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_util::codec::{FramedRead, LinesCodec};

use crate::work::Job;

/// Client errors.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Socket error.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The pool closed the connection.
    #[error("connection closed by the pool")]
    Closed,
    /// Nothing arrived in time.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// The pool sent something that is not Stratum.
    #[error("protocol: {0}")]
    Protocol(String),
}

/// A Stratum V1 connection.
pub struct Sv1Client {
    writer: OwnedWriteHalf,
    lines: FramedRead<OwnedReadHalf, LinesCodec>,
    next_id: u64,
    /// Messages read while waiting for something else (responses and notifications).
    pub backlog: VecDeque<Value>,
    /// extranonce1 from the subscribe response.
    pub extranonce1: Vec<u8>,
    /// extranonce2 size from the subscribe response.
    pub extranonce2_size: usize,
    /// The difficulty that the next job will carry.
    pub pending_difficulty: f64,
    /// Jobs received, newest last.
    pub jobs: Vec<Job>,
    /// `client.show_message` texts received.
    pub messages: Vec<String>,
    /// Negotiated version-rolling mask.
    pub version_mask: Option<u32>,
}

/// A response's error as `(code, message)`.
pub fn response_error(resp: &Value) -> Option<(i64, String)> {
    let e = resp.get("error")?;
    let arr = e.as_array()?;
    Some((arr.first()?.as_i64()?, arr.get(1).and_then(Value::as_str).unwrap_or("").to_owned()))
}

impl Sv1Client {
    /// Connect.
    pub async fn connect(addr: SocketAddr) -> Result<Self, ClientError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (r, w) = stream.into_split();
        Ok(Self {
            writer: w,
            lines: FramedRead::new(r, LinesCodec::new_with_max_length(1 << 20)),
            next_id: 1,
            backlog: VecDeque::new(),
            extranonce1: vec![],
            extranonce2_size: 0,
            pending_difficulty: 1.0,
            jobs: vec![],
            messages: vec![],
            version_mask: None,
        })
    }

    /// Send a raw line (a newline is appended).
    pub async fn send_raw(&mut self, line: &str) -> Result<(), ClientError> {
        self.writer.write_all(format!("{line}\n").as_bytes()).await?;
        Ok(())
    }

    /// Send raw bytes as they are.
    pub async fn send_bytes(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.writer.write_all(bytes).await?;
        Ok(())
    }

    /// Read the next message, tracking notifications.
    pub async fn read(&mut self, timeout: Duration) -> Result<Value, ClientError> {
        let line = tokio::time::timeout(timeout, self.lines.next())
            .await
            .map_err(|_| ClientError::Timeout("a message"))?
            .ok_or(ClientError::Closed)?
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let v: Value = serde_json::from_str(&line).map_err(|e| ClientError::Protocol(format!("{e}: {line}")))?;
        self.track(&v)?;
        Ok(v)
    }

    fn track(&mut self, v: &Value) -> Result<(), ClientError> {
        match v.get("method").and_then(Value::as_str) {
            Some("mining.set_difficulty") => {
                if let Some(d) = v["params"].get(0).and_then(Value::as_f64) {
                    self.pending_difficulty = d;
                }
            }
            Some("mining.notify") => {
                let job = parse_notify(&v["params"], self.pending_difficulty)?;
                if job.clean {
                    self.jobs.clear();
                }
                self.jobs.push(job);
            }
            Some("client.show_message") => {
                if let Some(t) = v["params"].get(0).and_then(Value::as_str) {
                    self.messages.push(t.to_owned());
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Send a request and wait for the response with its id (other messages go to the backlog).
    pub async fn call(&mut self, method: &str, params: Value) -> Result<Value, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        self.send_raw(&json!({ "id": id, "method": method, "params": params }).to_string()).await?;
        self.wait_response(&json!(id)).await
    }

    /// Wait for the response carrying `id`.
    pub async fn wait_response(&mut self, id: &Value) -> Result<Value, ClientError> {
        if let Some(pos) = self.backlog.iter().position(|m| m.get("id") == Some(id) && m.get("method").is_none()) {
            return self.backlog.remove(pos).ok_or(ClientError::Closed);
        }
        loop {
            let v = self.read(Duration::from_secs(30)).await?;
            if v.get("method").is_none() && v.get("id") == Some(id) {
                return Ok(v);
            }
            self.backlog.push_back(v);
        }
    }

    /// `mining.configure` with version rolling.
    pub async fn configure(&mut self, mask: u32) -> Result<Value, ClientError> {
        let r = self
            .call("mining.configure", json!([["version-rolling"], { "version-rolling.mask": format!("{mask:08x}"), "version-rolling.min-bit-count": 2 }]))
            .await?;
        if r["result"]["version-rolling"] == json!(true) {
            self.version_mask = r["result"]["version-rolling.mask"].as_str().and_then(|m| u32::from_str_radix(m, 16).ok());
        }
        Ok(r)
    }

    /// `mining.subscribe`; records extranonce1 and the extranonce2 size.
    pub async fn subscribe(&mut self, agent: &str) -> Result<Value, ClientError> {
        let r = self.call("mining.subscribe", json!([agent])).await?;
        let res = &r["result"];
        self.extranonce1 = res.get(1).and_then(Value::as_str).and_then(|s| hex::decode(s).ok()).unwrap_or_default();
        self.extranonce2_size = res.get(2).and_then(Value::as_u64).unwrap_or(0) as usize;
        if self.extranonce1.is_empty() {
            return Err(ClientError::Protocol(format!("bad subscribe response: {r}")));
        }
        Ok(r)
    }

    /// `mining.authorize`.
    pub async fn authorize(&mut self, user: &str) -> Result<Value, ClientError> {
        self.call("mining.authorize", json!([user, "x"])).await
    }

    /// Wait until a job is known (reading notifications), and return the newest.
    pub async fn wait_job(&mut self, timeout: Duration) -> Result<Job, ClientError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(j) = self.jobs.last() {
                return Ok(j.clone());
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(ClientError::Timeout("a job"));
            }
            let v = self.read(left).await?;
            if v.get("method").is_none() {
                self.backlog.push_back(v);
            }
        }
    }

    /// Wait for a job newer than `after_id` (e.g. after a difficulty change or a new block).
    pub async fn wait_new_job(&mut self, after_id: &str, timeout: Duration) -> Result<Job, ClientError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(j) = self.jobs.last()
                && j.id != after_id {
                    return Ok(j.clone());
                }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(ClientError::Timeout("a new job"));
            }
            let v = self.read(left).await?;
            if v.get("method").is_none() {
                self.backlog.push_back(v);
            }
        }
    }

    /// `mining.submit`.
    pub async fn submit(&mut self, user: &str, job_id: &str, en2: &[u8], ntime: u32, nonce: u32, version_bits: Option<u32>) -> Result<Value, ClientError> {
        let mut params = vec![json!(user), json!(job_id), json!(hex::encode(en2)), json!(format!("{ntime:08x}")), json!(format!("{nonce:08x}"))];
        if let Some(v) = version_bits {
            params.push(json!(format!("{v:08x}")));
        }
        self.call("mining.submit", Value::Array(params)).await
    }
}

fn hex32(v: &Value) -> Result<[u8; 32], ClientError> {
    let s = v.as_str().ok_or_else(|| ClientError::Protocol("expected a hex string".into()))?;
    hex::decode(s)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| ClientError::Protocol(format!("expected 32 bytes of hex, got {s:?}")))
}

fn hexu32(v: &Value) -> Result<u32, ClientError> {
    let s = v.as_str().ok_or_else(|| ClientError::Protocol("expected a hex u32".into()))?;
    u32::from_str_radix(s, 16).map_err(|_| ClientError::Protocol(format!("bad hex u32 {s:?}")))
}

/// Parse `mining.notify` params.
pub fn parse_notify(p: &Value, difficulty: f64) -> Result<Job, ClientError> {
    let bytes = |v: &Value| -> Result<Vec<u8>, ClientError> {
        hex::decode(v.as_str().unwrap_or("x")).map_err(|_| ClientError::Protocol("bad coinbase hex".into()))
    };
    Ok(Job {
        id: p[0].as_str().ok_or_else(|| ClientError::Protocol("notify without job id".into()))?.to_owned(),
        prevhash: hex32(&p[1])?,
        coinb1: bytes(&p[2])?,
        coinb2: bytes(&p[3])?,
        branch: p[4].as_array().map(|a| a.iter().map(hex32).collect::<Result<_, _>>()).transpose()?.unwrap_or_default(),
        version: hexu32(&p[5])?,
        nbits: hexu32(&p[6])?,
        ntime: hexu32(&p[7])?,
        clean: p[8].as_bool().unwrap_or(false),
        difficulty,
    })
}

/// Find a valid share for `job` (extranonce2 = `seed`, little-endian, padded).
pub fn solve(c: &Sv1Client, job: &Job, seed: u64) -> (Vec<u8>, u32) {
    let en2: Vec<u8> = seed.to_le_bytes().iter().copied().chain(std::iter::repeat(0)).take(c.extranonce2_size).collect();
    let target = crate::work::target_for(job.difficulty);
    let mut start = 0u32;
    loop {
        if let Some((nonce, _)) = crate::work::grind(job, &c.extranonce1, &en2, job.ntime, job.version, &target, start, 1 << 16) {
            return (en2, nonce);
        }
        start = start.wrapping_add(1 << 16);
    }
}

/// Connect to `addr`, subscribe, authorize as `username` and submit `n` valid shares for the
/// first job (extranonce2 seeds from `first_seed`); returns how many were accepted.
pub async fn submit_shares(addr: SocketAddr, username: &str, n: u64, first_seed: u64) -> Result<u64, ClientError> {
    let mut c = Sv1Client::connect(addr).await?;
    c.subscribe("ehash-sim-miner/0.1").await?;
    let r = c.authorize(username).await?;
    if let Some((code, msg)) = response_error(&r) {
        return Err(ClientError::Protocol(format!("authorize refused: {code} {msg}")));
    }
    let job = c.wait_job(Duration::from_secs(30)).await?;
    let mut accepted = 0;
    for i in 0..n {
        let (en2, nonce) = solve(&c, &job, first_seed + i);
        let r = c.submit(username, &job.id, &en2, job.ntime, nonce, None).await?;
        if r["result"] == Value::Bool(true) {
            accepted += 1;
        }
    }
    Ok(accepted)
}
