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
//! Once a share that found a block is recorded, its epoch is *closing*: later shares of it are
//! stale (the chain moved on) until the network's answer closes the epoch on the block or, if the
//! block was refused, lets the epoch go on.

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

/// A share to record, the block it found, and where its answer goes.
type Pending = (ShareRecord, Option<BlockRecord>, oneshot::Sender<Result<(), RecordError>>);

enum Op {
    Share { share: ShareRecord, block: Option<BlockRecord>, reply: oneshot::Sender<Result<(), RecordError>> },
    Close { epoch: u32, reason: CloseReason, block: Option<ClosingBlock>, next_unit: String, now: u64, reply: oneshot::Sender<Result<Closed>> },
    Resume { epoch: u32 },
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

struct Writer {
    counts: Arc<Counts>,
    ledger: Ledger,
    /// The epoch shares are recorded in, and its unit.
    active: (u32, String),
    /// The active epoch, once a block was found in it and until the network answered.
    closing: Option<u32>,
}

impl Recorder {
    /// Start the recorder over `ledger`, whose last epoch is the active one. If a block found in
    /// it is still unresolved, the epoch starts out closing.
    pub async fn start(ledger: Ledger) -> Result<Self> {
        let epochs = ledger.epochs().await?;
        let active = epochs.last().ok_or_else(|| Error::Inconsistent("no epoch".into()))?;
        let unresolved = ledger
            .blocks()
            .await?
            .iter()
            .any(|b| b.epoch == active.epoch && b.status != BlockStatus::Rejected);
        let counts = Arc::new(Counts::default());
        let writer = Writer { counts: counts.clone(), ledger, active: (active.epoch, active.unit.clone()), closing: unresolved.then_some(active.epoch) };
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(writer.run(rx));
        Ok(Self { tx, counts })
    }

    /// What was written since start.
    pub fn stats(&self) -> RecorderStats {
        RecorderStats { groups: self.counts.groups.load(Ordering::Relaxed), shares: self.counts.shares.load(Ordering::Relaxed) }
    }

    /// Record a share (and the block it found, if any); returns once it is durable.
    pub async fn record(&self, share: ShareRecord, block: Option<BlockRecord>) -> Result<(), RecordError> {
        let (reply, rx) = oneshot::channel();
        let gone = || RecordError::Unavailable("the share recorder stopped".into());
        self.tx.send(Op::Share { share, block, reply }).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// Close `epoch` (after every share queued before this) and open the next with `next_unit`.
    pub async fn close(&self, epoch: u32, reason: CloseReason, block: Option<ClosingBlock>, next_unit: String, now: u64) -> Result<Closed> {
        let (reply, rx) = oneshot::channel();
        let gone = || Error::Inconsistent("the share recorder stopped".into());
        self.tx.send(Op::Close { epoch, reason, block, next_unit, now, reply }).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// The block found in `epoch` was refused: its shares are recorded again.
    pub async fn resume(&self, epoch: u32) {
        let _ = self.tx.send(Op::Resume { epoch }).await;
    }
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Op>) {
        while let Some(first) = rx.recv().await {
            let mut group = vec![];
            let mut control = None;
            match first {
                Op::Share { share, block, reply } => group.push((share, block, reply)),
                other => control = Some(other),
            }
            while control.is_none() && group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(Op::Share { share, block, reply }) => group.push((share, block, reply)),
                    Ok(other) => control = Some(other),
                    Err(_) => break,
                }
            }
            if !group.is_empty() {
                self.commit(group).await;
            }
            match control {
                Some(Op::Close { epoch, reason, block, next_unit, now, reply }) => {
                    let _ = reply.send(self.close(epoch, reason, block, &next_unit, now).await);
                }
                Some(Op::Resume { epoch }) => {
                    if self.closing == Some(epoch) {
                        self.closing = None;
                    }
                }
                Some(Op::Share { .. }) | None => {}
            }
        }
    }

    async fn commit(&mut self, group: Vec<Pending>) {
        let closing_before = self.closing;
        let mut shares = Vec::with_capacity(group.len());
        let mut blocks = vec![];
        let mut replies = Vec::with_capacity(group.len());
        let mut late_blocks = vec![];
        let mut refused = vec![];
        for (share, block, reply) in group {
            let refusal = if share.epoch != self.active.0 {
                Some(RecordError::EpochClosed { epoch: share.epoch, current_unit: self.active.1.clone() })
            } else if self.closing == Some(share.epoch) {
                Some(RecordError::Closing(share.epoch))
            } else {
                None
            };
            if let Some(r) = refusal {
                // a block found just after its epoch closed is still kept: it may pay that epoch
                if let Some(b) = block.filter(|_| share.epoch < self.active.0) {
                    late_blocks.push(b);
                }
                refused.push((reply, r));
                continue;
            }
            if let Some(b) = block {
                self.closing = Some(share.epoch);
                blocks.push(b);
            }
            shares.push(share);
            replies.push(reply);
        }
        // on record before anyone hears of the refusal (the block's answer looks it up)
        for b in late_blocks {
            if let Err(e) = self.ledger.record_block(&b).await {
                tracing::error!(block = %b.hash, error = %e, "could not record a block found in a closed epoch");
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
                let mut block_recorded = false;
                for ((share, reply), new) in shares.iter().zip(replies).zip(recorded) {
                    block_recorded |= new && share.is_block && blocks.iter().any(|b| b.share_id == share.share_id);
                    let _ = reply.send(if new { Ok(()) } else { Err(RecordError::Duplicate) });
                }
                if !blocks.is_empty() && !block_recorded {
                    // the block shares were repeats: their blocks were handled when first seen
                    self.closing = closing_before;
                }
            }
            Err(e) => {
                self.closing = closing_before;
                tracing::warn!(error = %e, shares = shares.len(), "recording shares failed; nothing was recorded");
                for reply in replies {
                    let _ = reply.send(Err(RecordError::Unavailable(e.to_string())));
                }
            }
        }
    }

    async fn close(&mut self, epoch: u32, reason: CloseReason, block: Option<ClosingBlock>, next_unit: &str, now: u64) -> Result<Closed> {
        if epoch != self.active.0 {
            return match (&block, epoch < self.active.0) {
                (Some(b), true) => Ok(self.ledger.amend_close_with_block(epoch, b).await?.map_or(Closed::Already, Closed::Amended)),
                _ => Ok(Closed::Already),
            };
        }
        if self.closing == Some(epoch) && reason != CloseReason::Block {
            return Err(Error::Busy(format!("epoch {epoch} is closing on a block found in it; it closes once the network answers")));
        }
        let (closed, next) = self.ledger.close_epoch(epoch, reason, block.as_ref(), now, next_unit).await?;
        self.active = (next.epoch, next.unit.clone());
        self.closing = None;
        Ok(Closed::Closed(Box::new((closed, next))))
    }
}
