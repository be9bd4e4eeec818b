//! One miner connection: the Stratum V1 state machine.
//!
//! Every request gets exactly one response, in the order the requests came; every bad request
//! gets a specific error and the connection stays usable. Shares are validated against the job
//! they name, at the difficulty that job was sent with (which its coinbase commits to), then
//! handed to the backend; `true` goes out only once the backend has taken the share. Many shares
//! of one connection can be with the backend at once (a miner that does not wait for each answer
//! is not held to one share per storage round trip); any other request waits until the shares
//! before it are answered.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ehash_protocol::stratum::messages::{
    self, ClientMessage, Configure, ErrorCode, Negotiated, Request, Submit, configure_result, error_response, parse_request, response,
};
use ehash_protocol::stratum::share::{Submission, share_header};
use ehash_protocol::work::DifficultyExp;
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use futures::{FutureExt, StreamExt};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use crate::backend::{Backend, Refusal, Work};
use crate::job::Template;
use crate::lines::{Line, Lines};
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
/// Longest username a connection may authorize, in bytes.
const MAX_USERNAME_BYTES: usize = 256;

struct SentJob {
    id: String,
    template: Arc<Template>,
    difficulty: DifficultyExp,
}

/// The answer to one request, in order.
enum Answer {
    /// A `mining.submit`: its difficulty, whether it found a block, and what the backend said.
    Submit { id: Value, difficulty: DifficultyExp, is_block: bool, result: Result<u64, Refusal> },
    /// Any other answer, queued behind the submits before it.
    Line(String),
}

struct Session<B: Backend> {
    shared: Arc<Shared<B>>,
    peer: SocketAddr,
    writer: OwnedWriteHalf,
    out: Vec<u8>,
    extranonce1: Vec<u8>,
    subscribed: bool,
    workers: HashMap<String, B::Worker>,
    negotiated: Negotiated,
    vardiff: Vardiff,
    jobs: VecDeque<SentJob>,
    next_job: u64,
    template: Arc<Template>,
    sent_difficulty: Option<DifficultyExp>,
    invalid_streak: u32,
    /// Submissions with the backend (and answers behind them), answered in order.
    in_flight: FuturesOrdered<BoxFuture<'static, Answer>>,
    /// A request that waits for the submissions before it to be answered.
    deferred: Option<String>,
}

enum Flow {
    Continue,
    Close,
}

pub(crate) async fn run<B: Backend>(shared: Arc<Shared<B>>, stream: TcpStream, peer: SocketAddr, cancel: CancellationToken) {
    shared.stats.connections.fetch_add(1, Ordering::Relaxed);
    let (reader, writer) = stream.into_split();
    let mut lines = FramedRead::new(reader, Lines::new(shared.config.max_line_bytes));
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
        negotiated: Negotiated::default(),
        vardiff,
        jobs: VecDeque::new(),
        next_job: 1,
        template,
        sent_difficulty: None,
        invalid_streak: 0,
        in_flight: FuturesOrdered::new(),
        deferred: None,
    };
    let idle = Duration::from_secs(shared.config.idle_timeout_secs.max(1));
    let max_in_flight = shared.config.max_in_flight.max(1);
    // one deadline for the whole connection, pushed back by every line the miner sends
    let idle_deadline = tokio::time::sleep(idle);
    tokio::pin!(idle_deadline);
    let mut retarget = tokio::time::interval(Duration::from_secs(shared.config.retarget_secs.max(1)));
    retarget.tick().await;
    tracing::debug!(%peer, "miner connected");
    loop {
        let can_read = s.deferred.is_none() && s.in_flight.len() < max_in_flight;
        // biased: pool news (a new epoch, new work) goes out before the next request is
        // answered, so a miner never gets an answer that contradicts work it has not seen yet
        let mut flow = tokio::select! {
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
            Some(answer) = s.in_flight.next(), if !s.in_flight.is_empty() => {
                idle_deadline.as_mut().reset(tokio::time::Instant::now() + idle);
                // every answer that is ready goes out in one write
                let mut flow = s.on_answer(answer).await;
                while matches!(flow, Flow::Continue) {
                    match s.in_flight.next().now_or_never() {
                        Some(Some(a)) => flow = s.on_answer(a).await,
                        _ => break,
                    }
                }
                flow
            }
            line = lines.next(), if can_read => {
                idle_deadline.as_mut().reset(tokio::time::Instant::now() + idle);
                match line {
                    Some(Ok(Line::Text(line))) => s.on_line(line).await,
                    Some(Ok(Line::TooLong)) => {
                        let msg = format!("request line longer than {} bytes", s.shared.config.max_line_bytes);
                        s.answer(error_response(&Value::Null, ErrorCode::Other, &msg)).await
                    }
                    Some(Ok(Line::NotUtf8)) => {
                        s.answer(error_response(&Value::Null, ErrorCode::Other, "request line is not valid UTF-8 JSON")).await
                    }
                    Some(Err(_)) | None => Flow::Close,
                }
            },
            _ = retarget.tick() => {
                match s.vardiff.retarget(Instant::now()) {
                    Some(_) if s.ready() => s.send_work(false).await,
                    _ => Flow::Continue,
                }
            }
            _ = &mut idle_deadline => {
                tracing::debug!(%peer, "idle timeout");
                Flow::Close
            }
        };
        // a request that waited behind shares runs once they are all answered
        if matches!(flow, Flow::Continue)
            && s.in_flight.is_empty()
            && let Some(line) = s.deferred.take()
        {
            flow = s.on_line(line).await;
        }
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

    /// Send an answer now, or after the submissions before it.
    async fn answer(&mut self, line: String) -> Flow {
        if self.in_flight.is_empty() {
            self.send(&line).await
        } else {
            self.in_flight.push_back(Box::pin(std::future::ready(Answer::Line(line))));
            Flow::Continue
        }
    }

    async fn on_line(&mut self, line: String) -> Flow {
        let text = line.trim();
        if text.is_empty() {
            return Flow::Continue;
        }
        let req = match parse_request(text) {
            Ok(r) => r,
            Err((id, e)) => return self.answer(error_response(&id, ErrorCode::Other, &e.to_string())).await,
        };
        let msg = match req.decode() {
            Ok(m) => m,
            Err(e) if req.method == "mining.submit" => {
                let difficulty = self.vardiff.current();
                return self.finish(req.id, difficulty, Err(Refusal::new(ErrorCode::Other, e.to_string()))).await;
            }
            Err(e) => return self.answer(error_response(&req.id, ErrorCode::Other, &e.to_string())).await,
        };
        if let ClientMessage::Submit(sub) = msg {
            return self.on_submit(req.id, sub).await;
        }
        if !self.in_flight.is_empty() {
            return self.defer(line);
        }
        match msg {
            ClientMessage::Subscribe { session_id, .. } => self.on_subscribe(&req, session_id).await,
            ClientMessage::Authorize { username } => self.on_authorize(&req, &username).await,
            ClientMessage::Configure(c) => self.on_configure(&req, c).await,
            ClientMessage::Submit(_) => Flow::Continue,
            ClientMessage::ExtranonceSubscribe => self.send(&response(&req.id, Value::Bool(true))).await,
            ClientMessage::SuggestDifficulty(d) => {
                let Ok(d) = DifficultyExp::floor_of(d) else {
                    return self.reply_err(&req.id, ErrorCode::Other, "difficulty must be a positive number").await;
                };
                let before = self.vardiff.current();
                let now = self.vardiff.suggest(d, Instant::now());
                if let Flow::Close = self.send(&response(&req.id, Value::Bool(true))).await {
                    return Flow::Close;
                }
                if self.ready() && now != before { self.send_work(false).await } else { Flow::Continue }
            }
        }
    }

    /// Keep a request until the submissions before it are answered.
    fn defer(&mut self, line: String) -> Flow {
        self.deferred = Some(line);
        Flow::Continue
    }

    fn ready(&self) -> bool {
        self.subscribed && !self.workers.is_empty()
    }

    async fn on_subscribe(&mut self, req: &Request, session_id: Option<String>) -> Flow {
        // a connection that declares difficulties never takes over an extranonce1 that mined
        // without (its held-back hashes would be declared ones here)
        if !self.subscribed && !self.negotiated.share_difficulty {
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
        if username.len() > MAX_USERNAME_BYTES {
            let msg = format!("the username is {} bytes; use at most {MAX_USERNAME_BYTES}", username.len());
            return self.reply_err(&req.id, ErrorCode::Unauthorized, &msg).await;
        }
        let max = self.shared.config.max_workers.max(1);
        if !self.workers.contains_key(username) && self.workers.len() >= max {
            let msg = format!("this connection has {max} workers authorized already (the most it may have); open another connection for more");
            return self.reply_err(&req.id, ErrorCode::Unauthorized, &msg).await;
        }
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
        // declared difficulties are agreed before mining.subscribe or never: a connection that
        // mined without them must not hand in held-back hashes as declared ones afterwards
        let offer = self.shared.config.share_difficulty_extension && !self.subscribed;
        let (result, negotiated) = configure_result(&c, server_mask, offer);
        if c.extensions.iter().any(|e| e == "version-rolling") {
            self.negotiated.version_mask = negotiated.version_mask;
        }
        if c.extensions.iter().any(|e| e == messages::SHARE_DIFFICULTY_EXTENSION) {
            self.negotiated.share_difficulty = negotiated.share_difficulty;
        }
        if let Some(d) = c.minimum_difficulty.and_then(|d| DifficultyExp::floor_of(d).ok()) {
            self.vardiff.raise_min(d);
        }
        self.send(&response(&req.id, result)).await
    }

    /// Answer a submission now, or after the ones before it.
    async fn finish(&mut self, id: Value, difficulty: DifficultyExp, result: Result<u64, Refusal>) -> Flow {
        let answer = Answer::Submit { id, difficulty, is_block: false, result };
        if self.in_flight.is_empty() {
            self.on_answer(answer).await
        } else {
            self.in_flight.push_back(Box::pin(std::future::ready(answer)));
            Flow::Continue
        }
    }

    async fn refuse(&mut self, id: Value, code: ErrorCode, msg: String) -> Flow {
        let difficulty = self.vardiff.current();
        self.finish(id, difficulty, Err(Refusal::new(code, msg))).await
    }

    /// An answer, in order.
    async fn on_answer(&mut self, a: Answer) -> Flow {
        let (id, difficulty, is_block, result) = match a {
            Answer::Line(line) => return self.send(&line).await,
            Answer::Submit { id, difficulty, is_block, result } => (id, difficulty, is_block, result),
        };
        if is_block {
            self.shared.stats.blocks.fetch_add(1, Ordering::Relaxed);
        }
        match result {
            Ok(amount) => {
                self.invalid_streak = 0;
                self.shared.stats.accept(amount, difficulty);
                if let Flow::Close = self.send(&response(&id, Value::Bool(true))).await {
                    return Flow::Close;
                }
                match self.vardiff.on_share(Instant::now()) {
                    Some(_) => self.send_work(false).await,
                    None => Flow::Continue,
                }
            }
            Err(r) => {
                self.shared.stats.reject(r.code.code());
                // the pool's own storage failing is not the miner's fault
                if r.code != ErrorCode::Unavailable {
                    self.invalid_streak += 1;
                }
                if let Flow::Close = self.reply_err(&id, r.code, &r.message).await {
                    return Flow::Close;
                }
                if self.invalid_streak >= MAX_INVALID_STREAK {
                    tracing::info!(peer = %self.peer, "too many invalid shares in a row; closing");
                    return Flow::Close;
                }
                Flow::Continue
            }
        }
    }

    async fn on_submit(&mut self, id: Value, sub: Submit) -> Flow {
        if !self.subscribed {
            return self.refuse(id, ErrorCode::NotSubscribed, "not subscribed: send mining.subscribe first".into()).await;
        }
        let Some(worker) = self.workers.get(&sub.username).cloned() else {
            let msg = format!("worker {:?} is not authorized: send mining.authorize first", sub.username);
            return self.refuse(id, ErrorCode::Unauthorized, msg).await;
        };
        let Some(job) = self.jobs.iter().find(|j| j.id == sub.job_id) else {
            let msg = format!("job {:?} not found (stale or unknown)", sub.job_id);
            return self.refuse(id, ErrorCode::JobNotFound, msg).await;
        };
        let (template, job_difficulty) = (job.template.clone(), job.difficulty);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
            .unwrap_or(0);
        let (min, max) = (template.job.ntime, now.max(template.job.ntime).saturating_add(MAX_FUTURE_NTIME));
        if sub.ntime < min || sub.ntime > max {
            let e = ehash_protocol::ShareError::NtimeOutOfRange { ntime: sub.ntime, min, max };
            return self.refuse(id, ErrorCode::Other, e.to_string()).await;
        }
        // the job's coinbase carries its difficulty tag right before extranonce1
        let tag = job_difficulty.tag();
        let mut tagged_en1 = Vec::with_capacity(1 + self.extranonce1.len());
        tagged_en1.push(tag);
        tagged_en1.extend_from_slice(&self.extranonce1);
        let submission = Submission {
            extranonce1: &tagged_en1,
            extranonce2: &sub.extranonce2,
            ntime: sub.ntime,
            nonce: sub.nonce,
            version_bits: sub.version_bits,
        };
        let share = match share_header(&template.job, &submission, self.shared.config.extranonce2_size, self.negotiated.version_mask) {
            Ok(s) => s,
            Err(e) => return self.refuse(id, ErrorCode::Other, e.to_string()).await,
        };
        let difficulty = if self.negotiated.share_difficulty {
            // the client declared the share's difficulty in the first byte of its extranonce2
            let declared = sub.extranonce2.first().copied().unwrap_or(0);
            match DifficultyExp::from_tag(declared) {
                Ok(d) if d >= job_difficulty => d,
                Ok(d) => {
                    let msg = format!("the share declares difficulty {}, below its job's {}", d.as_f64(), job_difficulty.as_f64());
                    return self.refuse(id, ErrorCode::LowDifficulty, msg).await;
                }
                Err(_) => {
                    let msg = format!("the first byte of extranonce2 declares the share's difficulty ({}); {declared} is not a difficulty tag", messages::SHARE_DIFFICULTY_EXTENSION);
                    return self.refuse(id, ErrorCode::Other, msg).await;
                }
            }
        } else {
            job_difficulty
        };
        let network = bitcoin::Target::from_compact(share.header.bits);
        let is_block = network.is_met_by(share.hash);
        let meets_target = difficulty.target().is_met_by(share.hash);
        if !meets_target && !is_block {
            let msg = format!("low difficulty share: hash {} is above the target for difficulty {}", share.hash, difficulty.as_f64());
            return self.refuse(id, ErrorCode::LowDifficulty, msg).await;
        }
        let work = Work {
            template,
            header: share.header,
            hash: share.hash,
            difficulty,
            tag,
            extranonce1: self.extranonce1.clone(),
            extranonce2: sub.extranonce2,
            ntime: sub.ntime,
            nonce: sub.nonce,
            version_bits: sub.version_bits,
            is_block,
            meets_target,
            username: sub.username,
        };
        let backend = self.shared.backend.clone();
        self.in_flight.push_back(Box::pin(async move {
            let result = backend.submit(&worker, &work).await;
            Answer::Submit { id, difficulty, is_block, result }
        }));
        Flow::Continue
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

    /// Send `set_difficulty` (if it changed) and a job for the current template, its coinbase
    /// tagged with the job's difficulty.
    async fn send_work(&mut self, clean: bool) -> Flow {
        let difficulty = match self.template.difficulty_range {
            Some((lo, hi)) => self.vardiff.confine(lo, hi),
            None => self.vardiff.current(),
        };
        if self.sent_difficulty != Some(difficulty) {
            self.sent_difficulty = Some(difficulty);
            if let Flow::Close = self.send(&messages::set_difficulty(difficulty)).await {
                return Flow::Close;
            }
        }
        let id = format!("{:x}", self.next_job);
        self.next_job += 1;
        let mut job = self.template.job.clone();
        job.coinb1.push(difficulty.tag());
        let line = messages::notify(&id, &job, clean);
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
