//! One miner connection: the Stratum V1 state machine.
//!
//! Every request gets exactly one response; every bad request gets a specific error and the
//! connection stays usable. Shares are validated against the job and the difficulty in force
//! when that job was sent, then handed to the backend before `true` is sent.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ehash_protocol::stratum::messages::{
    self, ClientMessage, Configure, ErrorCode, Request, Submit, configure_result, error_response, parse_request, response,
};
use ehash_protocol::stratum::share::{Submission, share_header};
use ehash_protocol::work::DifficultyExp;
use ehash_protocol::RequestError;
use futures::StreamExt;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio_util::bytes::BytesMut;
use tokio_util::codec::{Decoder, FramedRead, LinesCodec, LinesCodecError};
use tokio_util::sync::CancellationToken;

use crate::backend::{Backend, Work};
use crate::job::Template;
use crate::server::Shared;
use crate::vardiff::Vardiff;

/// Jobs remembered per connection (older job ids answer "job not found").
const JOBS_KEPT: usize = 16;
/// A peer that does not take a line within this time is cut off.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Queued output that is written without waiting for the next flush.
const OUT_BUFFER_BYTES: usize = 64 * 1024;
/// Consecutive invalid submissions after which the connection is closed.
const MAX_INVALID_STREAK: u32 = 1000;
/// Latest accepted ntime, relative to now (Bitcoin's two-hour rule).
const MAX_FUTURE_NTIME: u32 = 7200;

/// A line, or the fact that an over-long one was skipped.
enum Line {
    Text(String),
    TooLong,
}

/// `LinesCodec` whose length error is an item, so the stream survives an over-long line (the
/// codec itself skips to the next newline).
struct CappedLines(LinesCodec);

impl Decoder for CappedLines {
    type Item = Line;
    type Error = LinesCodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Line>, LinesCodecError> {
        match self.0.decode(src) {
            Ok(l) => Ok(l.map(Line::Text)),
            Err(LinesCodecError::MaxLineLengthExceeded) => Ok(Some(Line::TooLong)),
            Err(e) => Err(e),
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Line>, LinesCodecError> {
        match self.0.decode_eof(src) {
            Ok(l) => Ok(l.map(Line::Text)),
            Err(LinesCodecError::MaxLineLengthExceeded) => Ok(Some(Line::TooLong)),
            Err(e) => Err(e),
        }
    }
}

struct SentJob {
    id: String,
    template: Arc<Template>,
    difficulty: DifficultyExp,
}

struct Session<B: Backend> {
    shared: Arc<Shared<B>>,
    peer: SocketAddr,
    writer: OwnedWriteHalf,
    out: Vec<u8>,
    extranonce1: Vec<u8>,
    subscribed: bool,
    workers: HashMap<String, B::Worker>,
    version_mask: Option<u32>,
    vardiff: Vardiff,
    jobs: VecDeque<SentJob>,
    next_job: u64,
    template: Arc<Template>,
    sent_difficulty: Option<DifficultyExp>,
    invalid_streak: u32,
}

enum Flow {
    Continue,
    Close,
}

pub(crate) async fn run<B: Backend>(shared: Arc<Shared<B>>, stream: TcpStream, peer: SocketAddr, cancel: CancellationToken) {
    shared.stats.connections.fetch_add(1, Ordering::Relaxed);
    let (reader, writer) = stream.into_split();
    let mut lines = FramedRead::new(reader, CappedLines(LinesCodec::new_with_max_length(shared.config.max_line_bytes)));
    let mut templates = shared.templates.clone();
    let template = templates.borrow_and_update().clone();
    let mut notices = shared.backend.notices();
    notices.borrow_and_update();
    let now = Instant::now();
    let vardiff = Vardiff::new(
        shared.difficulty.initial,
        shared.difficulty.min,
        shared.difficulty.max,
        Duration::from_secs(shared.config.target_share_secs.max(1)),
        Duration::from_secs(shared.config.retarget_secs.max(1)),
        now,
    );
    let Some(extranonce1) = shared.backend.allocate_extranonce1(None) else {
        tracing::warn!(%peer, "no extranonce1 left; refusing miner");
        shared.stats.connections.fetch_sub(1, Ordering::Relaxed);
        return;
    };
    let mut s = Session {
        shared: shared.clone(),
        peer,
        writer,
        out: Vec::with_capacity(4096),
        extranonce1,
        subscribed: false,
        workers: HashMap::new(),
        version_mask: None,
        vardiff,
        jobs: VecDeque::new(),
        next_job: 1,
        template,
        sent_difficulty: None,
        invalid_streak: 0,
    };
    let idle = Duration::from_secs(shared.config.idle_timeout_secs.max(1));
    let mut retarget = tokio::time::interval(Duration::from_secs(shared.config.retarget_secs.max(1)));
    retarget.tick().await;
    tracing::debug!(%peer, "miner connected");
    loop {
        // biased: pool news (a new epoch, new work) goes out before the next request is
        // answered, so a miner never gets an answer that contradicts work it has not seen yet
        let flow = tokio::select! {
            biased;
            _ = cancel.cancelled() => Flow::Close,
            changed = notices.changed() => match changed {
                Ok(()) => {
                    notices.borrow_and_update();
                    s.on_notice().await
                }
                Err(_) => Flow::Close,
            },
            changed = templates.changed() => match changed {
                Ok(()) => {
                    let t = templates.borrow_and_update().clone();
                    s.on_template(t).await
                }
                Err(_) => Flow::Close,
            },
            line = tokio::time::timeout(idle, lines.next()) => match line {
                Err(_) => {
                    tracing::debug!(%peer, "idle timeout");
                    Flow::Close
                }
                Ok(Some(Ok(Line::Text(line)))) => s.on_line(&line).await,
                Ok(Some(Ok(Line::TooLong))) => {
                    let msg = format!("request line longer than {} bytes", s.shared.config.max_line_bytes);
                    s.send(&error_response(&Value::Null, ErrorCode::Other, &msg)).await
                }
                Ok(Some(Err(_))) | Ok(None) => Flow::Close,
            },
            _ = retarget.tick() => {
                match s.vardiff.retarget(Instant::now()) {
                    Some(_) => s.send_work(false).await,
                    None => Flow::Continue,
                }
            }
        };
        if matches!(flow, Flow::Close) {
            break;
        }
        // answers to requests already buffered go out together; otherwise now
        if !lines.read_buffer().contains(&b'\n') && matches!(s.flush().await, Flow::Close) {
            break;
        }
    }
    // best effort: the last answers (e.g. the error that closed the connection)
    let _ = tokio::time::timeout(Duration::from_secs(1), s.writer.write_all(&s.out)).await;
    shared.backend.release_extranonce1(&s.extranonce1);
    shared.stats.connections.fetch_sub(1, Ordering::Relaxed);
    tracing::debug!(%peer, "miner disconnected");
}

impl<B: Backend> Session<B> {
    /// Queue a line; it goes out at the next [`Self::flush`] (or now, if much is queued).
    async fn send(&mut self, line: &str) -> Flow {
        self.out.extend_from_slice(line.as_bytes());
        self.out.push(b'\n');
        if self.out.len() >= OUT_BUFFER_BYTES { self.flush().await } else { Flow::Continue }
    }

    /// Write everything queued; a miner that does not take it within [`WRITE_TIMEOUT`] is cut.
    async fn flush(&mut self) -> Flow {
        if self.out.is_empty() {
            return Flow::Continue;
        }
        let buf = std::mem::take(&mut self.out);
        match tokio::time::timeout(WRITE_TIMEOUT, self.writer.write_all(&buf)).await {
            Ok(Ok(())) => {
                self.out = buf;
                self.out.clear();
                Flow::Continue
            }
            Ok(Err(_)) => Flow::Close,
            Err(_) => {
                tracing::info!(peer = %self.peer, "miner stopped reading; closing");
                Flow::Close
            }
        }
    }

    async fn reply_err(&mut self, id: &Value, code: ErrorCode, msg: &str) -> Flow {
        self.send(&error_response(id, code, msg)).await
    }

    async fn on_line(&mut self, line: &str) -> Flow {
        let line = line.trim();
        if line.is_empty() {
            return Flow::Continue;
        }
        let req = match parse_request(line) {
            Ok(r) => r,
            Err((id, e)) => return self.reply_err(&id, ErrorCode::Other, &e.to_string()).await,
        };
        let msg = match req.decode() {
            Ok(m) => m,
            Err(e @ RequestError::UnknownMethod(_)) => return self.reply_err(&req.id, ErrorCode::Other, &e.to_string()).await,
            Err(e) => {
                if req.method == "mining.submit" {
                    self.shared.stats.reject(ErrorCode::Other.code());
                }
                return self.reply_err(&req.id, ErrorCode::Other, &e.to_string()).await;
            }
        };
        match msg {
            ClientMessage::Subscribe { session_id, .. } => self.on_subscribe(&req, session_id).await,
            ClientMessage::Authorize { username } => self.on_authorize(&req, &username).await,
            ClientMessage::Configure(c) => self.on_configure(&req, c).await,
            ClientMessage::Submit(sub) => self.on_submit(&req, sub).await,
            ClientMessage::ExtranonceSubscribe => self.send(&response(&req.id, Value::Bool(true))).await,
            ClientMessage::SuggestDifficulty(d) => {
                let Ok(d) = DifficultyExp::floor_of(d) else {
                    return self.reply_err(&req.id, ErrorCode::Other, "difficulty must be a positive number").await;
                };
                self.vardiff.set(d, Instant::now());
                if let Flow::Close = self.send(&response(&req.id, Value::Bool(true))).await {
                    return Flow::Close;
                }
                if self.ready() { self.send_work(false).await } else { Flow::Continue }
            }
        }
    }

    fn ready(&self) -> bool {
        self.subscribed && !self.workers.is_empty()
    }

    async fn on_subscribe(&mut self, req: &Request, session_id: Option<String>) -> Flow {
        if !self.subscribed {
            let resume = session_id
                .and_then(|s| hex::decode(s).ok())
                .filter(|b| b.len() == self.extranonce1.len() && *b != self.extranonce1);
            if let Some(r) = resume
                && let Some(fresh) = self.shared.backend.allocate_extranonce1(Some(&r))
            {
                self.shared.backend.release_extranonce1(&self.extranonce1);
                self.extranonce1 = fresh;
            }
        }
        self.subscribed = true;
        let en1 = self.extranonce1.clone();
        let result = messages::subscribe_result(&hex::encode(&en1), &en1, self.shared.config.extranonce2_size);
        if let Flow::Close = self.send(&response(&req.id, result)).await {
            return Flow::Close;
        }
        if self.ready() { self.send_work(true).await } else { Flow::Continue }
    }

    async fn on_authorize(&mut self, req: &Request, username: &str) -> Flow {
        match self.shared.backend.authorize(username).await {
            Ok(worker) => {
                let first = self.workers.is_empty();
                self.workers.insert(username.to_owned(), worker);
                if let Flow::Close = self.send(&response(&req.id, Value::Bool(true))).await {
                    return Flow::Close;
                }
                if first && self.subscribed { self.send_work(true).await } else { Flow::Continue }
            }
            Err(r) => self.reply_err(&req.id, r.code, &r.message).await,
        }
    }

    async fn on_configure(&mut self, req: &Request, c: Configure) -> Flow {
        let server_mask = (self.shared.config.version_mask != 0).then_some(self.shared.config.version_mask);
        let (result, negotiated) = configure_result(&c, server_mask);
        if c.extensions.iter().any(|e| e == "version-rolling") {
            self.version_mask = negotiated;
        }
        if let Some(d) = c.minimum_difficulty.and_then(|d| DifficultyExp::floor_of(d).ok()) {
            self.vardiff.raise_min(d);
        }
        self.send(&response(&req.id, result)).await
    }

    async fn reject(&mut self, id: &Value, code: ErrorCode, msg: &str) -> Flow {
        self.shared.stats.reject(code.code());
        self.invalid_streak += 1;
        if let Flow::Close = self.reply_err(id, code, msg).await {
            return Flow::Close;
        }
        if self.invalid_streak >= MAX_INVALID_STREAK {
            tracing::info!(peer = %self.peer, "too many invalid shares in a row; closing");
            return Flow::Close;
        }
        Flow::Continue
    }

    async fn on_submit(&mut self, req: &Request, sub: Submit) -> Flow {
        if !self.subscribed {
            return self.reject(&req.id, ErrorCode::NotSubscribed, "not subscribed: send mining.subscribe first").await;
        }
        let Some(worker) = self.workers.get(&sub.username).cloned() else {
            let msg = format!("worker {:?} is not authorized: send mining.authorize first", sub.username);
            return self.reject(&req.id, ErrorCode::Unauthorized, &msg).await;
        };
        let Some(job) = self.jobs.iter().find(|j| j.id == sub.job_id) else {
            let msg = format!("job {:?} not found (stale or unknown)", sub.job_id);
            return self.reject(&req.id, ErrorCode::JobNotFound, &msg).await;
        };
        let (template, difficulty) = (job.template.clone(), job.difficulty);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
            .unwrap_or(0);
        let (min, max) = (template.job.ntime, now.max(template.job.ntime).saturating_add(MAX_FUTURE_NTIME));
        if sub.ntime < min || sub.ntime > max {
            let e = ehash_protocol::ShareError::NtimeOutOfRange { ntime: sub.ntime, min, max };
            return self.reject(&req.id, ErrorCode::Other, &e.to_string()).await;
        }
        let en1 = self.extranonce1.clone();
        let submission = Submission {
            extranonce1: &en1,
            extranonce2: &sub.extranonce2,
            ntime: sub.ntime,
            nonce: sub.nonce,
            version_bits: sub.version_bits,
        };
        let share = match share_header(&template.job, &submission, self.shared.config.extranonce2_size, self.version_mask) {
            Ok(s) => s,
            Err(e) => return self.reject(&req.id, ErrorCode::Other, &e.to_string()).await,
        };
        if !difficulty.target().is_met_by(share.hash) {
            let msg = format!("low difficulty share: hash {} is above the target for difficulty {}", share.hash, difficulty.as_f64());
            return self.reject(&req.id, ErrorCode::LowDifficulty, &msg).await;
        }
        let network = bitcoin::Target::from_compact(share.header.bits);
        let work = Work {
            template: &template,
            header: share.header,
            hash: share.hash,
            difficulty,
            extranonce1: &en1,
            extranonce2: &sub.extranonce2,
            ntime: sub.ntime,
            nonce: sub.nonce,
            version_bits: sub.version_bits,
            is_block: network.is_met_by(share.hash),
            username: &sub.username,
        };
        match self.shared.backend.submit(&worker, &work).await {
            Ok(amount) => {
                self.invalid_streak = 0;
                self.shared.stats.accept(amount, difficulty);
                if let Flow::Close = self.send(&response(&req.id, Value::Bool(true))).await {
                    return Flow::Close;
                }
                if work.is_block {
                    self.shared.stats.blocks.fetch_add(1, Ordering::Relaxed);
                    self.shared.backend.block_found(&work).await;
                }
                match self.vardiff.on_share(Instant::now()) {
                    Some(_) => self.send_work(false).await,
                    None => Flow::Continue,
                }
            }
            Err(r) => self.reject(&req.id, r.code, &r.message).await,
        }
    }

    async fn on_template(&mut self, t: Arc<Template>) -> Flow {
        let clean = t.clean;
        self.template = t;
        if clean {
            self.jobs.clear();
        }
        if self.ready() { self.send_work(clean).await } else { Flow::Continue }
    }

    async fn on_notice(&mut self) -> Flow {
        let workers: Vec<B::Worker> = self.workers.values().cloned().collect();
        let mut texts: Vec<String> = vec![];
        for w in &workers {
            if let Some(t) = self.shared.backend.notice_for(w).await
                && !texts.contains(&t) {
                    texts.push(t);
                }
        }
        for t in texts {
            if let Flow::Close = self.send(&messages::show_message(&t)).await {
                return Flow::Close;
            }
        }
        Flow::Continue
    }

    /// Send `set_difficulty` (if it changed) and a job for the current template.
    async fn send_work(&mut self, clean: bool) -> Flow {
        let difficulty = self.vardiff.current();
        if self.sent_difficulty != Some(difficulty) {
            self.sent_difficulty = Some(difficulty);
            if let Flow::Close = self.send(&messages::set_difficulty(difficulty)).await {
                return Flow::Close;
            }
        }
        let id = format!("{:x}", self.next_job);
        self.next_job += 1;
        let line = messages::notify(&id, &self.template.job, clean);
        if clean {
            self.jobs.clear();
        }
        self.jobs.push_back(SentJob { id, template: self.template.clone(), difficulty });
        while self.jobs.len() > JOBS_KEPT {
            self.jobs.pop_front();
        }
        self.send(&line).await
    }
}
