//! The pool's Stratum V1 endpoint: the shared server from `ehash-stratum`, fed by a
//! [`JobSource`], with a backend that credits every accepted share to its ehash quote and closes
//! the epoch when a share is a block.

pub mod bitcoind;
pub mod devnet;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ehash_protocol::stratum::Username;
use ehash_protocol::stratum::messages::ErrorCode;
use bitcoin::BlockHash;
use ehash_stratum::{Backend, BlockOutcome, FoundBlock, JobSource, JobSourceError, Refusal, Work};
use rand::RngCore;
use tokio::sync::watch;

use crate::epochs::{CreditError, Epochs, QuoteBinding, QuoteError, ValidShare};
use crate::ledger::{BlockRecord, BlockStatus};

/// Extranonce1 size handed to every connection, in bytes.
pub const EXTRANONCE1_SIZE: usize = 4;

/// Where a found block stands on the job source's chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// On the active chain with this many confirmations (1: it is the tip).
    Confirmations(u32),
    /// Off the active chain: another block took its height (a reorg).
    Orphaned,
}

/// A job source the pool mines on: it also says where found blocks stand on its chain.
#[async_trait]
pub trait PoolSource: JobSource {
    /// Where the block `hash` stands on the active chain now.
    async fn depth(&self, hash: &BlockHash) -> Result<Depth, JobSourceError>;

    /// The chain's NIP-87 network name (`mainnet`, `testnet`, `signet`, `regtest`).
    fn network(&self) -> &'static str;
}

/// Hands out unique 4-byte extranonce1 values; a reconnecting miner may resume its old one.
#[derive(Debug)]
struct Extranonces {
    next: AtomicU32,
    live: Mutex<HashSet<u32>>,
}

impl Extranonces {
    fn new() -> Self {
        Self { next: AtomicU32::new(rand::rngs::OsRng.next_u32()), live: Mutex::new(HashSet::new()) }
    }

    fn allocate(&self, resume: Option<u32>) -> u32 {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = resume
            && live.insert(r)
        {
            return r;
        }
        loop {
            let v = self.next.fetch_add(1, Ordering::Relaxed);
            if live.insert(v) {
                return v;
            }
        }
    }

    fn release(&self, v: u32) {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).remove(&v);
    }
}

/// The pool's backend: ehash quotes as workers, crediting through [`Epochs`].
pub struct PoolBackend {
    epochs: Arc<Epochs>,
    source: Arc<dyn PoolSource>,
    extranonces: Extranonces,
}

impl std::fmt::Debug for PoolBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolBackend").finish_non_exhaustive()
    }
}

impl PoolBackend {
    /// A backend crediting through `epochs` and submitting blocks to `source`.
    pub fn new(epochs: Arc<Epochs>, source: Arc<dyn PoolSource>) -> Self {
        Self { epochs, source, extranonces: Extranonces::new() }
    }

    /// Hand a found block to the network at once (in its own task, which a dropped connection
    /// does not stop); returns its record and the network's answer to come.
    fn hand_over_block(&self, binding: &QuoteBinding, work: &Work) -> (BlockRecord, tokio::task::JoinHandle<Result<BlockOutcome, String>>) {
        let found = FoundBlock {
            height: work.template.height,
            header: work.header,
            coinbase: work.coinbase(),
            transactions: work.template.transactions.clone(),
        };
        // the whole block is kept, so a block whose answer is lost can be sent again
        let block = found.block().map(|b| hex::encode(bitcoin::consensus::encode::serialize(&b))).ok();
        let reward = match bitcoin::consensus::encode::deserialize::<bitcoin::Transaction>(&found.coinbase) {
            Ok(tx) => tx.output.iter().map(|o| o.value.to_sat()).sum(),
            Err(e) => {
                tracing::error!(error = %e, "the found block's coinbase does not parse; its epoch pays nothing");
                0
            }
        };
        let record = BlockRecord {
            share_id: work.hash.to_string(),
            epoch: binding.epoch,
            height: found.height,
            hash: work.hash.to_string(),
            reward,
            header: hex::encode(bitcoin::consensus::encode::serialize(&work.header)),
            coinbase: hex::encode(&found.coinbase),
            block,
            status: BlockStatus::Pending,
            detail: None,
            created_at: cdk::util::unix_time(),
        };
        tracing::info!(height = found.height, hash = %work.hash, "a share found a block");
        let source = self.source.clone();
        let answer = tokio::spawn(async move { source.submit_block(&found).await.map_err(|e| e.to_string()) });
        (record, answer)
    }
}

#[async_trait]
impl Backend for PoolBackend {
    type Worker = QuoteBinding;

    async fn authorize(&self, username: &str) -> Result<QuoteBinding, Refusal> {
        let user = Username::parse(username).map_err(|e| Refusal::new(ErrorCode::Unauthorized, e.to_string()))?;
        self.epochs.bind_quote(&user.quote_id).await.map_err(|e| {
            let code = match e {
                QuoteError::EpochClosed { .. } => ErrorCode::EpochClosed,
                QuoteError::Unavailable(_) => ErrorCode::Unavailable,
                QuoteError::Unknown(_) | QuoteError::Foreign(_) => ErrorCode::Unauthorized,
            };
            Refusal::new(code, e.to_string())
        })
    }

    async fn submit(&self, binding: &QuoteBinding, work: &Work) -> Result<u64, Refusal> {
        let share = ValidShare {
            binding: binding.clone(),
            worker: Username::parse(&work.username).ok().and_then(|u| u.worker),
            header: work.header,
            height: work.template.height,
            difficulty: work.difficulty,
            is_block: work.is_block,
        };
        let credited = if work.is_block {
            // the block goes to the network before anything that can fail or wait; it is recorded,
            // and its answer handled, in a task of its own that a dropped connection does not stop
            let (record, answer) = self.hand_over_block(binding, work);
            let (epochs, credit) = (self.epochs.clone(), work.meets_target);
            let (tx, rx) = tokio::sync::oneshot::channel();
            tokio::spawn(async move {
                let recorded = if credit {
                    epochs.credit(&share, Some(record.clone())).await
                } else {
                    epochs.record_block(share.binding.epoch, record.clone()).await.map(|()| 0)
                };
                crate::fault::point("abort-after-block-record");
                let _ = tx.send(recorded);
                let answer = match answer.await {
                    Ok(a) => a,
                    Err(e) => Err(format!("the block submission task failed: {e}")),
                };
                if let Err(e) = epochs.block_answered(&record.share_id, answer).await {
                    tracing::error!(block = %record.hash, error = %e, "finishing a found block; it is finished at the next start");
                }
            });
            let recorded = rx.await.unwrap_or_else(|_| Err(CreditError::Unavailable("the block task stopped".into())));
            if !credit {
                recorded.map_err(|e| Refusal::new(ErrorCode::Unavailable, e.to_string()))?;
                let msg = format!("the hash is above the share's target for difficulty {}; it met the network's and went to the network as a block", work.difficulty.as_f64());
                return Err(Refusal::new(ErrorCode::LowDifficulty, msg));
            }
            recorded
        } else {
            self.epochs.credit(&share, None).await
        };
        credited.map_err(|e| match e {
            CreditError::Duplicate => Refusal::new(ErrorCode::DuplicateShare, "duplicate share"),
            e @ CreditError::Stale(_) => Refusal::new(ErrorCode::JobNotFound, e.to_string()),
            e @ CreditError::EpochClosed(_) => Refusal::new(ErrorCode::EpochClosed, e.to_string()),
            e @ CreditError::Work(_) => Refusal::new(ErrorCode::Other, e.to_string()),
            e @ CreditError::Unavailable(_) => {
                tracing::warn!(error = %e, "share not recorded");
                Refusal::new(ErrorCode::Unavailable, e.to_string())
            }
        })
    }

    fn notices(&self) -> watch::Receiver<u64> {
        self.epochs.changes()
    }

    async fn notice_for(&self, binding: &QuoteBinding) -> Option<String> {
        let current = self.epochs.current().await.ok()?;
        (binding.epoch < current.epoch).then(|| {
            format!(
                "ehash epoch {} started: shares for epoch {}'s quotes earn nothing more. To keep earning, create a quote in unit {} (`ehash wallet quote` prints its username) and authorize <quote id>.<worker> with it, on this connection (no reconnect needed) or a new one",
                current.epoch, binding.epoch, current.unit
            )
        })
    }

    fn allocate_extranonce1(&self, resume: Option<&[u8]>) -> Option<Vec<u8>> {
        let resume = resume.and_then(|r| <[u8; EXTRANONCE1_SIZE]>::try_from(r).ok()).map(u32::from_be_bytes);
        Some(self.extranonces.allocate(resume).to_be_bytes().to_vec())
    }

    fn release_extranonce1(&self, extranonce1: &[u8]) {
        if let Ok(b) = <[u8; EXTRANONCE1_SIZE]>::try_from(extranonce1) {
            self.extranonces.release(u32::from_be_bytes(b));
        }
    }
}
