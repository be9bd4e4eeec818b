//! The recorder: the one writer of shares, and the one place that decides which epoch a share
//! may still be recorded in.
//!
//! Shares arrive from every Stratum connection; the recorder writes whatever has queued up as
//! one group ([`Ledger::record`], one transaction and one fsync for many shares) and answers
//! each share once its group is durable, so a share is acknowledged only after it is on disk,
//! yet the disk is not asked once per share. Closing an epoch goes through the same queue: every
//! share queued before the close is recorded (or refused) first, and none is recorded in the
//! epoch after it.
//!
//! Once a block is found in the open epoch, the epoch is *closing*: later shares of it are stale
//! (the chain moved on) until the network's answer closes the epoch on the block or, if every
//! block found in it was refused, lets the epoch go on. A block is always kept, even when the
//! share that found it is refused.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ehash_protocol::epoch::CloseReason;
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};
use crate::ledger::{BlockRecord, BlockStatus, ClosingBlock, EpochRecord, Ledger, ShareRecord};

/// Most shares in one group.
const MAX_GROUP: usize = 4096;
/// Requests waiting for the writer before senders wait too.
const QUEUE: usize = 16 * 1024;

/// Why a share was not recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The same share was recorded before.
    #[error("duplicate share")]
    Duplicate,
    /// The share's epoch has closed.
    #[error("epoch {epoch} has closed")]
    EpochClosed {
        /// The share's epoch.
        epoch: u32,
        /// The unit of the epoch open now.
        current_unit: String,
    },
    /// A block was found in the share's epoch: the share builds on a replaced tip.
    #[error("stale share: a block was found in epoch {0}")]
    Closing(u32),
    /// The ledger failed; nothing was recorded.
    #[error("{0}")]
    Unavailable(String),
}

/// How a close went.
#[derive(Debug, Clone)]
pub enum Closed {
    /// The epoch closed and the next one opened.
    Closed(Box<(EpochRecord, EpochRecord)>),
    /// The epoch had been closed by the operator: it closed on the block instead.
    Amended(EpochRecord),
    /// Nothing to do: the epoch had closed already.
    Already,
}

/// A share to record, its template's height, the block it found, and where its answer goes.
type Pending = (ShareRecord, u32, Option<BlockRecord>, oneshot::Sender<Result<(), RecordError>>);

enum Op {
    Share { share: ShareRecord, height: u32, block: Option<BlockRecord>, reply: oneshot::Sender<Result<(), RecordError>> },
    Block { share_epoch: u32, block: BlockRecord, reply: oneshot::Sender<Result<(), RecordError>> },
    Close { epoch: u32, reason: CloseReason, block: Option<ClosingBlock>, next_unit: String, now: u64, reply: oneshot::Sender<Result<Closed>> },
    Resume { epoch: u32, share_id: String },
}

/// A handle to the recorder task.
#[derive(Debug, Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Op>,
    counts: Arc<Counts>,
}

/// What the recorder has written.
#[derive(Debug, Default)]
struct Counts {
    groups: AtomicU64,
    shares: AtomicU64,
}

/// What the recorder has written since start: committed groups and the shares in them (their
/// ratio is the mean group size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecorderStats {
    /// Groups committed.
    pub groups: u64,
    /// Shares recorded in them.
    pub shares: u64,
}

/// Closed epochs remembered for blocks found just after their close.
const CLOSED_KEPT: usize = 4;

struct Writer {
    counts: Arc<Counts>,
    ledger: Ledger,
    /// The epoch shares are recorded in, and its unit.
    active: (u32, String),
    /// The highest template height a share of the active epoch was recorded on (its tip).
    tip_height: u32,
    /// While blocks found in the active epoch wait for the network's answer: their share ids.
    closing: HashSet<String>,
    /// Recently closed epochs: the tip they closed on, and whether the operator closed them.
    closed: BTreeMap<u32, (u32, bool)>,
    /// Set when a close failed and the ledger could not be read back: nothing is recorded
    /// until it can (the open epoch is unknown).
    lost: Option<String>,
}

impl Recorder {
    /// Start the recorder over `ledger`, whose last epoch is the active one. Blocks found in it
    /// that are still unresolved keep it closing.
    pub async fn start(ledger: Ledger) -> Result<Self> {
        let epochs = ledger.epochs().await?;
        let active = epochs.last().ok_or_else(|| Error::Inconsistent("no epoch".into()))?;
        let closing = ledger
            .blocks()
            .await?
            .into_iter()
            .filter(|b| b.epoch == active.epoch && b.status != BlockStatus::Rejected)
            .map(|b| b.share_id)
            .collect();
        let counts = Arc::new(Counts::default());
        let writer = Writer {
            counts: counts.clone(),
            ledger,
            active: (active.epoch, active.unit.clone()),
            tip_height: 0,
            closing,
            closed: BTreeMap::new(),
            lost: None,
        };
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(writer.run(rx));
        Ok(Self { tx, counts })
    }

    /// What was written since start.
    pub fn stats(&self) -> RecorderStats {
        RecorderStats { groups: self.counts.groups.load(Ordering::Relaxed), shares: self.counts.shares.load(Ordering::Relaxed) }
    }

    /// Record a share mined on a template of `height` (and the block it found, if any);
    /// returns once it is durable. A block is kept even when its share is refused.
    pub async fn record(&self, share: ShareRecord, height: u32, block: Option<BlockRecord>) -> Result<(), RecordError> {
        let (reply, rx) = oneshot::channel();
        let gone = || RecordError::Unavailable("the share recorder stopped".into());
        self.tx.send(Op::Share { share, height, block, reply }).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// Record a block whose share earns nothing (a hash that met the network's target but not
    /// the share's), found by a share of `share_epoch`.
    pub async fn record_block(&self, share_epoch: u32, block: BlockRecord) -> Result<(), RecordError> {
        let (reply, rx) = oneshot::channel();
        let gone = || RecordError::Unavailable("the share recorder stopped".into());
        self.tx.send(Op::Block { share_epoch, block, reply }).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// Close `epoch` (after every share queued before this) and open the next with `next_unit`.
    pub async fn close(&self, epoch: u32, reason: CloseReason, block: Option<ClosingBlock>, next_unit: String, now: u64) -> Result<Closed> {
        let (reply, rx) = oneshot::channel();
        let gone = || Error::Inconsistent("the share recorder stopped".into());
        self.tx.send(Op::Close { epoch, reason, block, next_unit, now, reply }).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// The block found by `share_id` in `epoch` was refused by the network: once no other block
    /// of the epoch waits for an answer, its shares are recorded again.
    pub async fn resume(&self, epoch: u32, share_id: String) {
        let _ = self.tx.send(Op::Resume { epoch, share_id }).await;
    }
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Op>) {
        while let Some(first) = rx.recv().await {
            let mut group = vec![];
            let mut control = None;
            match first {
                Op::Share { share, height, block, reply } => group.push((share, height, block, reply)),
                other => control = Some(other),
            }
            while control.is_none() && group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(Op::Share { share, height, block, reply }) => group.push((share, height, block, reply)),
                    Ok(other) => control = Some(other),
                    Err(_) => break,
                }
            }
            if self.lost.is_some() {
                self.reload().await;
            }
            if !group.is_empty() {
                self.commit(group).await;
            }
            match control {
                Some(Op::Close { epoch, reason, block, next_unit, now, reply }) => {
                    let _ = reply.send(self.close(epoch, reason, block, &next_unit, now).await);
                }
                Some(Op::Block { share_epoch, block, reply }) => {
                    let block = self.place(share_epoch, block);
                    let r = self.ledger.record_block(&block).await.map_err(|e| RecordError::Unavailable(e.to_string()));
                    if r.is_err() {
                        self.closing.remove(&block.share_id);
                    }
                    let _ = reply.send(r);
                }
                Some(Op::Resume { epoch, share_id }) => {
                    if epoch == self.active.0 {
                        self.closing.remove(&share_id);
                    }
                }
                Some(Op::Share { .. }) | None => {}
            }
        }
    }

    /// Read the open epoch back from the ledger (after a close whose outcome is unknown).
    async fn reload(&mut self) {
        match self.ledger.epochs().await {
            Ok(epochs) => match epochs.last() {
                Some(last) => {
                    if last.epoch != self.active.0 {
                        self.active = (last.epoch, last.unit.clone());
                        self.tip_height = 0;
                        self.closing.clear();
                    }
                    self.lost = None;
                }
                None => self.lost = Some("the ledger has no epoch".into()),
            },
            Err(e) => self.lost = Some(e.to_string()),
        }
    }

    /// Decide which epoch a found block closes if the network takes it: its share's epoch if
    /// that is the open one, or if the operator closed it a moment before on the same tip
    /// (then that close becomes a close on the block); otherwise the open epoch, whose miners
    /// mine the same chain. A block for the open epoch keeps it closing until it is answered.
    fn place(&mut self, share_epoch: u32, mut block: BlockRecord) -> BlockRecord {
        let late_for_its_epoch = share_epoch < self.active.0
            && self.closed.get(&share_epoch).is_some_and(|(tip, operator)| *operator && *tip == block.height);
        block.epoch = if late_for_its_epoch { share_epoch } else { self.active.0 };
        if block.epoch == self.active.0 {
            self.closing.insert(block.share_id.clone());
        }
        block
    }

    async fn commit(&mut self, group: Vec<Pending>) {
        let mut shares = Vec::with_capacity(group.len());
        let mut blocks = vec![];
        let mut replies = Vec::with_capacity(group.len());
        let mut refused_blocks = vec![];
        let mut refused = vec![];
        let mut tip = self.tip_height;
        for (share, height, block, reply) in group {
            let refusal = if let Some(why) = &self.lost {
                Some(RecordError::Unavailable(format!("the ledger's open epoch is unknown ({why}); nothing was credited, resubmit")))
            } else if share.epoch != self.active.0 {
                Some(RecordError::EpochClosed { epoch: share.epoch, current_unit: self.active.1.clone() })
            } else if !self.closing.is_empty() {
                Some(RecordError::Closing(share.epoch))
            } else {
                None
            };
            let block = block.map(|b| self.place(share.epoch, b));
            if let Some(r) = refusal {
                // the share is refused, but a block it found is real: it is kept
                refused_blocks.extend(block);
                refused.push((reply, r));
                continue;
            }
            blocks.extend(block);
            tip = tip.max(height);
            shares.push(share);
            replies.push(reply);
        }
        // on record before anyone hears of the refusal (the block's answer looks it up)
        for b in refused_blocks {
            if let Err(e) = self.ledger.record_block(&b).await {
                self.closing.remove(&b.share_id);
                tracing::error!(block = %b.hash, error = %e, "could not record a found block");
            }
        }
        for (reply, r) in refused {
            let _ = reply.send(Err(r));
        }
        if shares.is_empty() {
            return;
        }
        match self.ledger.record(&shares, &blocks).await {
            Ok(recorded) => {
                self.counts.groups.fetch_add(1, Ordering::Relaxed);
                self.counts.shares.fetch_add(recorded.iter().filter(|r| **r).count() as u64, Ordering::Relaxed);
                self.tip_height = tip;
                for ((share, reply), new) in shares.iter().zip(replies).zip(recorded) {
                    if !new {
                        // a repeat: its block, if any, was handled when it was first recorded
                        self.closing.remove(&share.share_id);
                    }
                    let _ = reply.send(if new { Ok(()) } else { Err(RecordError::Duplicate) });
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, shares = shares.len(), "recording shares failed; nothing was credited");
                // the shares are refused (the miner may resubmit), their blocks still kept
                for b in blocks {
                    if let Err(e) = self.ledger.record_block(&b).await {
                        self.closing.remove(&b.share_id);
                        tracing::error!(block = %b.hash, error = %e, "could not record a found block");
                    }
                }
                for reply in replies {
                    let _ = reply.send(Err(RecordError::Unavailable(e.to_string())));
                }
            }
        }
    }

    async fn close(&mut self, epoch: u32, reason: CloseReason, block: Option<ClosingBlock>, next_unit: &str, now: u64) -> Result<Closed> {
        if let Some(why) = &self.lost {
            return Err(Error::Busy(format!("the ledger's open epoch is unknown ({why}); try again")));
        }
        if epoch != self.active.0 {
            return match (&block, epoch < self.active.0) {
                (Some(b), true) => Ok(self.ledger.amend_close_with_block(epoch, b).await?.map_or(Closed::Already, Closed::Amended)),
                _ => Ok(Closed::Already),
            };
        }
        if !self.closing.is_empty() && reason != CloseReason::Block {
            return Err(Error::Busy(format!("epoch {epoch} is closing on a block found in it; it closes once the network answers")));
        }
        match self.ledger.close_epoch(epoch, reason, block.as_ref(), now, next_unit).await {
            Ok((closed, next)) => {
                self.closed.insert(epoch, (self.tip_height, reason == CloseReason::Operator));
                while self.closed.len() > CLOSED_KEPT {
                    self.closed.pop_first();
                }
                self.active = (next.epoch, next.unit.clone());
                self.tip_height = 0;
                self.closing.clear();
                Ok(Closed::Closed(Box::new((closed, next))))
            }
            Err(e) => {
                // the commit may have happened: read the open epoch back before recording more
                self.reload().await;
                if self.active.0 != epoch {
                    tracing::warn!(epoch, error = %e, "closing an epoch reported an error after it committed");
                    self.closing.clear();
                    return Ok(Closed::Closed(Box::new((self.ledger.epoch(epoch).await?, self.ledger.epoch(self.active.0).await?))));
                }
                Err(e)
            }
        }
    }
}
