//! The upstream connection over Stratum V2 (`pool = "sv2://host:port"`): Noise-encrypted to the
//! pool's authority key, one extended channel carrying every local miner's shares.
//!
//! The channel's `user_identity` is the proxy's `<quote-id>.<worker>`; a new quote (a new epoch)
//! opens a new channel on the same connection, and the old channel's work becomes stale. Each
//! extended job becomes a template for the local miners: its coinbase prefix (which ends with the
//! pool's difficulty tag) followed by the channel's extranonce prefix; each miner's job tag, id
//! and extranonce2 fill the channel's extranonce. The pool credits every share at the channel's
//! difficulty, so the miners' jobs take exactly that difficulty.

use std::collections::{BTreeMap, HashMap};

use binary_sv2::{B032, Str0255, U256};
use common_messages_sv2::{
    MESSAGE_TYPE_SETUP_CONNECTION, MESSAGE_TYPE_SETUP_CONNECTION_ERROR, MESSAGE_TYPE_SETUP_CONNECTION_SUCCESS, Protocol, SetupConnection,
    SetupConnectionError,
};
use ehash_stratum::sv2::noise::{self, Frame, FrameWriter};
use ehash_stratum::sv2::{EPOCH_ENDED, MAX_FRAME_PAYLOAD, VERSION_ROLLING_MASK, refusal_code};
use mining_sv2::*;
use tokio_util::sync::CancellationToken;

use super::*;

/// A job of the open channel.
struct ExtJob {
    version: u32,
    prefix: Vec<u8>,
    suffix: Vec<u8>,
    path: Vec<[u8; 32]>,
    difficulty: f64,
}

/// The open extended channel.
struct Channel {
    id: u32,
    extranonce_prefix: Vec<u8>,
    /// The generation its templates belong to (a new channel makes the old one's work stale).
    generation: u64,
}

/// What one connection knows.
#[derive(Default)]
struct Link {
    channel: Option<Channel>,
    /// The request id of the channel being opened.
    opening: Option<u32>,
    next_request: u32,
    jobs: HashMap<u32, ExtJob>,
    /// The tip: previous hash, its ntime and nbits.
    tip: Option<([u8; 32], u32, u32)>,
    difficulty: f64,
    next_sequence: u32,
    /// Shares sent and not yet answered, by sequence number.
    pending: BTreeMap<u32, oneshot::Sender<Result<(), Refusal>>>,
}

/// An SV2 string field (at most 255 bytes).
fn text(s: &str) -> Result<Str0255<'_>, String> {
    Str0255::try_from(s).map_err(|_| format!("{s:?} is longer than the 255 bytes a Stratum V2 string holds"))
}

/// Send what is queued, within the request timeout (a pool that stops reading ends the connection).
async fn flush(w: &mut FrameWriter) -> Result<(), String> {
    match tokio::time::timeout(REQUEST_TIMEOUT, w.flush()).await {
        Ok(r) => r.map_err(|e| format!("write: {e}")),
        Err(_) => Err("write: the pool stopped reading".into()),
    }
}

fn malformed(what: &str) -> String {
    format!("the pool sent a malformed {what}")
}

/// The difficulty a channel target stands for (the easiest whose target is within it).
fn difficulty_of(target: &[u8; 32]) -> Option<f64> {
    DifficultyExp::within_target(bitcoin::Target::from_le_bytes(*target)).map(DifficultyExp::as_f64)
}

impl Task {
    /// One connection to an SV2 pool at `addr`, until it fails (`Err`) or `cancel`.
    pub(super) async fn session_v2(&mut self, addr: &str, authority_key: &str, cancel: &CancellationToken) -> Result<(), String> {
        let stream = tokio::time::timeout(REQUEST_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| format!("connect {addr}: timed out"))?
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let initiator = noise::initiator(authority_key).map_err(|e| e.to_string())?;
        let (mut reader, mut w) = noise::connect(stream, initiator, REQUEST_TIMEOUT, MAX_FRAME_PAYLOAD).await.map_err(|e| format!("{addr}: {e}"))?;
        let setup = SetupConnection {
            protocol: Protocol::MiningProtocol,
            min_version: 2,
            max_version: 2,
            flags: 0,
            endpoint_host: text(addr)?,
            endpoint_port: 0,
            vendor: text("ehash-proxy")?,
            hardware_version: text("")?,
            firmware: text(env!("CARGO_PKG_VERSION"))?,
            device_id: text("")?,
        };
        w.queue(setup, MESSAGE_TYPE_SETUP_CONNECTION, false).map_err(|e| e.to_string())?;
        flush(&mut w).await?;
        let mut answer = tokio::time::timeout(REQUEST_TIMEOUT, reader.read())
            .await
            .map_err(|_| "the pool did not answer SetupConnection in time".to_owned())?
            .map_err(|e| e.to_string())?;
        match answer.msg_type {
            MESSAGE_TYPE_SETUP_CONNECTION_SUCCESS => {}
            MESSAGE_TYPE_SETUP_CONNECTION_ERROR => {
                let e: SetupConnectionError = binary_sv2::from_bytes(&mut answer.payload).map_err(|_| malformed("SetupConnection.Error"))?;
                return Err(format!("the pool refused the connection: {}", String::from_utf8_lossy(e.error_code.as_bytes())));
            }
            t => return Err(format!("the pool answered SetupConnection with message type {t:#x}")),
        }
        let stop = cancel.child_token();
        let _stop_reading = stop.clone().drop_guard();
        let mut frames = reader.spawn(256, stop);
        let mut link = Link { difficulty: 1.0, ..Link::default() };
        let mut username = self.username.borrow_and_update().clone();
        self.open_channel(&mut w, &mut link, &username).await?;
        tracing::info!(pool = %addr, "upstream connected (Stratum V2, encrypted)");
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                changed = self.username.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    username = self.username.borrow_and_update().clone();
                    // a new identity is a new channel; the old one's work is stale from now on
                    if let Some(old) = link.channel.take() {
                        let close = CloseChannel { channel_id: old.id, reason_code: text("ehash-proxy: new quote")? };
                        w.queue(close, MESSAGE_TYPE_CLOSE_CHANNEL, true).map_err(|e| e.to_string())?;
                    }
                    self.state.send_modify(|s| s.connected = false);
                    self.open_channel(&mut w, &mut link, &username).await?;
                }
                cmd = self.commands.recv() => match cmd {
                    None => return Ok(()),
                    Some(first) => {
                        // every share waiting now goes out in one write
                        let mut next = Some(first);
                        let mut n = 0;
                        while let Some(Command::Submit { share, reply }) = next.take() {
                            self.submit_v2(&mut w, &mut link, share, reply);
                            n += 1;
                            if n < MAX_WRITE_BATCH {
                                next = self.commands.try_recv().ok();
                            }
                        }
                        // on failure the shares just queued get no answer: their senders see the pool unreachable
                        flush(&mut w).await?;
                    }
                },
                frame = frames.recv() => match frame {
                    Some(Ok(f)) => self.on_frame_v2(f, &mut link, addr)?,
                    Some(Err(e)) => return Err(format!("read: {e}")),
                    None => return Err("the pool closed the connection".into()),
                },
            }
        }
    }

    async fn open_channel(&mut self, w: &mut FrameWriter, link: &mut Link, username: &str) -> Result<(), String> {
        link.next_request = link.next_request.wrapping_add(1);
        link.opening = Some(link.next_request);
        link.jobs.clear();
        let open = OpenExtendedMiningChannel {
            request_id: link.next_request,
            user_identity: text(username)?,
            nominal_hash_rate: 0.0,
            max_target: U256::from(&[0xff; 32]),
            // the job tag and the miner id, and room for each miner's own extranonce2
            min_extranonce_size: (TAG_BYTES + MINER_ID_BYTES + 2) as u16,
        };
        w.queue(open, MESSAGE_TYPE_OPEN_EXTENDED_MINING_CHANNEL, false).map_err(|e| e.to_string())?;
        flush(w).await
    }

    /// Queue a share for the pool (the caller flushes).
    fn submit_v2(&mut self, w: &mut FrameWriter, link: &mut Link, share: Share, reply: oneshot::Sender<Result<(), Refusal>>) {
        let (Some(channel), Ok(job_id)) = (&link.channel, share.job_id.parse::<u32>()) else {
            let _ = reply.send(Err(Refusal::new(ErrorCode::JobNotFound, "stale job: the channel with the pool was renewed; take the new job")));
            return;
        };
        let Ok(extranonce) = B032::try_from(&share.extranonce2[..]) else {
            let _ = reply.send(Err(Refusal::new(ErrorCode::Other, "the extranonce does not fit the pool's channel")));
            return;
        };
        link.next_sequence = link.next_sequence.wrapping_add(1);
        let m = SubmitSharesExtended {
            channel_id: channel.id,
            sequence_number: link.next_sequence,
            job_id,
            nonce: share.nonce,
            ntime: share.ntime,
            version: share.version,
            extranonce,
        };
        if let Err(e) = w.queue(m, MESSAGE_TYPE_SUBMIT_SHARES_EXTENDED, true) {
            let _ = reply.send(Err(Refusal::new(ErrorCode::Other, format!("the share cannot be sent over Stratum V2: {e}"))));
            return;
        }
        link.pending.insert(link.next_sequence, reply);
    }

    fn on_frame_v2(&mut self, mut f: Frame, link: &mut Link, addr: &str) -> Result<(), String> {
        let on_channel = |id: u32, link: &Link| link.channel.as_ref().is_some_and(|c| c.id == id);
        match f.msg_type {
            MESSAGE_TYPE_OPEN_EXTENDED_MINING_CHANNEL_SUCCESS => {
                let ok: OpenExtendedMiningChannelSuccess = binary_sv2::from_bytes(&mut f.payload).map_err(|_| malformed("OpenExtendedMiningChannel.Success"))?;
                if link.opening != Some(ok.request_id) {
                    return Ok(());
                }
                link.opening = None;
                let size = usize::from(ok.extranonce_size);
                let known = self.state.borrow().extranonce2_size;
                if size <= TAG_BYTES + MINER_ID_BYTES || (known != 0 && known != size) {
                    return Err(format!("the pool's channel has {size} extranonce bytes; the proxy needs more than {} and the same on every channel", TAG_BYTES + MINER_ID_BYTES));
                }
                let difficulty = difficulty_of(&ok.target.to_array()).ok_or_else(|| malformed("channel target"))?;
                link.difficulty = difficulty;
                let generation = self.fresh_generation();
                link.channel = Some(Channel { id: ok.channel_id, extranonce_prefix: ok.extranonce_prefix.as_bytes().to_vec(), generation });
                let version_mask = self.version_rolling.then_some(VERSION_ROLLING_MASK);
                self.state.send_replace(UpstreamState {
                    connected: true,
                    session: generation,
                    extranonce2_size: size,
                    version_mask,
                    share_difficulty: false,
                    difficulty,
                    authorize_error: None,
                });
                tracing::info!(pool = %addr, channel = ok.channel_id, "upstream channel open");
            }
            MESSAGE_TYPE_OPEN_MINING_CHANNEL_ERROR => {
                let e: OpenMiningChannelError = binary_sv2::from_bytes(&mut f.payload).map_err(|_| malformed("OpenMiningChannel.Error"))?;
                if link.opening != Some(e.request_id) {
                    return Ok(());
                }
                link.opening = None;
                let code = String::from_utf8_lossy(e.error_code.as_bytes()).into_owned();
                let sv1 = refusal_code(&code);
                let why = format!("the pool refused the channel for {}: {code}", *self.username.borrow());
                self.state.send_modify(|s| {
                    s.connected = false;
                    s.authorize_error = Some((sv1.code(), why.clone()));
                });
                if sv1 != ErrorCode::EpochClosed {
                    // anything else may pass (the pool could not look the quote up): reconnect
                    // with backoff and ask again
                    return Err(why);
                }
                // the earner makes a quote of the new epoch; a channel opens with it
                tracing::info!(pool = %addr, "{why}");
                self.epoch_closed.send_modify(|n| *n += 1);
            }
            MESSAGE_TYPE_NEW_EXTENDED_MINING_JOB => {
                let j: NewExtendedMiningJob = binary_sv2::from_bytes(&mut f.payload).map_err(|_| malformed("NewExtendedMiningJob"))?;
                if !on_channel(j.channel_id, link) {
                    return Ok(());
                }
                let job = ExtJob {
                    version: j.version,
                    prefix: j.coinbase_tx_prefix.as_bytes().to_vec(),
                    suffix: j.coinbase_tx_suffix.as_bytes().to_vec(),
                    path: j.merkle_path.into_inner().iter().map(|h| h.to_array()).collect(),
                    difficulty: link.difficulty,
                };
                let active = j.min_ntime.into_inner();
                link.jobs.insert(j.job_id, job);
                // a job for the current tip is work now; a future one waits for its SetNewPrevHash
                if let (Some(ntime), Some(_)) = (active, link.tip) {
                    self.publish_v2(link, j.job_id, ntime, false);
                }
            }
            MESSAGE_TYPE_MINING_SET_NEW_PREV_HASH => {
                let p: SetNewPrevHash = binary_sv2::from_bytes(&mut f.payload).map_err(|_| malformed("SetNewPrevHash"))?;
                if !on_channel(p.channel_id, link) {
                    return Ok(());
                }
                link.tip = Some((p.prev_hash.to_array(), p.min_ntime, p.nbits));
                // jobs of the old tip are stale
                link.jobs.retain(|id, _| *id == p.job_id);
                self.publish_v2(link, p.job_id, p.min_ntime, true);
            }
            MESSAGE_TYPE_SET_TARGET => {
                let t: SetTarget = binary_sv2::from_bytes(&mut f.payload).map_err(|_| malformed("SetTarget"))?;
                if !on_channel(t.channel_id, link) {
                    return Ok(());
                }
                // jobs sent from now on carry it; earlier ones keep theirs
                link.difficulty = difficulty_of(&t.maximum_target.to_array()).ok_or_else(|| malformed("SetTarget"))?;
                let d = link.difficulty;
                self.state.send_modify(|s| s.difficulty = d);
            }
            MESSAGE_TYPE_SUBMIT_SHARES_SUCCESS => {
                let ok: SubmitSharesSuccess = binary_sv2::from_bytes(&mut f.payload).map_err(|_| malformed("SubmitShares.Success"))?;
                // one answer may acknowledge every share up to its sequence number
                let acked: Vec<u32> = link.pending.range(..=ok.last_sequence_number).map(|(seq, _)| *seq).collect();
                for seq in acked {
                    if let Some(reply) = link.pending.remove(&seq) {
                        let _ = reply.send(Ok(()));
                    }
                }
            }
            MESSAGE_TYPE_SUBMIT_SHARES_ERROR => {
                let e: SubmitSharesError = binary_sv2::from_bytes(&mut f.payload).map_err(|_| malformed("SubmitShares.Error"))?;
                if let Some(reply) = link.pending.remove(&e.sequence_number) {
                    let code = String::from_utf8_lossy(e.error_code.as_bytes()).into_owned();
                    let sv1 = refusal_code(&code);
                    if sv1 == ErrorCode::EpochClosed {
                        self.epoch_closed.send_modify(|n| *n += 1);
                    }
                    let _ = reply.send(Err(Refusal::new(sv1, format!("the pool refused the share: {code}"))));
                }
            }
            MESSAGE_TYPE_CLOSE_CHANNEL => {
                let c: CloseChannel = binary_sv2::from_bytes(&mut f.payload).map_err(|_| malformed("CloseChannel"))?;
                if !on_channel(c.channel_id, link) {
                    return Ok(());
                }
                let reason = String::from_utf8_lossy(c.reason_code.as_bytes()).into_owned();
                link.channel = None;
                link.jobs.clear();
                self.state.send_modify(|s| s.connected = false);
                if reason.starts_with(EPOCH_ENDED) {
                    // the earner makes a quote of the new epoch; a new channel opens with it
                    tracing::info!(pool = %addr, %reason, "the pool closed the channel: the epoch ended");
                    self.epoch_closed.send_modify(|n| *n += 1);
                } else {
                    return Err(format!("the pool closed the channel: {reason}"));
                }
            }
            t => tracing::debug!(pool = %addr, msg_type = t, "ignoring an SV2 message"),
        }
        Ok(())
    }

    /// Hand the channel's job `job_id` on the current tip to the local miners.
    fn publish_v2(&mut self, link: &Link, job_id: u32, ntime: u32, clean: bool) {
        let (Some(channel), Some(job), Some((prev_hash, _, nbits))) = (&link.channel, link.jobs.get(&job_id), link.tip) else { return };
        // downstream coinbase: the pool's prefix (ending with its difficulty tag) and the
        // channel's extranonce prefix; each miner's tag, id and extranonce2 fill the extranonce
        let mut coinb1 = job.prefix.clone();
        coinb1.extend_from_slice(&channel.extranonce_prefix);
        let template = JobTemplate { prev_hash, coinb1, coinb2: job.suffix.clone(), merkle_branch: job.path.clone(), version: job.version, nbits, ntime };
        self.publish(job_id.to_string(), template, job.difficulty, channel.generation, clean, false);
    }
}
