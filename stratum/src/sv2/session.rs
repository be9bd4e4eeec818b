//! One SV2 connection after its Noise handshake: setup, standard and extended channels, jobs, shares.
//!
//! Frames are read in a task of their own (reading is not cancellation-safe) and handled here in
//! order. Shares of a connection may be with the backend at once; their answers go out in the
//! order they came, as on V1.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use binary_sv2::{B032, B064K, GetSize, Seq0255, Serialize, Str0255, Sv2Option, U256};
use common_messages_sv2::{
    MESSAGE_TYPE_SETUP_CONNECTION, MESSAGE_TYPE_SETUP_CONNECTION_ERROR, MESSAGE_TYPE_SETUP_CONNECTION_SUCCESS, Protocol, SetupConnection,
    SetupConnectionError, SetupConnectionSuccess,
};
use ehash_protocol::stratum::messages::ErrorCode;
use ehash_protocol::stratum::share::{Submission, coinbase, merkle_root, share_header};
use ehash_protocol::work::DifficultyExp;
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use futures::{FutureExt, StreamExt};
use mining_sv2::*;
use tokio_util::sync::CancellationToken;

use super::{EPOCH_CLOSED, EPOCH_ENDED, UNAVAILABLE, VERSION_ROLLING_MASK};
use super::noise::{Frame, FrameReader, FrameWriter, NoiseError};
use crate::backend::{Backend, Refusal, Work};
use crate::job::Template;
use crate::server::Shared;
use crate::vardiff::Vardiff;

/// Jobs remembered per channel (older job ids answer `stale-share`).
const JOBS_KEPT: usize = 16;
/// A peer that does not take a frame within this time is cut off.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Consecutive invalid submissions after which the connection is closed.
const MAX_INVALID_STREAK: u32 = 1000;
/// Latest accepted ntime, relative to now (Bitcoin's two-hour rule).
const MAX_FUTURE_NTIME: u32 = 7200;
/// The Mining protocol version served.
const PROTOCOL_VERSION: u16 = 2;
/// SetupConnection flag (Mining protocol): the client wants to select its own work.
const REQUIRES_WORK_SELECTION: u32 = 1 << 1;

struct ChannelJob {
    id: u32,
    template: Arc<Template>,
    difficulty: DifficultyExp,
}

struct Channel<W> {
    id: u32,
    /// An extended channel: the client rolls the extranonce2 bytes itself (it gets the coinbase
    /// and merkle path); a standard one mines headers with them fixed at zero.
    extended: bool,
    username: String,
    worker: W,
    extranonce1: Vec<u8>,
    extranonce2: Vec<u8>,
    vardiff: Vardiff,
    jobs: VecDeque<ChannelJob>,
    next_job: u32,
    prev_hash: Option<[u8; 32]>,
    sent_difficulty: Option<DifficultyExp>,
}

/// Why a share was refused: the SV2 error code, and the SV1 code it is counted under.
struct Rejection {
    code: &'static str,
    refusal: Refusal,
}

impl Rejection {
    fn new(code: &'static str, sv1: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, refusal: Refusal::new(sv1, message) }
    }

    fn from_backend(r: Refusal) -> Self {
        let code = match r.code {
            ErrorCode::DuplicateShare => ERROR_CODE_SUBMIT_SHARES_DUPLICATE_SHARE,
            ErrorCode::LowDifficulty => ERROR_CODE_SUBMIT_SHARES_DIFFICULTY_TOO_LOW,
            ErrorCode::JobNotFound => ERROR_CODE_SUBMIT_SHARES_STALE_SHARE,
            ErrorCode::EpochClosed => EPOCH_CLOSED,
            ErrorCode::Unavailable => UNAVAILABLE,
            _ => ERROR_CODE_SUBMIT_SHARES_INVALID_SHARE,
        };
        Self { code, refusal: r }
    }
}

/// A channel request, standard or extended.
struct Open<'a> {
    request_id: u32,
    user_identity: &'a [u8],
    max_target: [u8; 32],
    /// `Some(min_extranonce_size)` for an extended channel.
    extended: Option<u16>,
}

/// A share, standard (`extranonce: None`) or extended.
struct Share {
    channel_id: u32,
    sequence_number: u32,
    job_id: u32,
    nonce: u32,
    ntime: u32,
    version: u32,
    extranonce: Option<Vec<u8>>,
}

struct Answer {
    channel_id: u32,
    sequence_number: u32,
    difficulty: DifficultyExp,
    is_block: bool,
    result: Result<u64, Rejection>,
}

enum Flow {
    Continue,
    Close,
}

struct Session<B: Backend> {
    shared: Arc<Shared<B>>,
    peer: SocketAddr,
    writer: FrameWriter,
    setup: bool,
    channels: HashMap<u32, Channel<B::Worker>>,
    next_channel: u32,
    template: Arc<Template>,
    invalid_streak: u32,
    in_flight: FuturesOrdered<BoxFuture<'static, Answer>>,
}

pub(crate) async fn run<B: Backend>(shared: Arc<Shared<B>>, reader: FrameReader, writer: FrameWriter, peer: SocketAddr, cancel: CancellationToken) {
    shared.stats.connections.fetch_add(1, Ordering::Relaxed);
    let max_in_flight = shared.config.max_in_flight.max(1);
    let read_cancel = cancel.child_token();
    let mut frames = reader.spawn(16, read_cancel.clone());
    let mut templates = shared.templates.clone();
    let template = templates.borrow_and_update().clone();
    let mut notices = shared.backend.notices();
    notices.borrow_and_update();
    let mut s = Session {
        shared: shared.clone(),
        peer,
        writer,
        setup: false,
        channels: HashMap::new(),
        next_channel: 1,
        template,
        invalid_streak: 0,
        in_flight: FuturesOrdered::new(),
    };
    let idle = Duration::from_secs(shared.config.idle_timeout_secs.max(1));
    let idle_deadline = tokio::time::sleep(idle);
    tokio::pin!(idle_deadline);
    let mut retarget = tokio::time::interval(Duration::from_secs(shared.config.retarget_secs.max(1)));
    retarget.tick().await;
    tracing::debug!(%peer, "sv2 miner connected");
    loop {
        let can_read = s.in_flight.len() < max_in_flight;
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
            Some(answer) = s.in_flight.next(), if !s.in_flight.is_empty() => {
                // every answer ready now goes out in one write
                let mut flow = s.on_answer(answer).await;
                while matches!(flow, Flow::Continue) {
                    match s.in_flight.next().now_or_never() {
                        Some(Some(a)) => flow = s.on_answer(a).await,
                        _ => break,
                    }
                }
                match flow {
                    Flow::Continue => flush(&mut s.writer, s.peer).await,
                    close => close,
                }
            }
            frame = frames.recv(), if can_read => {
                idle_deadline.as_mut().reset(tokio::time::Instant::now() + idle);
                match frame {
                    Some(Ok(f)) => s.on_frame(f).await,
                    Some(Err(e)) => {
                        match e {
                            NoiseError::Closed(_) => tracing::debug!(%peer, "sv2 miner closed the connection"),
                            e => tracing::info!(%peer, error = %e, "sv2: closing the connection"),
                        }
                        Flow::Close
                    }
                    None => Flow::Close,
                }
            },
            _ = retarget.tick() => s.on_retarget().await,
            _ = &mut idle_deadline => {
                tracing::debug!(%peer, "sv2 idle timeout");
                Flow::Close
            }
        };
        if matches!(flow, Flow::Close) {
            break;
        }
    }
    read_cancel.cancel();
    s.writer.shutdown().await;
    for ch in s.channels.values() {
        shared.backend.release_extranonce1(&ch.extranonce1);
    }
    shared.stats.connections.fetch_sub(1, Ordering::Relaxed);
    tracing::debug!(%peer, "sv2 miner disconnected");
}

/// Send one message (after whatever is queued); a peer that does not take it in time, or a
/// closed one, ends the connection.
async fn send<T: Serialize + GetSize>(writer: &mut FrameWriter, peer: SocketAddr, msg: T, msg_type: u8, channel_msg: bool) -> Flow {
    match queue(writer, peer, msg, msg_type, channel_msg) {
        Flow::Continue => flush(writer, peer).await,
        close => close,
    }
}

/// Queue one message for the next [`flush`]; one that cannot be encoded ends the connection.
fn queue<T: Serialize + GetSize>(writer: &mut FrameWriter, peer: SocketAddr, msg: T, msg_type: u8, channel_msg: bool) -> Flow {
    match writer.queue(msg, msg_type, channel_msg) {
        Ok(()) => Flow::Continue,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "sv2 write");
            Flow::Close
        }
    }
}

/// Send what is queued, as [`send`] does.
async fn flush(writer: &mut FrameWriter, peer: SocketAddr) -> Flow {
    match tokio::time::timeout(WRITE_TIMEOUT, writer.flush()).await {
        Ok(Ok(())) => Flow::Continue,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "sv2 write");
            Flow::Close
        }
        Err(_) => {
            tracing::info!(%peer, "sv2 miner stopped reading; closing");
            Flow::Close
        }
    }
}

/// A string field of at most 255 bytes (cut at a character boundary).
fn str0255(text: &str) -> Str0255<'_> {
    let mut end = text.len().min(255);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    // at most 255 bytes: always fits
    #[allow(clippy::expect_used)]
    Str0255::try_from(&text[..end]).unwrap_or_else(|_| Str0255::try_from("").expect("the empty string fits any string field"))
}

fn u32_now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
        .unwrap_or(0)
}

/// The difficulty a channel's next job is sent with.
fn job_difficulty<W>(ch: &mut Channel<W>, template: &Template) -> DifficultyExp {
    match template.difficulty_range {
        Some((lo, hi)) => ch.vardiff.confine(lo, hi),
        None => ch.vardiff.current(),
    }
}

/// Send a channel a job for `template` (with `SetTarget` first if its difficulty changed, and
/// `SetNewPrevHash` after it if the chain tip changed or the template is clean, as V1's
/// `clean_jobs`: then the job is a future one and older jobs are stale).
async fn send_work<W>(writer: &mut FrameWriter, peer: SocketAddr, ch: &mut Channel<W>, template: &Arc<Template>, clean: bool) -> Flow {
    let difficulty = job_difficulty(ch, template);
    if let Some(before) = ch.sent_difficulty
        && before != difficulty
    {
        let target = difficulty.target().to_le_bytes();
        let msg = SetTarget { channel_id: ch.id, maximum_target: U256::from(&target) };
        if let Flow::Close = send(writer, peer, msg, MESSAGE_TYPE_SET_TARGET, CHANNEL_BIT_SET_TARGET).await {
            return Flow::Close;
        }
    }
    ch.sent_difficulty = Some(difficulty);
    let new_tip = clean || ch.prev_hash != Some(template.job.prev_hash);
    if new_tip {
        ch.jobs.clear();
    }
    let id = ch.next_job;
    ch.next_job = ch.next_job.wrapping_add(1).max(1);
    let min_ntime = Sv2Option::new((!new_tip).then_some(template.job.ntime));
    let flow = if ch.extended {
        // coinbase = prefix ‖ extranonce_prefix (extranonce1) ‖ extranonce (the client's) ‖ suffix
        let mut prefix = template.job.coinb1.clone();
        prefix.push(difficulty.tag());
        let path: Vec<U256<'_>> = template.job.merkle_branch.iter().map(U256::from).collect();
        match (B064K::try_from(&prefix[..]), B064K::try_from(&template.job.coinb2[..]), Seq0255::try_from(path)) {
            (Ok(coinbase_tx_prefix), Ok(coinbase_tx_suffix), Ok(merkle_path)) => {
                let job = NewExtendedMiningJob {
                    channel_id: ch.id,
                    job_id: id,
                    min_ntime,
                    version: template.job.version,
                    version_rolling_allowed: true,
                    merkle_path,
                    coinbase_tx_prefix,
                    coinbase_tx_suffix,
                };
                send(writer, peer, job, MESSAGE_TYPE_NEW_EXTENDED_MINING_JOB, CHANNEL_BIT_NEW_EXTENDED_MINING_JOB).await
            }
            _ => {
                tracing::error!(%peer, "sv2: a template's coinbase or merkle path does not fit an extended job; closing");
                Flow::Close
            }
        }
    } else {
        let mut tagged = Vec::with_capacity(1 + ch.extranonce1.len());
        tagged.push(difficulty.tag());
        tagged.extend_from_slice(&ch.extranonce1);
        let root = merkle_root(&coinbase(&template.job, &tagged, &ch.extranonce2), &template.job.merkle_branch);
        let job = NewMiningJob { channel_id: ch.id, job_id: id, min_ntime, version: template.job.version, merkle_root: U256::from(&root) };
        send(writer, peer, job, MESSAGE_TYPE_NEW_MINING_JOB, CHANNEL_BIT_NEW_MINING_JOB).await
    };
    if let Flow::Close = flow {
        return Flow::Close;
    }
    ch.jobs.push_back(ChannelJob { id, template: template.clone(), difficulty });
    while ch.jobs.len() > JOBS_KEPT {
        ch.jobs.pop_front();
    }
    if new_tip {
        ch.prev_hash = Some(template.job.prev_hash);
        let msg = SetNewPrevHash {
            channel_id: ch.id,
            job_id: id,
            prev_hash: U256::from(&template.job.prev_hash),
            min_ntime: template.job.ntime,
            nbits: template.job.nbits,
        };
        return send(writer, peer, msg, MESSAGE_TYPE_MINING_SET_NEW_PREV_HASH, CHANNEL_BIT_MINING_SET_NEW_PREV_HASH).await;
    }
    Flow::Continue
}

impl<B: Backend> Session<B> {
    async fn on_frame(&mut self, mut f: Frame) -> Flow {
        let peer = self.peer;
        if f.ext_type != 0 {
            tracing::debug!(%peer, ext = f.ext_type, msg = f.msg_type, "sv2: extension message ignored");
            return Flow::Continue;
        }
        if !self.setup {
            if f.msg_type != MESSAGE_TYPE_SETUP_CONNECTION {
                tracing::info!(%peer, msg = f.msg_type, "sv2: the first message is not SetupConnection; closing");
                return Flow::Close;
            }
            return match binary_sv2::from_bytes::<SetupConnection>(&mut f.payload) {
                Ok(m) => self.on_setup(m).await,
                Err(e) => {
                    tracing::info!(%peer, error = ?e, "sv2: malformed SetupConnection; closing");
                    Flow::Close
                }
            };
        }
        match f.msg_type {
            MESSAGE_TYPE_OPEN_STANDARD_MINING_CHANNEL => match binary_sv2::from_bytes::<OpenStandardMiningChannel>(&mut f.payload) {
                Ok(m) => self.on_open(Open { request_id: m.request_id, user_identity: m.user_identity.as_bytes(), max_target: m.max_target.to_array(), extended: None }).await,
                Err(e) => self.malformed("OpenStandardMiningChannel", e),
            },
            MESSAGE_TYPE_OPEN_EXTENDED_MINING_CHANNEL => match binary_sv2::from_bytes::<OpenExtendedMiningChannel>(&mut f.payload) {
                Ok(m) => {
                    let open = Open {
                        request_id: m.request_id,
                        user_identity: m.user_identity.as_bytes(),
                        max_target: m.max_target.to_array(),
                        extended: Some(m.min_extranonce_size),
                    };
                    self.on_open(open).await
                }
                Err(e) => self.malformed("OpenExtendedMiningChannel", e),
            },
            MESSAGE_TYPE_SUBMIT_SHARES_STANDARD => match binary_sv2::from_bytes::<SubmitSharesStandard>(&mut f.payload) {
                Ok(m) => {
                    let share = Share { channel_id: m.channel_id, sequence_number: m.sequence_number, job_id: m.job_id, nonce: m.nonce, ntime: m.ntime, version: m.version, extranonce: None };
                    self.on_submit(share).await
                }
                Err(e) => self.malformed("SubmitSharesStandard", e),
            },
            MESSAGE_TYPE_SUBMIT_SHARES_EXTENDED => match binary_sv2::from_bytes::<SubmitSharesExtended>(&mut f.payload) {
                Ok(m) => {
                    let share = Share {
                        channel_id: m.channel_id,
                        sequence_number: m.sequence_number,
                        job_id: m.job_id,
                        nonce: m.nonce,
                        ntime: m.ntime,
                        version: m.version,
                        extranonce: Some(m.extranonce.as_bytes().to_vec()),
                    };
                    self.on_submit(share).await
                }
                Err(e) => self.malformed("SubmitSharesExtended", e),
            },
            MESSAGE_TYPE_CLOSE_CHANNEL => match binary_sv2::from_bytes::<CloseChannel>(&mut f.payload) {
                Ok(m) => {
                    if let Some(ch) = self.channels.remove(&m.channel_id) {
                        self.shared.backend.release_extranonce1(&ch.extranonce1);
                    }
                    Flow::Continue
                }
                Err(e) => self.malformed("CloseChannel", e),
            },
            other => {
                tracing::debug!(%peer, msg = other, "sv2: message not served; ignored");
                Flow::Continue
            }
        }
    }

    fn malformed(&self, what: &str, e: binary_sv2::Error) -> Flow {
        tracing::info!(peer = %self.peer, error = ?e, "sv2: malformed {what}; closing");
        Flow::Close
    }

    async fn on_setup(&mut self, m: SetupConnection<'_>) -> Flow {
        let peer = self.peer;
        let refuse = |code: &'static str, flags: u32| SetupConnectionError { flags, error_code: str0255(code) };
        let error = if !matches!(m.protocol, Protocol::MiningProtocol) {
            Some(refuse(common_messages_sv2::ERROR_CODE_SETUP_CONNECTION_UNSUPPORTED_PROTOCOL, 0))
        } else if m.min_version > PROTOCOL_VERSION || m.max_version < PROTOCOL_VERSION {
            Some(refuse(common_messages_sv2::ERROR_CODE_SETUP_CONNECTION_PROTOCOL_VERSION_MISMATCH, 0))
        } else if m.flags & REQUIRES_WORK_SELECTION != 0 {
            Some(refuse(common_messages_sv2::ERROR_CODE_SETUP_CONNECTION_UNSUPPORTED_FEATURE_FLAGS, REQUIRES_WORK_SELECTION))
        } else {
            None
        };
        if let Some(e) = error {
            tracing::info!(%peer, "sv2: SetupConnection refused");
            let _ = send(&mut self.writer, peer, e, MESSAGE_TYPE_SETUP_CONNECTION_ERROR, false).await;
            return Flow::Close;
        }
        self.setup = true;
        let ok = SetupConnectionSuccess { used_version: PROTOCOL_VERSION, flags: 0 };
        send(&mut self.writer, peer, ok, MESSAGE_TYPE_SETUP_CONNECTION_SUCCESS, false).await
    }

    async fn open_error(&mut self, request_id: u32, code: &str) -> Flow {
        let msg = OpenMiningChannelError { request_id, error_code: str0255(code) };
        send(&mut self.writer, self.peer, msg, MESSAGE_TYPE_OPEN_MINING_CHANNEL_ERROR, CHANNEL_BIT_OPEN_MINING_CHANNEL_ERROR).await
    }

    async fn on_open(&mut self, m: Open<'_>) -> Flow {
        let peer = self.peer;
        let en2_size = self.shared.config.extranonce2_size;
        if let Some(min) = m.extended
            && usize::from(min) > en2_size
        {
            return self.open_error(m.request_id, ERROR_CODE_OPEN_MINING_CHANNEL_MIN_EXTRANONCE_SIZE_TOO_LARGE).await;
        }
        let Ok(username) = String::from_utf8(m.user_identity.to_vec()) else {
            return self.open_error(m.request_id, ERROR_CODE_OPEN_MINING_CHANNEL_INVALID_USER_IDENTITY).await;
        };
        let max = self.shared.config.max_workers.max(1);
        if self.channels.len() >= max {
            return self.open_error(m.request_id, ERROR_CODE_OPEN_MINING_CHANNEL_CHANNEL_CAPACITY_EXHAUSTED).await;
        }
        let worker = match self.shared.backend.authorize(&username).await {
            Ok(w) => w,
            Err(r) => {
                tracing::info!(%peer, user = %username, reason = %r.message, "sv2: channel refused");
                let code = match r.code {
                    ErrorCode::EpochClosed => EPOCH_CLOSED,
                    ErrorCode::Unavailable => UNAVAILABLE,
                    _ => ERROR_CODE_OPEN_MINING_CHANNEL_UNKNOWN_USER,
                };
                return self.open_error(m.request_id, code).await;
            }
        };
        let d = self.shared.difficulty;
        let mut vardiff = Vardiff::new(
            d.initial,
            d.min,
            d.max,
            Duration::from_secs(self.shared.config.target_share_secs.max(1)),
            Duration::from_secs(self.shared.config.retarget_secs.max(1)),
            Instant::now(),
        );
        // never an easier target than the client can take
        let max_target = bitcoin::Target::from_le_bytes(m.max_target);
        let mut floor = d.min;
        while floor.target() > max_target {
            match DifficultyExp::new(floor.exp() + 1) {
                Ok(next) if next <= d.max => floor = next,
                _ => return self.open_error(m.request_id, ERROR_CODE_OPEN_MINING_CHANNEL_MAX_TARGET_OUT_OF_RANGE).await,
            }
        }
        vardiff.raise_min(floor);
        let Some(extranonce1) = self.shared.backend.allocate_extranonce1(None) else {
            return self.open_error(m.request_id, ERROR_CODE_OPEN_MINING_CHANNEL_CHANNEL_CAPACITY_EXHAUSTED).await;
        };
        let id = self.next_channel;
        self.next_channel = self.next_channel.wrapping_add(1).max(1);
        let mut ch = Channel {
            id,
            extended: m.extended.is_some(),
            username,
            worker,
            extranonce1,
            extranonce2: vec![0; self.shared.config.extranonce2_size],
            vardiff,
            jobs: VecDeque::new(),
            next_job: 1,
            prev_hash: None,
            sent_difficulty: None,
        };
        let template = self.template.clone();
        let difficulty = job_difficulty(&mut ch, &template);
        ch.sent_difficulty = Some(difficulty);
        let target = difficulty.target().to_le_bytes();
        // standard: the whole extranonce (extranonce2 fixed at zeros); extended: extranonce1,
        // the client fills extranonce2
        let mut prefix = ch.extranonce1.clone();
        if !ch.extended {
            prefix.extend_from_slice(&ch.extranonce2);
        }
        let (Ok(extranonce_prefix), Ok(extranonce_size)) = (B032::try_from(&prefix[..]), u16::try_from(en2_size)) else {
            self.shared.backend.release_extranonce1(&ch.extranonce1);
            return self.open_error(m.request_id, ERROR_CODE_OPEN_MINING_CHANNEL_UNSUPPORTED_MIN_EXTRANONCE_SIZE).await;
        };
        let flow = if ch.extended {
            let ok = OpenExtendedMiningChannelSuccess {
                request_id: m.request_id,
                channel_id: id,
                target: U256::from(&target),
                extranonce_size,
                extranonce_prefix,
                group_channel_id: 0,
            };
            send(&mut self.writer, peer, ok, MESSAGE_TYPE_OPEN_EXTENDED_MINING_CHANNEL_SUCCESS, CHANNEL_BIT_OPEN_EXTENDED_MINING_CHANNEL_SUCCESS).await
        } else {
            let ok = OpenStandardMiningChannelSuccess {
                request_id: m.request_id,
                channel_id: id,
                target: U256::from(&target),
                extranonce_prefix,
                group_channel_id: 0,
            };
            send(&mut self.writer, peer, ok, MESSAGE_TYPE_OPEN_STANDARD_MINING_CHANNEL_SUCCESS, CHANNEL_BIT_OPEN_STANDARD_MINING_CHANNEL_SUCCESS).await
        };
        tracing::debug!(%peer, channel = id, user = %ch.username, "sv2 channel open");
        let flow = match flow {
            Flow::Continue => send_work(&mut self.writer, peer, &mut ch, &template, true).await,
            Flow::Close => Flow::Close,
        };
        self.channels.insert(id, ch);
        flow
    }

    /// Answer a refused submission now, or after the ones before it.
    async fn finish(&mut self, channel_id: u32, sequence_number: u32, r: Rejection) -> Flow {
        let difficulty = self.channels.get(&channel_id).map(|c| c.vardiff.current()).unwrap_or(self.shared.difficulty.initial);
        let answer = Answer { channel_id, sequence_number, difficulty, is_block: false, result: Err(r) };
        if self.in_flight.is_empty() {
            match self.on_answer(answer).await {
                Flow::Continue => flush(&mut self.writer, self.peer).await,
                close => close,
            }
        } else {
            self.in_flight.push_back(Box::pin(std::future::ready(answer)));
            Flow::Continue
        }
    }

    async fn on_submit(&mut self, m: Share) -> Flow {
        let (cid, seq) = (m.channel_id, m.sequence_number);
        let Some(ch) = self.channels.get(&cid) else {
            let r = Rejection::new(ERROR_CODE_SUBMIT_SHARES_INVALID_CHANNEL_ID, ErrorCode::Other, format!("no channel {cid} on this connection"));
            return self.finish(cid, seq, r).await;
        };
        // a standard share for a standard channel, an extended one (with its extranonce) for an
        // extended channel
        let extranonce2 = match (&m.extranonce, ch.extended) {
            (None, false) => ch.extranonce2.clone(),
            (Some(en2), true) if en2.len() == ch.extranonce2.len() => en2.clone(),
            (Some(en2), true) => {
                let msg = format!("the extranonce is {} bytes; this channel's is {}", en2.len(), ch.extranonce2.len());
                return self.finish(cid, seq, Rejection::new(ERROR_CODE_SUBMIT_SHARES_BAD_EXTRANONCE_SIZE, ErrorCode::Other, msg)).await;
            }
            (_, extended) => {
                let msg = format!("channel {cid} is {}", if extended { "extended: submit extended shares" } else { "standard: submit standard shares" });
                return self.finish(cid, seq, Rejection::new(ERROR_CODE_SUBMIT_SHARES_INVALID_CHANNEL_ID, ErrorCode::Other, msg)).await;
            }
        };
        let Some(job) = ch.jobs.iter().find(|j| j.id == m.job_id) else {
            let r = if m.job_id == 0 || m.job_id >= ch.next_job {
                Rejection::new(ERROR_CODE_SUBMIT_SHARES_INVALID_JOB_ID, ErrorCode::JobNotFound, format!("job {} was never sent on channel {cid}", m.job_id))
            } else {
                Rejection::new(ERROR_CODE_SUBMIT_SHARES_STALE_SHARE, ErrorCode::JobNotFound, format!("job {} is stale (a new block or too old)", m.job_id))
            };
            return self.finish(cid, seq, r).await;
        };
        let (template, difficulty) = (job.template.clone(), job.difficulty);
        if (m.version ^ template.job.version) & !VERSION_ROLLING_MASK != 0 {
            let msg = format!("version {:08x} differs from the job's {:08x} outside the rolling mask {VERSION_ROLLING_MASK:08x}", m.version, template.job.version);
            return self.finish(cid, seq, Rejection::new(ERROR_CODE_VERSION_ROLLING_NOT_ALLOWED, ErrorCode::Other, msg)).await;
        }
        let (min, max) = (template.job.ntime, u32_now().max(template.job.ntime).saturating_add(MAX_FUTURE_NTIME));
        if m.ntime < min || m.ntime > max {
            let e = ehash_protocol::ShareError::NtimeOutOfRange { ntime: m.ntime, min, max };
            return self.finish(cid, seq, Rejection::new(ERROR_CODE_SUBMIT_SHARES_INVALID_SHARE, ErrorCode::Other, e.to_string())).await;
        }
        let tag = difficulty.tag();
        let mut tagged = Vec::with_capacity(1 + ch.extranonce1.len());
        tagged.push(tag);
        tagged.extend_from_slice(&ch.extranonce1);
        let submission = Submission {
            extranonce1: &tagged,
            extranonce2: &extranonce2,
            ntime: m.ntime,
            nonce: m.nonce,
            version_bits: Some(m.version & VERSION_ROLLING_MASK),
        };
        let share = match share_header(&template.job, &submission, extranonce2.len(), Some(VERSION_ROLLING_MASK)) {
            Ok(s) => s,
            Err(e) => return self.finish(cid, seq, Rejection::new(ERROR_CODE_SUBMIT_SHARES_INVALID_SHARE, ErrorCode::Other, e.to_string())).await,
        };
        let is_block = bitcoin::Target::from_compact(share.header.bits).is_met_by(share.hash);
        let meets_target = difficulty.target().is_met_by(share.hash);
        if !meets_target && !is_block {
            let msg = format!("hash {} is above the target for difficulty {}", share.hash, difficulty.as_f64());
            return self.finish(cid, seq, Rejection::new(ERROR_CODE_SUBMIT_SHARES_DIFFICULTY_TOO_LOW, ErrorCode::LowDifficulty, msg)).await;
        }
        let work = Work {
            template,
            header: share.header,
            hash: share.hash,
            difficulty,
            tag,
            extranonce1: ch.extranonce1.clone(),
            extranonce2,
            ntime: m.ntime,
            nonce: m.nonce,
            version_bits: Some(m.version & VERSION_ROLLING_MASK),
            is_block,
            meets_target,
            username: ch.username.clone(),
        };
        let (backend, worker) = (self.shared.backend.clone(), ch.worker.clone());
        self.in_flight.push_back(Box::pin(async move {
            let result = backend.submit(&worker, &work).await.map_err(Rejection::from_backend);
            Answer { channel_id: cid, sequence_number: seq, difficulty, is_block, result }
        }));
        Flow::Continue
    }

    async fn on_answer(&mut self, a: Answer) -> Flow {
        let peer = self.peer;
        if a.is_block {
            self.shared.stats.blocks.fetch_add(1, Ordering::Relaxed);
        }
        match a.result {
            Ok(amount) => {
                self.invalid_streak = 0;
                self.shared.stats.accept(amount, a.difficulty);
                let ok = SubmitSharesSuccess {
                    channel_id: a.channel_id,
                    last_sequence_number: a.sequence_number,
                    new_submits_accepted_count: 1,
                    new_shares_sum: amount,
                };
                if let Flow::Close = queue(&mut self.writer, peer, ok, MESSAGE_TYPE_SUBMIT_SHARES_SUCCESS, CHANNEL_BIT_SUBMIT_SHARES_SUCCESS) {
                    return Flow::Close;
                }
                let template = self.template.clone();
                match self.channels.get_mut(&a.channel_id) {
                    Some(ch) => match ch.vardiff.on_share(Instant::now()) {
                        Some(_) => send_work(&mut self.writer, peer, ch, &template, false).await,
                        None => Flow::Continue,
                    },
                    None => Flow::Continue,
                }
            }
            Err(r) => {
                self.shared.stats.reject(r.refusal.code.code());
                if r.refusal.code != ErrorCode::Unavailable {
                    self.invalid_streak += 1;
                }
                tracing::debug!(%peer, channel = a.channel_id, code = r.code, reason = %r.refusal.message, "sv2 share refused");
                let msg = SubmitSharesError { channel_id: a.channel_id, sequence_number: a.sequence_number, error_code: str0255(r.code) };
                if let Flow::Close = queue(&mut self.writer, peer, msg, MESSAGE_TYPE_SUBMIT_SHARES_ERROR, CHANNEL_BIT_SUBMIT_SHARES_ERROR) {
                    return Flow::Close;
                }
                if self.invalid_streak >= MAX_INVALID_STREAK {
                    tracing::info!(%peer, "sv2: too many invalid shares in a row; closing");
                    return Flow::Close;
                }
                Flow::Continue
            }
        }
    }

    async fn on_template(&mut self, t: Arc<Template>) -> Flow {
        self.template = t.clone();
        for ch in self.channels.values_mut() {
            if let Flow::Close = send_work(&mut self.writer, self.peer, ch, &t, t.clean).await {
                return Flow::Close;
            }
        }
        Flow::Continue
    }

    async fn on_retarget(&mut self) -> Flow {
        let t = self.template.clone();
        let now = Instant::now();
        for ch in self.channels.values_mut() {
            if ch.vardiff.retarget(now).is_some()
                && let Flow::Close = send_work(&mut self.writer, self.peer, ch, &t, false).await
            {
                return Flow::Close;
            }
        }
        Flow::Continue
    }

    /// A new epoch (or other notice): a channel whose worker it concerns is closed with the
    /// reason; its shares are not taken any more.
    async fn on_notice(&mut self) -> Flow {
        let ids: Vec<u32> = self.channels.keys().copied().collect();
        for id in ids {
            let Some(worker) = self.channels.get(&id).map(|c| c.worker.clone()) else { continue };
            let Some(text) = self.shared.backend.notice_for(&worker).await else { continue };
            if let Some(ch) = self.channels.remove(&id) {
                self.shared.backend.release_extranonce1(&ch.extranonce1);
            }
            tracing::info!(peer = %self.peer, channel = id, "sv2: closing the channel: {text}");
            let reason = format!("{EPOCH_ENDED}: {text}");
            let msg = CloseChannel { channel_id: id, reason_code: str0255(&reason) };
            if let Flow::Close = send(&mut self.writer, self.peer, msg, MESSAGE_TYPE_CLOSE_CHANNEL, CHANNEL_BIT_CLOSE_CHANNEL).await {
                return Flow::Close;
            }
        }
        Flow::Continue
    }
}
