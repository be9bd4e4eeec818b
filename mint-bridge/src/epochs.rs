//! Epochs and crediting: binds quotes to epochs, records shares, closes epochs, follows found
//! blocks to the network's answer.
//!
//! Money path for one share: validate (the session) → persist (the recorder writes it in a
//! group, with its quote's running credit) → notify (the submit response); the mint is paid
//! the credit later, in aggregated payments (`crate::credit`). Shares and closes go through the
//! one recorder, so no share is ever recorded in an epoch after its totals were fixed.
//!
//! A found block: handed to the network first, recorded with its share (the durable record),
//! and once the network has answered, its epoch closes on it (or, refused, goes on). A restart
//! finds blocks whose answer or close did not happen and finishes them.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use bitcoin::block::Header;
use cdk::nuts::PaymentMethod;
use cdk_common::QuoteId;
use ehash_protocol::epoch::{CloseReason, EpochState, EpochUnit, PoolId, epoch_payout};
use ehash_protocol::work::{DifficultyExp, UnitSize};
use tokio::sync::{Mutex, RwLock, watch};

use crate::announce::Announcer;
use crate::config::PayoutConfig;
use crate::credit::{self, SyncError};
use crate::error::{Error, Result};
use crate::ledger::{BlockRecord, BlockStatus, ClosingBlock, EpochRecord, Ledger, ShareRecord};
use crate::mint::MintHandle;
use crate::mint::processor::EHASH_METHOD;
use crate::pool::Depth;
use crate::record::{Closed, RecordError, Recorder};
use ehash_stratum::{BlockOutcome, FoundBlock, JobSource};

/// A quote bound to the epoch whose unit it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteBinding {
    /// The quote id.
    pub quote_id: String,
    /// The epoch.
    pub epoch: u32,
    /// The epoch's unit.
    pub unit: String,
}

/// Why a quote cannot be mined to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuoteError {
    /// No such quote at this mint.
    #[error("unknown quote {0}: create one with POST /v1/mint/quote/ehash at this pool's mint")]
    Unknown(String),
    /// The quote exists but is not an ehash quote of one of this pool's epochs.
    #[error("quote {0} is not an ehash quote of this pool")]
    Foreign(String),
    /// The quote's epoch has closed.
    #[error("quote {quote_id} is for epoch {epoch}, which has closed; create a quote in unit {current_unit} (`ehash wallet quote` prints its username) and authorize with it")]
    EpochClosed {
        /// The quote.
        quote_id: String,
        /// Its epoch.
        epoch: u32,
        /// The unit to use now.
        current_unit: String,
    },
    /// The mint could not be asked.
    #[error("the mint is unavailable: {0}")]
    Unavailable(String),
}

/// Why a share was not credited.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreditError {
    /// The same share (same header) was credited before.
    #[error("duplicate share")]
    Duplicate,
    /// The share's quote belongs to a closed epoch.
    #[error(transparent)]
    EpochClosed(QuoteError),
    /// The share builds on a chain tip that a found block replaced.
    #[error("stale share: {0}")]
    Stale(String),
    /// Work math refused the share (should not happen with a correctly configured vardiff).
    #[error("{0}")]
    Work(String),
    /// The ledger could not record it; nothing was credited.
    #[error("could not record the share: {0}; nothing was credited, resubmit")]
    Unavailable(String),
}

/// A share that passed validation.
#[derive(Debug, Clone)]
pub struct ValidShare {
    /// The quote it credits.
    pub binding: QuoteBinding,
    /// The worker name.
    pub worker: Option<String>,
    /// The header.
    pub header: Header,
    /// The template height.
    pub height: u32,
    /// The assigned difficulty.
    pub difficulty: DifficultyExp,
    /// Whether it met the network target.
    pub is_block: bool,
}

struct Book {
    epochs: Vec<EpochRecord>,
    /// Shares on templates below this height are stale (a block was found at height − 1).
    min_height: u32,
}

impl Book {
    fn current(&self) -> Result<&EpochRecord> {
        self.epochs.last().ok_or_else(|| Error::Inconsistent("no epoch".into()))
    }
}

/// The epoch book, the ledger and the mint, together.
pub struct Epochs {
    ledger: Ledger,
    recorder: Recorder,
    mint: Arc<MintHandle>,
    pool_id: PoolId,
    unit_size: UnitSize,
    announcer: Announcer,
    payout: PayoutConfig,
    book: RwLock<Book>,
    /// Held while the ledger's epochs change and the book (and the mint serving it) follows:
    /// an epoch change, a log commitment, a payout step and the periodic catch-up, one at a
    /// time (the catch-up must never read the ledger half way through one of the others).
    transition: Mutex<()>,
    changes: watch::Sender<u64>,
}

impl std::fmt::Debug for Epochs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Epochs").field("pool_id", &self.pool_id).finish_non_exhaustive()
    }
}

/// Load the epochs from the ledger, opening epoch 1 on first start.
pub async fn load_or_open(ledger: &Ledger, pool_id: &PoolId) -> Result<Vec<EpochRecord>> {
    let mut epochs = ledger.epochs().await?;
    if epochs.is_empty() {
        let unit = EpochUnit::new(pool_id.clone(), 1).unit();
        epochs.push(ledger.open_first_epoch(&unit, cdk::util::unix_time()).await?);
    }
    for e in &epochs {
        let parsed = EpochUnit::parse(&e.unit)?;
        if &parsed.pool != pool_id {
            return Err(Error::Config(format!(
                "pool_id {pool_id} differs from the id {} this ledger's units were created with; set pool_id = \"{}\"",
                parsed.pool, parsed.pool
            )));
        }
    }
    Ok(epochs)
}

impl Epochs {
    /// Assemble the epoch book (see [`load_or_open`]), recording shares through `recorder`.
    /// Shares on templates below `min_height` are stale (the height after the last block).
    #[allow(clippy::too_many_arguments)] // the parts the book ties together
    pub fn new(
        ledger: Ledger,
        recorder: Recorder,
        mint: Arc<MintHandle>,
        pool_id: PoolId,
        unit_size: UnitSize,
        announcer: Announcer,
        payout: PayoutConfig,
        epochs: Vec<EpochRecord>,
        min_height: u32,
    ) -> Self {
        let current = epochs.last().map(|e| u64::from(e.epoch)).unwrap_or(0);
        let (changes, _) = watch::channel(current);
        Self { ledger, recorder, mint, pool_id, unit_size, announcer, payout, book: RwLock::new(Book { epochs, min_height }), transition: Mutex::new(()), changes }
    }

    /// The payout settings in force.
    pub fn payout_config(&self) -> &PayoutConfig {
        &self.payout
    }

    /// The unit size in force.
    pub fn unit_size(&self) -> UnitSize {
        self.unit_size
    }

    /// The active epoch.
    pub async fn current(&self) -> Result<EpochRecord> {
        self.book.read().await.current().cloned()
    }

    /// Every epoch, oldest first.
    pub async fn all(&self) -> Vec<EpochRecord> {
        self.book.read().await.epochs.clone()
    }

    /// Notified with the active epoch number whenever an epoch closes.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// What the share recorder has written since start.
    pub fn recorder_stats(&self) -> crate::record::RecorderStats {
        self.recorder.stats()
    }

    /// The announcer.
    pub fn announcer(&self) -> &Announcer {
        &self.announcer
    }

    /// Resolve a quote id to the active epoch it belongs to.
    pub async fn bind_quote(&self, quote_id: &str) -> Result<QuoteBinding, QuoteError> {
        let qid = QuoteId::from_str(quote_id).map_err(|_| QuoteError::Unknown(quote_id.to_owned()))?;
        let quote = self
            .mint
            .mint()
            .localstore()
            .get_mint_quote(&qid)
            .await
            .map_err(|e| QuoteError::Unavailable(e.to_string()))?
            .ok_or_else(|| QuoteError::Unknown(quote_id.to_owned()))?;
        if quote.payment_method != PaymentMethod::Custom(EHASH_METHOD.to_owned()) {
            return Err(QuoteError::Foreign(quote_id.to_owned()));
        }
        let unit = quote.unit.to_string();
        let book = self.book.read().await;
        let epoch = book
            .epochs
            .iter()
            .find(|e| e.unit == unit)
            .ok_or_else(|| QuoteError::Foreign(quote_id.to_owned()))?;
        let binding = QuoteBinding { quote_id: quote.id.to_string(), epoch: epoch.epoch, unit };
        if epoch.state != EpochState::Active {
            let current_unit = book.current().map(|c| c.unit.clone()).unwrap_or_default();
            return Err(QuoteError::EpochClosed { quote_id: binding.quote_id, epoch: binding.epoch, current_unit });
        }
        Ok(binding)
    }

    /// Record a validated share (with the block it found, if any). Returns the ehash it earned,
    /// once it is durable.
    pub async fn credit(&self, share: &ValidShare, block: Option<BlockRecord>) -> Result<u64, CreditError> {
        let min_height = self.book.read().await.min_height;
        if share.height < min_height {
            return Err(CreditError::Stale(format!("a block was found at height {}", min_height.saturating_sub(1))));
        }
        let amount = self.unit_size.credit(share.difficulty).map_err(|e| CreditError::Work(e.to_string()))?;
        let record = ShareRecord {
            share_id: share.header.block_hash().to_string(),
            epoch: share.binding.epoch,
            quote_id: share.binding.quote_id.clone(),
            worker: share.worker.clone(),
            header: hex::encode(bitcoin::consensus::encode::serialize(&share.header)),
            difficulty_exp: share.difficulty.exp(),
            amount,
            is_block: share.is_block,
            created_at: cdk::util::unix_time(),
        };
        match self.recorder.record(record, share.height, block).await {
            Ok(()) => Ok(amount),
            Err(RecordError::EpochClosed { epoch, current_unit }) => Err(CreditError::EpochClosed(QuoteError::EpochClosed {
                quote_id: share.binding.quote_id.clone(),
                epoch,
                current_unit,
            })),
            Err(RecordError::Duplicate) => Err(CreditError::Duplicate),
            Err(e @ RecordError::Closing(_)) => Err(CreditError::Stale(e.to_string())),
            Err(RecordError::Unavailable(m)) => Err(CreditError::Unavailable(m)),
        }
    }

    /// Record a block whose share earns nothing (it met the network's target, not its own).
    pub async fn record_block(&self, share_epoch: u32, block: BlockRecord) -> Result<(), CreditError> {
        self.recorder.record_block(share_epoch, block).await.map_err(|e| CreditError::Unavailable(e.to_string()))
    }

    /// Pay the mint what the ledger credits `quote_id` (before a wallet reads or mints it).
    pub async fn sync_quote(&self, quote_id: &str) -> Result<u64, SyncError> {
        credit::sync_quote(&self.mint.mint(), &self.ledger, quote_id).await
    }

    /// Pay the mint every credit it has not been paid yet; a quote that fails is reported and
    /// the others are paid. Returns how many quotes were paid.
    pub async fn sync_all(&self) -> Result<usize> {
        let (paid, failed) = credit::sync_all(&self.mint.mint(), &self.ledger).await?;
        for e in failed {
            tracing::error!(error = %e, "crediting the mint");
        }
        Ok(paid)
    }

    /// Close `epoch` (if it is still the active one) and open the next. `block` is the found
    /// block when `reason` is [`CloseReason::Block`]; an epoch the operator closed a moment
    /// before a block was found in it closes on that block instead. The closed epoch's log is
    /// committed and announced before this returns. Returns the closed epoch, or `None` if it
    /// had closed already.
    pub async fn close(&self, epoch: u32, reason: CloseReason, block: Option<ClosingBlock>) -> Result<Option<EpochRecord>> {
        let next_unit = EpochUnit::new(self.pool_id.clone(), epoch + 1).unit();
        let min_height = block.as_ref().map(|b| b.height + 1);
        let transition = self.transition.lock().await;
        match self.recorder.close(epoch, reason, block, next_unit, cdk::util::unix_time()).await? {
            Closed::Already => {
                self.catch_up().await?;
                Ok(None)
            }
            Closed::Amended(closed) => {
                self.replace(&closed, min_height).await;
                drop(transition);
                tracing::info!(epoch = closed.epoch, block = ?closed.block_hash, "an epoch closed by the operator closes on a block found in it");
                self.announce(&closed).await;
                Ok(Some(closed))
            }
            Closed::Closed(pair) => {
                let (closed, next) = *pair;
                // the mint serves the new unit before the book (and any miner) knows of it; the
                // ledger, which has just taken the change, is the list both follow
                let epochs = self.ledger.epochs().await?;
                self.mint.rebuild(&epochs).await?;
                {
                    let mut book = self.book.write().await;
                    book.epochs = epochs;
                    if let Some(h) = min_height {
                        book.min_height = book.min_height.max(h);
                    }
                }
                drop(transition);
                tracing::info!(
                    epoch = closed.epoch,
                    reason = reason.as_str(),
                    issued = closed.issued.unwrap_or(0),
                    shares = closed.shares.unwrap_or(0),
                    next_unit = %next.unit,
                    "epoch closed"
                );
                self.changes.send_replace(u64::from(next.epoch));
                self.announce(&next).await;
                Ok(Some(self.commit_log(closed.epoch).await?))
            }
        }
    }

    /// Close the epoch active now (the operator's close; tests' synthetic blocks): `block` is
    /// the height, header and reward of a found block when `reason` is [`CloseReason::Block`].
    pub async fn close_active(&self, reason: CloseReason, block: Option<(u32, &Header, u64)>) -> Result<Option<EpochRecord>> {
        let epoch = self.current().await?.epoch;
        let block = block.map(|(height, header, reward)| ClosingBlock {
            hash: header.block_hash().to_string(),
            height,
            reward,
            payout: epoch_payout(reward, self.payout.pool_fee_ppm),
        });
        self.close(epoch, reason, block).await
    }

    /// Catch up with the ledger if the book fell behind it (a close whose mint rebuild failed):
    /// the mint is rebuilt for the ledger's epochs, then the book takes them and miners hear of it.
    pub async fn refresh(&self) -> Result<()> {
        let _transition = self.transition.lock().await;
        self.catch_up().await
    }

    /// [`Self::refresh`], with the transition lock held by the caller.
    async fn catch_up(&self) -> Result<()> {
        let ledger = self.ledger.epochs().await?;
        if ledger == self.all().await {
            return Ok(());
        }
        self.mint.rebuild(&ledger).await?;
        let current = ledger.last().map(|e| u64::from(e.epoch)).unwrap_or(0);
        self.book.write().await.epochs = ledger;
        self.changes.send_replace(current);
        tracing::warn!(epoch = current, "the epoch book caught up with the ledger");
        Ok(())
    }

    async fn replace(&self, record: &EpochRecord, min_height: Option<u32>) {
        let mut book = self.book.write().await;
        if let Some(e) = book.epochs.iter_mut().find(|e| e.epoch == record.epoch) {
            *e = record.clone();
        }
        if let Some(h) = min_height {
            book.min_height = book.min_height.max(h);
        }
    }

    async fn announce(&self, e: &EpochRecord) {
        if let Err(err) = self.announcer.announce_epoch(&self.mint, e).await {
            tracing::warn!(epoch = e.epoch, error = %err, "could not queue the epoch announcement; it is retried at start");
        }
    }

    /// Commit a closed epoch's share log (once: its tree is built and kept, its root fixed) and
    /// announce the epoch with it. Returns the epoch.
    pub async fn commit_log(&self, epoch: u32) -> Result<EpochRecord> {
        let record = {
            let _transition = self.transition.lock().await;
            self.ledger.commit_log(epoch).await?;
            let record = self.ledger.epoch(epoch).await?;
            self.replace(&record, None).await;
            record
        };
        self.announce(&record).await;
        Ok(record)
    }

    /// Commit the logs of closed epochs whose commitment did not happen (a restart, or an
    /// older ledger).
    pub async fn commit_pending_logs(&self) -> Result<()> {
        for e in self.all().await {
            if e.state != EpochState::Active && self.ledger.committed_log(e.epoch).await?.is_none() {
                self.commit_log(e.epoch).await?;
            }
        }
        Ok(())
    }

    /// The network's answer to a block recorded with its share: accepted, the share's epoch
    /// closes on it; refused, the epoch goes on; no answer (the source failed), it stays pending
    /// and is handed to the network again by [`Self::resolve_blocks`].
    pub async fn block_answered(&self, share_id: &str, answer: Result<BlockOutcome, String>) -> Result<()> {
        let Some(block) = self.ledger.block(share_id).await? else {
            match answer {
                // a block on a replaced tip (its share was stale) is not kept
                Ok(BlockOutcome::Rejected(reason)) => tracing::debug!(share = share_id, %reason, "a stale block was refused"),
                _ => tracing::error!(share = share_id, "a found block the network did not refuse could not be recorded; it closes no epoch"),
            }
            return Ok(());
        };
        match answer {
            Ok(BlockOutcome::Accepted) | Ok(BlockOutcome::Duplicate) => {
                let detail = match answer {
                    Ok(BlockOutcome::Duplicate) => "duplicate: the network had it already",
                    _ => "accepted",
                };
                self.ledger.set_block_status(share_id, BlockStatus::Accepted, Some(detail)).await?;
                tracing::info!(epoch = block.epoch, height = block.height, hash = %block.hash, "block accepted");
                self.close(block.epoch, CloseReason::Block, Some(self.closing_block(&block))).await?;
            }
            Ok(BlockOutcome::Rejected(reason)) => {
                tracing::warn!(epoch = block.epoch, height = block.height, hash = %block.hash, %reason, "block refused by the network; the epoch goes on");
                self.ledger.set_block_status(share_id, BlockStatus::Rejected, Some(&reason)).await?;
                self.recorder.resume(block.epoch, block.share_id.clone()).await;
            }
            Err(e) => {
                tracing::warn!(hash = %block.hash, error = %e, "could not hand the block to the network; trying again");
            }
        }
        Ok(())
    }

    /// Finish what found blocks left undone: hand pending ones to the network again (the
    /// network ignores a block it has), and close the epochs of accepted ones that did not close
    /// on them. Run at start and periodically.
    pub async fn resolve_blocks(&self, source: &dyn JobSource) -> Result<()> {
        for b in self.ledger.blocks().await? {
            match b.status {
                BlockStatus::Pending => {
                    let answer = match found_block(&b) {
                        Ok(found) => source.submit_block(&found).await.map_err(|e| e.to_string()),
                        Err(e) => Ok(BlockOutcome::Rejected(e)),
                    };
                    self.block_answered(&b.share_id, answer).await?;
                }
                BlockStatus::Accepted => {
                    // its epoch still open, or closed by the operator without a block: close on it
                    let epoch = self.all().await.into_iter().find(|e| e.epoch == b.epoch);
                    let unfinished = epoch.is_some_and(|e| e.state == EpochState::Active || (e.close_reason == Some(CloseReason::Operator)));
                    if unfinished {
                        self.close(b.epoch, CloseReason::Block, Some(self.closing_block(&b))).await?;
                    }
                }
                BlockStatus::Rejected => {}
            }
        }
        Ok(())
    }

    fn closing_block(&self, b: &BlockRecord) -> ClosingBlock {
        ClosingBlock { hash: b.hash.clone(), height: b.height, reward: b.reward, payout: epoch_payout(b.reward, self.payout.pool_fee_ppm) }
    }

    /// The blocks closed epochs wait on to mature (display hex hashes).
    pub async fn maturing_blocks(&self) -> Vec<String> {
        let book = self.book.read().await;
        book.epochs
            .iter()
            .filter(|e| e.state == EpochState::Closed && e.close_reason == Some(CloseReason::Block))
            .filter_map(|e| e.block_hash.clone())
            .collect()
    }

    /// [`Self::advance_on`] a chain whose tip is at height `tip` with every closed epoch's block
    /// on it (a test's or a devnet's view).
    pub async fn advance(&self, tip: u32, now: u64) -> Result<Vec<EpochRecord>> {
        let depths = {
            let book = self.book.read().await;
            book.epochs
                .iter()
                .filter_map(|e| Some((e.block_hash.clone()?, Depth::Confirmations(tip.checked_sub(e.block_height?)?.saturating_add(1)))))
                .collect()
        };
        self.advance_on(&depths, now).await
    }

    /// Move closed epochs along their payout lifecycle (protocol §2): an epoch closed on a block
    /// becomes redeemable once `maturity_blocks` blocks are on top of it (`depths` gives each
    /// block's depth on the active chain; a block missing from it waits), becomes orphaned if
    /// its block left the active chain before that, and a redeemable one expires
    /// `redeem_window_secs` after it became redeemable. Each change is written, then announced.
    /// Returns the epochs that changed.
    pub async fn advance_on(&self, depths: &HashMap<String, Depth>, now: u64) -> Result<Vec<EpochRecord>> {
        let _transition = self.transition.lock().await;
        let mut book = self.book.write().await;
        let mut changed = vec![];
        let mut lowered = u32::MAX;
        for e in book.epochs.iter_mut() {
            let on_block = e.state == EpochState::Closed && e.close_reason == Some(CloseReason::Block);
            let depth = e.block_hash.as_ref().and_then(|h| depths.get(h)).filter(|_| on_block);
            let ended = e.state == EpochState::Redeemable && e.expires_at.is_some_and(|x| now >= x);
            let next = match depth {
                Some(Depth::Confirmations(c)) if *c > self.payout.maturity_blocks => {
                    // (the ledger stores 63-bit times: a window "forever" ends at the last of them)
                    let expires = now.saturating_add(self.payout.redeem_window_secs).min(i64::MAX as u64);
                    let done = self.ledger.mark_redeemable(e.epoch, now, expires).await?;
                    if done {
                        e.state = EpochState::Redeemable;
                        e.redeemable_at = Some(now);
                        e.expires_at = Some(expires);
                    }
                    done
                }
                Some(Depth::Orphaned) => {
                    let done = self.ledger.mark_orphaned(e.epoch).await?;
                    if done {
                        tracing::warn!(epoch = e.epoch, block = e.block_hash.as_deref().unwrap_or(""), "the epoch's block left the active chain before it matured: the epoch is orphaned and pays nothing");
                        e.state = EpochState::Orphaned;
                        e.payout = Some(0);
                        // work at the orphaned block's height is current again
                        lowered = lowered.min(e.block_height.unwrap_or(u32::MAX));
                    }
                    done
                }
                _ if ended => {
                    let done = self.ledger.mark_expired(e.epoch).await?;
                    if done {
                        e.state = EpochState::Expired;
                    }
                    done
                }
                _ => false,
            };
            if next {
                tracing::info!(epoch = e.epoch, state = e.state.as_str(), payout = e.payout.unwrap_or(0), "epoch lifecycle");
                changed.push(e.clone());
            }
        }
        book.min_height = book.min_height.min(lowered);
        drop(book);
        for e in &changed {
            if let Err(err) = self.announcer.announce_epoch(&self.mint, e).await {
                tracing::warn!(epoch = e.epoch, error = %err, "could not queue the epoch announcement; it is retried at start");
            }
        }
        Ok(changed)
    }
}

/// The block a recorded block row describes.
fn found_block(b: &BlockRecord) -> std::result::Result<FoundBlock, String> {
    let header = hex::decode(&b.header)
        .ok()
        .and_then(|h| bitcoin::consensus::encode::deserialize(&h).ok())
        .ok_or_else(|| format!("the recorded header of block {} does not parse", b.hash))?;
    if let Some(raw) = &b.block {
        let block: bitcoin::Block = hex::decode(raw)
            .ok()
            .and_then(|r| bitcoin::consensus::encode::deserialize(&r).ok())
            .ok_or_else(|| format!("the recorded block {} does not parse", b.hash))?;
        let mut txs = block.txdata.into_iter();
        let mut coinbase = txs.next().ok_or_else(|| format!("the recorded block {} has no coinbase", b.hash))?;
        // the legacy serialization: FoundBlock::block puts the witness reserved value back
        coinbase.input.iter_mut().for_each(|i| i.witness.clear());
        let coinbase = bitcoin::consensus::encode::serialize(&coinbase);
        return Ok(FoundBlock { height: b.height, header, coinbase, transactions: txs.collect::<Vec<_>>().into() });
    }
    let coinbase = hex::decode(&b.coinbase).map_err(|_| format!("the recorded coinbase of block {} is not hex", b.hash))?;
    Ok(FoundBlock { height: b.height, header, coinbase, transactions: std::sync::Arc::from([]) })
}
