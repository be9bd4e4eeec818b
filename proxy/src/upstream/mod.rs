//! The one upstream connection to the pool, carrying every local miner's shares, over Stratum V1
//! (this module) or Stratum V2 ([`v2`], encrypted, one extended channel).
//!
//! Over V1 it subscribes (resuming its previous extranonce1 after a reconnect), negotiates version
//! rolling and `ehash-share-difficulty`, authorizes with the current quote, turns the pool's
//! jobs into templates for the local miners, and multiplexes their submissions. When the pool
//! drops, it reconnects with backoff; local miners stay connected, and work from the dead
//! session is never submitted.
//!
//! Difficulty: every miner is credited exactly at the difficulty the proxy assigned it. With
//! `ehash-share-difficulty` agreed, a miner's jobs may be as hard as the proxy likes but never
//! easier than the pool's job (the pool credits each share at the difficulty its coinbase
//! declares, which is the miner's job tag). Without it, the miners' jobs take the pool's
//! difficulty exactly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ehash_protocol::stratum::client::{ServerMessage, parse_server_line, request};
use ehash_protocol::stratum::messages::{ErrorCode, SHARE_DIFFICULTY_EXTENSION};
use ehash_protocol::stratum::share::{JobTemplate, TAG_BYTES};
use ehash_protocol::work::DifficultyExp;
use ehash_stratum::{Refusal, Template};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::codec::{FramedRead, LinesCodec};
use tokio_util::sync::CancellationToken;

mod v2;

/// Bytes of the upstream extranonce2 the proxy keeps to tell its miners apart.
pub const MINER_ID_BYTES: usize = 2;
/// Most submits written to the pool in one write.
const MAX_WRITE_BATCH: usize = 256;
/// How long an upstream request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// Where the pool is, and which protocol it speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolEndpoint {
    /// Stratum V1 at `host:port`.
    V1(String),
    /// Stratum V2 at `host:port`, encrypted to the pool's authority key.
    V2 {
        /// `host:port`.
        addr: String,
        /// The pool's authority public key as SV2 clients take it (base58-check).
        authority_key: String,
    },
}

impl PoolEndpoint {
    /// `host:port` or `stratum+tcp://host:port` for Stratum V1; `sv2://host:port` (or
    /// `stratum2+tcp://host:port`) for Stratum V2, which needs the pool's authority key.
    pub fn parse(pool: &str, authority_key: Option<&str>) -> Result<Self, String> {
        let v2 = ["sv2://", "stratum2+tcp://"].iter().find_map(|p| pool.strip_prefix(p));
        let addr = v2.or_else(|| pool.strip_prefix("stratum+tcp://")).unwrap_or(pool).trim_end_matches('/');
        if addr.is_empty() || !addr.contains(':') || addr.contains("://") {
            return Err(format!("pool {pool:?}: give host:port (Stratum V1) or sv2://host:port (Stratum V2)"));
        }
        match (v2, authority_key.map(str::trim).filter(|k| !k.is_empty())) {
            (Some(_), Some(key)) => {
                ehash_stratum::sv2::noise::initiator(key).map_err(|e| format!("pool_authority_key: {e}"))?;
                Ok(Self::V2 { addr: addr.to_owned(), authority_key: key.to_owned() })
            }
            (Some(_), None) => Err(format!(
                "pool {pool:?} speaks Stratum V2: set pool_authority_key to the key the pool prints at start (`sv2 … (authority key …)`)"
            )),
            (None, _) => Ok(Self::V1(addr.to_owned())),
        }
    }
}

impl std::fmt::Display for PoolEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::V1(a) => write!(f, "{a}"),
            Self::V2 { addr, .. } => write!(f, "sv2://{addr}"),
        }
    }
}

/// A job as the pool sent it, with what forwarding needs.
#[derive(Debug, Clone)]
pub struct UpstreamJob {
    /// The pool's job id.
    pub job_id: String,
    /// The share difficulty the pool assigned to this job.
    pub difficulty: f64,
    /// The upstream session it belongs to.
    pub session: u64,
}

/// What the upstream connection looks like now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpstreamState {
    /// Connected and authorized.
    pub connected: bool,
    /// Session generation (changes on every reconnect).
    pub session: u64,
    /// The pool's extranonce2 size.
    pub extranonce2_size: usize,
    /// The negotiated version-rolling mask.
    pub version_mask: Option<u32>,
    /// Whether the pool credits the difficulty each share declares (`ehash-share-difficulty`).
    pub share_difficulty: bool,
    /// The share difficulty the pool assigns this connection now.
    pub difficulty: f64,
    /// The last error the pool answered `mining.authorize` with.
    pub authorize_error: Option<(i64, String)>,
}

/// A share for the pool.
struct Share {
    /// The pool's job id.
    job_id: String,
    /// The pool's extranonce2 (V2: the channel's extranonce).
    extranonce2: Vec<u8>,
    ntime: u32,
    nonce: u32,
    /// The rolled version bits, as V1 submits them.
    version_bits: Option<u32>,
    /// The whole version, as V2 submits it.
    version: u32,
}

enum Command {
    /// A share to submit, and where its answer goes.
    Submit { share: Share, reply: oneshot::Sender<Result<(), Refusal>> },
}

/// Handle to the upstream connection.
#[derive(Clone)]
pub struct Upstream {
    commands: mpsc::Sender<Command>,
    state: watch::Receiver<UpstreamState>,
    templates: watch::Receiver<Arc<Template>>,
    jobs: Arc<Mutex<HashMap<String, UpstreamJob>>>,
    username: watch::Sender<String>,
    epoch_closed: watch::Receiver<u64>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream").field("state", &*self.state.borrow()).finish_non_exhaustive()
    }
}

impl Upstream {
    /// Connect to `pool` as `username`, keep reconnecting until `cancel`.
    pub fn start(pool: PoolEndpoint, username: String, version_rolling: bool, cancel: CancellationToken) -> Self {
        let (commands, rx) = mpsc::channel(1024);
        let (state_tx, state) = watch::channel(UpstreamState::default());
        let empty = Template {
            id: 0,
            source_job_id: String::new(),
            height: 0,
            job: JobTemplate { prev_hash: [0; 32], coinb1: vec![], coinb2: vec![], merkle_branch: vec![], version: 0, nbits: 0, ntime: 0 },
            clean: true,
            difficulty_range: None,
            transactions: Arc::from([]),
            coinbase_value: 0,
        };
        let (templates_tx, templates) = watch::channel(Arc::new(empty));
        let (username_tx, username_rx) = watch::channel(username);
        let (closed_tx, epoch_closed) = watch::channel(0u64);
        let jobs = Arc::new(Mutex::new(HashMap::new()));
        let task = Task {
            pool,
            version_rolling,
            commands: rx,
            state: state_tx,
            templates: templates_tx,
            jobs: jobs.clone(),
            username: username_rx,
            epoch_closed: closed_tx,
            next_template: 1,
            template_session: 0,
            generation: 0,
        };
        tokio::spawn(task.run(cancel));
        Self { commands, state, templates, jobs, username: username_tx, epoch_closed }
    }

    /// Templates for the local miners.
    pub fn templates(&self) -> watch::Receiver<Arc<Template>> {
        self.templates.clone()
    }

    /// The connection state.
    pub fn state(&self) -> watch::Receiver<UpstreamState> {
        self.state.clone()
    }

    /// Changes each time the pool says the quote's epoch has closed.
    pub fn epoch_closed(&self) -> watch::Receiver<u64> {
        self.epoch_closed.clone()
    }

    /// Authorize with a new username from now on (re-authorizes on the live connection).
    pub fn set_username(&self, username: String) {
        self.username.send_replace(username);
    }

    /// The current username.
    pub fn username(&self) -> String {
        self.username.borrow().clone()
    }

    /// The pool's job behind a template, if its session is still the live one.
    pub fn job(&self, source_job_id: &str) -> Option<UpstreamJob> {
        let job = self.jobs.lock().ok()?.get(source_job_id).cloned()?;
        let st = self.state.borrow();
        (st.connected && st.session == job.session).then_some(job)
    }

    /// Submit a share to the pool and wait for its answer: the pool's job, its extranonce2, the
    /// header's ntime and nonce, the rolled version bits and the header's whole version.
    pub async fn submit(&self, job_id: &str, extranonce2: &[u8], ntime: u32, nonce: u32, version_bits: Option<u32>, version: u32) -> Result<(), Refusal> {
        let share = Share { job_id: job_id.to_owned(), extranonce2: extranonce2.to_vec(), ntime, nonce, version_bits, version };
        let (reply, rx) = oneshot::channel();
        let unavailable = || Refusal::new(ErrorCode::Unavailable, "the pool is unreachable; the proxy reconnects and resumes");
        self.commands
            .send(Command::Submit { share, reply })
            .await
            .map_err(|_| unavailable())?;
        match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
            Ok(Ok(r)) => r,
            _ => Err(unavailable()),
        }
    }
}

struct Task {
    pool: PoolEndpoint,
    version_rolling: bool,
    commands: mpsc::Receiver<Command>,
    state: watch::Sender<UpstreamState>,
    templates: watch::Sender<Arc<Template>>,
    jobs: Arc<Mutex<HashMap<String, UpstreamJob>>>,
    username: watch::Receiver<String>,
    epoch_closed: watch::Sender<u64>,
    next_template: u64,
    template_session: u64,
    /// The last generation handed out: each connection (and, over V2, each channel) gets a new
    /// one, and work of an older generation is never submitted.
    generation: u64,
}

type Pending = HashMap<u64, oneshot::Sender<Result<(), Refusal>>>;

impl Task {
    async fn run(mut self, cancel: CancellationToken) {
        let mut backoff = Duration::from_millis(200);
        let mut extranonce1: Option<Vec<u8>> = None;
        while !cancel.is_cancelled() {
            let ended = match self.pool.clone() {
                PoolEndpoint::V1(addr) => {
                    let session = self.fresh_generation();
                    self.session(&addr, session, &mut extranonce1, &cancel).await
                }
                PoolEndpoint::V2 { addr, authority_key } => self.session_v2(&addr, &authority_key, &cancel).await,
            };
            match ended {
                Ok(()) => break,
                Err(e) => {
                    self.state.send_modify(|s| s.connected = false);
                    tracing::warn!(pool = %self.pool, error = %e, "upstream connection lost; reconnecting");
                }
            }
            // fail whatever arrives while down
            let deadline = tokio::time::sleep(backoff);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = &mut deadline => break,
                    Some(Command::Submit { reply, .. }) = self.commands.recv() => {
                        let _ = reply.send(Err(Refusal::new(ErrorCode::Unavailable, "the pool is unreachable; the proxy reconnects and resumes")));
                    }
                }
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }

    /// A new generation number.
    fn fresh_generation(&mut self) -> u64 {
        self.generation += 1;
        self.generation
    }

    /// One connection to a V1 pool at `addr`, until it fails (`Err`) or `cancel`.
    async fn session(&mut self, addr: &str, session: u64, extranonce1: &mut Option<Vec<u8>>, cancel: &CancellationToken) -> Result<(), String> {
        let stream = tokio::time::timeout(REQUEST_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| format!("connect {addr}: timed out"))?
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (r, mut w) = stream.into_split();
        let mut lines = FramedRead::new(r, LinesCodec::new_with_max_length(1 << 20));
        let next_id = std::sync::atomic::AtomicU64::new(1);
        let take_id = || {
            next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        };
        let call = |method: &str, params: Value| {
            let id = take_id();
            (id, request(id, method, params))
        };
        let mut mask = None;
        let mut extensions = vec![SHARE_DIFFICULTY_EXTENSION];
        if self.version_rolling {
            extensions.insert(0, "version-rolling");
        }
        let (id, line) = call("mining.configure", json!([extensions, {"version-rolling.mask": "1fffe000", "version-rolling.min-bit-count": 2}]));
        send(&mut w, &line).await?;
        let r = wait_response(&mut lines, id).await?;
        if self.version_rolling && r.0.get("version-rolling") == Some(&Value::Bool(true)) {
            mask = r.0.get("version-rolling.mask").and_then(Value::as_str).and_then(|m| u32::from_str_radix(m, 16).ok());
        }
        let share_difficulty = r.0.get(SHARE_DIFFICULTY_EXTENSION) == Some(&Value::Bool(true));
        if !share_difficulty {
            tracing::info!(pool = %self.pool, "the pool does not take declared share difficulties: miners get the pool's difficulty");
        }
        let subscribe_params = match extranonce1 {
            Some(en1) => json!(["ehash-proxy/0.1", hex::encode(en1)]),
            None => json!(["ehash-proxy/0.1"]),
        };
        let (id, line) = call("mining.subscribe", subscribe_params);
        send(&mut w, &line).await?;
        let (result, error) = wait_response(&mut lines, id).await?;
        if let Some(e) = error {
            return Err(format!("subscribe refused: {e:?}"));
        }
        let en1 = result.get(1).and_then(Value::as_str).and_then(|s| hex::decode(s).ok()).ok_or("subscribe: no extranonce1")?;
        let en2_size = result.get(2).and_then(Value::as_u64).ok_or("subscribe: no extranonce2 size")? as usize;
        if en2_size <= MINER_ID_BYTES + TAG_BYTES {
            return Err(format!("the pool's extranonce2 of {en2_size} bytes leaves no room for miner ids"));
        }
        *extranonce1 = Some(en1.clone());
        let mut username = self.username.borrow_and_update().clone();
        let (id, line) = call("mining.authorize", json!([username, "x"]));
        send(&mut w, &line).await?;
        let (_, auth_err) = wait_response(&mut lines, id).await?;
        if let Some((26, _)) = &auth_err {
            self.epoch_closed.send_modify(|n| *n += 1);
        }
        self.state.send_replace(UpstreamState {
            connected: true,
            session,
            extranonce2_size: en2_size,
            version_mask: mask,
            share_difficulty,
            difficulty: 1.0,
            authorize_error: auth_err,
        });
        tracing::info!(pool = %self.pool, extranonce1 = %hex::encode(&en1), "upstream connected");
        let mut pending: Pending = HashMap::new();
        let mut difficulty = 1.0f64;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                changed = self.username.changed() => {
                    if changed.is_err() { return Ok(()); }
                    username = self.username.borrow_and_update().clone();
                    let (id, line) = call("mining.authorize", json!([username, "x"]));
                    send(&mut w, &line).await?;
                    pending_authorize(&mut pending, id, &self.state);
                }
                cmd = self.commands.recv() => match cmd {
                    None => return Ok(()),
                    Some(first) => {
                        // every submit waiting now goes out in one write
                        let mut batch = String::new();
                        let mut replies = vec![];
                        let mut next = Some(first);
                        while let Some(Command::Submit { share, reply }) = next.take() {
                            let id = take_id();
                            batch.push_str(&format!("{{\"id\":{id},\"method\":\"mining.submit\",\"params\":{}}}\n", submit_params(&username, &share)));
                            replies.push((id, reply));
                            if replies.len() < MAX_WRITE_BATCH {
                                next = self.commands.try_recv().ok();
                            }
                        }
                        if let Err(e) = send_all(&mut w, batch.as_bytes()).await {
                            for (_, reply) in replies {
                                let _ = reply.send(Err(Refusal::new(ErrorCode::Unavailable, "the pool is unreachable; the proxy reconnects and resumes")));
                            }
                            return Err(e);
                        }
                        pending.extend(replies);
                    }
                },
                line = lines.next() => {
                    let line = match line {
                        Some(Ok(l)) => l,
                        Some(Err(e)) => return Err(format!("read: {e}")),
                        None => return Err("the pool closed the connection".into()),
                    };
                    match parse_server_line(&line) {
                        Ok(msg) => self.on_message(msg, session, &en1, share_difficulty, &mut difficulty, &mut pending),
                        Err(e) => tracing::warn!(error = %e, "unreadable line from the pool"),
                    }
                }
            }
        }
    }

    /// Hand a pool job (already turned into the local miners' template) to the miners.
    fn publish(&mut self, job_id: String, job: JobTemplate, difficulty: f64, session: u64, clean: bool, share_difficulty: bool) {
        if let Ok(mut jobs) = self.jobs.lock() {
            if clean {
                jobs.clear();
            }
            jobs.insert(job_id.clone(), UpstreamJob { job_id: job_id.clone(), difficulty, session });
            if jobs.len() > 64 {
                jobs.retain(|_, j| j.session == session);
            }
        }
        let id = self.next_template;
        self.next_template += 1;
        // the first job of a new session replaces all work: the old session's is stale
        let first_of_session = self.template_session != session;
        self.template_session = session;
        let floor = miner_floor(difficulty);
        let difficulty_range = floor.map(|f| if share_difficulty { (f, DifficultyExp::MAX) } else { (f, f) });
        self.templates.send_replace(Arc::new(Template {
            id,
            source_job_id: job_id,
            height: 0,
            job,
            clean: clean || first_of_session,
            difficulty_range,
            transactions: Arc::from([]),
            coinbase_value: 0,
        }));
    }

    fn on_message(&mut self, msg: ServerMessage, session: u64, en1: &[u8], share_difficulty: bool, difficulty: &mut f64, pending: &mut Pending) {
        match msg {
            ServerMessage::Response { id, result, error } => {
                let Some(reply) = id.as_u64().and_then(|id| pending.remove(&id)) else { return };
                let outcome = match error {
                    None if result == Value::Bool(true) => Ok(()),
                    None => Err(Refusal::new(ErrorCode::Other, format!("the pool answered {result}"))),
                    Some((code, message)) => {
                        if code == 26 {
                            self.epoch_closed.send_modify(|n| *n += 1);
                        }
                        Err(Refusal::new(ErrorCode::from_code(code).unwrap_or(ErrorCode::Other), message))
                    }
                };
                let _ = reply.send(outcome);
            }
            ServerMessage::SetDifficulty(d) => {
                *difficulty = d;
                self.state.send_modify(|s| s.difficulty = d);
            }
            ServerMessage::Notify { job_id, job, clean } => {
                // downstream coinbase: the pool's coinb1 followed by the pool's extranonce1; each
                // miner's extranonce1 (its id) and extranonce2 form the pool's extranonce2
                let mut coinb1 = job.coinb1.clone();
                coinb1.extend_from_slice(en1);
                self.publish(job_id, JobTemplate { coinb1, ..job }, *difficulty, session, clean, share_difficulty);
            }
            ServerMessage::SetVersionMask(m) => self.state.send_modify(|s| s.version_mask = Some(m)),
            ServerMessage::ShowMessage(text) => tracing::info!(%text, "message from the pool"),
            ServerMessage::Other(method) => tracing::debug!(%method, "ignoring notification"),
        }
    }

}

/// A `mining.submit`'s params as a JSON array, written out directly: this runs for every share.
fn submit_params(username: &str, share: &Share) -> String {
    let quoted = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    let mut params = format!(
        "[{},{},\"{}\",\"{:08x}\",\"{:08x}\"",
        quoted(username),
        quoted(&share.job_id),
        hex::encode(&share.extranonce2),
        share.ntime,
        share.nonce
    );
    if let Some(v) = share.version_bits {
        params.push_str(&format!(",\"{v:08x}\""));
    }
    params.push(']');
    params
}

/// Authorize answers are handled like submits whose result updates the state.
fn pending_authorize(pending: &mut Pending, id: u64, state: &watch::Sender<UpstreamState>) {
    let (tx, rx) = oneshot::channel();
    pending.insert(id, tx);
    let state = state.clone();
    tokio::spawn(async move {
        let err = match rx.await {
            Ok(Ok(())) => None,
            Ok(Err(r)) => Some((r.code.code(), r.message)),
            Err(_) => return,
        };
        state.send_modify(|s| s.authorize_error = err);
    });
}

async fn send(w: &mut tokio::net::tcp::OwnedWriteHalf, line: &str) -> Result<(), String> {
    let mut buf = line.as_bytes().to_vec();
    buf.push(b'\n');
    send_all(w, &buf).await
}

async fn send_all(w: &mut tokio::net::tcp::OwnedWriteHalf, bytes: &[u8]) -> Result<(), String> {
    tokio::time::timeout(REQUEST_TIMEOUT, w.write_all(bytes))
        .await
        .map_err(|_| "write timed out".to_owned())?
        .map_err(|e| format!("write: {e}"))
}

/// Read until the response to `id` (notifications before it are applied).
async fn wait_response(
    lines: &mut FramedRead<tokio::net::tcp::OwnedReadHalf, LinesCodec>,
    id: u64,
) -> Result<(Value, Option<(i64, String)>), String> {
    let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
    loop {
        let line = tokio::time::timeout_at(deadline, lines.next())
            .await
            .map_err(|_| "the pool did not answer in time".to_owned())?
            .ok_or("the pool closed the connection")?
            .map_err(|e| format!("read: {e}"))?;
        match parse_server_line(&line) {
            Ok(ServerMessage::Response { id: rid, result, error }) if rid.as_u64() == Some(id) => return Ok((result, error)),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "unreadable line from the pool"),
        }
    }
}

/// The easiest difficulty a miner may get on a pool job of `difficulty`: the smallest power of
/// two not below it, so every share a miner finds meets the pool's target.
fn miner_floor(difficulty: f64) -> Option<DifficultyExp> {
    let d = DifficultyExp::floor_of(difficulty).ok()?;
    Some(if d.as_f64() < difficulty { d.harder() } else { d })
}

/// The share target of an upstream difficulty (exact for powers of two; otherwise the nearest
/// power of two at or below it, so no share the pool would accept is withheld).
pub fn upstream_target(difficulty: f64) -> Option<bitcoin::Target> {
    DifficultyExp::floor_of(difficulty).ok().map(|d| d.target())
}
