//! Epochs and crediting: binds quotes to epochs, records and credits shares, closes epochs.
//!
//! Money path for one share: validate (the session) → persist (ledger row) → act (credit the
//! mint quote, payment id = share id) → notify (the submit response). Crediting holds the epoch
//! book's read lock; closing an epoch holds its write lock, so no share is ever credited to an
//! epoch after its totals were fixed.

use std::str::FromStr;
use std::sync::Arc;

use bitcoin::block::Header;
use cdk::cdk_payment::{PaymentIdentifier, WaitPaymentResponse};
use cdk::nuts::{CurrencyUnit, PaymentMethod};
use cdk_common::QuoteId;
use ehash_protocol::epoch::{CloseReason, EpochState, EpochUnit, PoolId, epoch_payout};
use ehash_protocol::work::{DifficultyExp, UnitSize};
use tokio::sync::{RwLock, watch};

use crate::announce::Announcer;
use crate::error::{Error, Result};
use crate::config::PayoutConfig;
use crate::ledger::{ClosingBlock, EpochRecord, Ledger, ShareRecord};
use crate::mint::MintHandle;
use crate::mint::processor::EHASH_METHOD;

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
    #[error("quote {quote_id} is for epoch {epoch}, which has closed; create a quote in unit {current_unit} and authorize with it")]
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
    /// The share builds on a block that is no longer the tip.
    #[error("stale share: a block was found at height {0}")]
    Stale(u32),
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
    mint: Arc<MintHandle>,
    pool_id: PoolId,
    unit_size: UnitSize,
    announcer: Announcer,
    payout: PayoutConfig,
    book: RwLock<Book>,
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
    /// Assemble the epoch book (see [`load_or_open`]).
    pub fn new(
        ledger: Ledger,
        mint: Arc<MintHandle>,
        pool_id: PoolId,
        unit_size: UnitSize,
        announcer: Announcer,
        payout: PayoutConfig,
        epochs: Vec<EpochRecord>,
    ) -> Self {
        let current = epochs.last().map(|e| u64::from(e.epoch)).unwrap_or(0);
        let (changes, _) = watch::channel(current);
        Self { ledger, mint, pool_id, unit_size, announcer, payout, book: RwLock::new(Book { epochs, min_height: 0 }), changes }
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

    /// Record and credit a validated share. Returns the ehash amount credited.
    pub async fn credit(&self, share: &ValidShare) -> Result<u64, CreditError> {
        let book = self.book.read().await;
        if share.height < book.min_height {
            return Err(CreditError::Stale(book.min_height - 1));
        }
        let current = book.current().map_err(|e| CreditError::Unavailable(e.to_string()))?;
        if share.binding.epoch != current.epoch {
            return Err(CreditError::EpochClosed(QuoteError::EpochClosed {
                quote_id: share.binding.quote_id.clone(),
                epoch: share.binding.epoch,
                current_unit: current.unit.clone(),
            }));
        }
        let amount = self.unit_size.credit(share.difficulty).map_err(|e| CreditError::Work(e.to_string()))?;
        let record = ShareRecord {
            share_id: share.header.block_hash().to_string(),
            epoch: current.epoch,
            quote_id: share.binding.quote_id.clone(),
            worker: share.worker.clone(),
            header: hex::encode(bitcoin::consensus::encode::serialize(&share.header)),
            difficulty_exp: share.difficulty.exp(),
            amount,
            is_block: share.is_block,
            created_at: cdk::util::unix_time(),
        };
        match self.ledger.insert_share(&record).await {
            Ok(true) => {}
            Ok(false) => return Err(CreditError::Duplicate),
            Err(e) => return Err(CreditError::Unavailable(e.to_string())),
        }
        // Durable from here: if crediting the quote fails now, the recovery loop retries it.
        if let Err(e) = self.apply(&record, &current.unit).await {
            tracing::warn!(share = %record.share_id, error = %e, "crediting the mint quote failed; will retry");
        }
        Ok(amount)
    }

    /// Credit one recorded share to its mint quote (idempotent: the share id is the payment id).
    async fn apply(&self, share: &ShareRecord, unit: &str) -> Result<()> {
        let unit = CurrencyUnit::custom(unit);
        self.mint
            .mint()
            .pay_mint_quote_for_request_id(WaitPaymentResponse {
                payment_identifier: PaymentIdentifier::CustomId(share.quote_id.clone()),
                payment_amount: cdk::Amount::new(share.amount, unit),
                payment_id: share.share_id.clone(),
            })
            .await?;
        self.ledger.mark_credited(&share.share_id).await
    }

    /// Credit every recorded but uncredited share (after a crash or a mint error).
    pub async fn recover_uncredited(&self) -> Result<usize> {
        let mut done = 0;
        loop {
            let batch = self.ledger.uncredited_shares(500).await?;
            if batch.is_empty() {
                return Ok(done);
            }
            let units: Vec<(u32, String)> = self.book.read().await.epochs.iter().map(|e| (e.epoch, e.unit.clone())).collect();
            let n = batch.len();
            for share in batch {
                let unit = units
                    .iter()
                    .find(|(n, _)| *n == share.epoch)
                    .map(|(_, u)| u.clone())
                    .ok_or_else(|| Error::Inconsistent(format!("share {} names unknown epoch {}", share.share_id, share.epoch)))?;
                self.apply(&share, &unit).await?;
                done += 1;
            }
            if n < 500 {
                return Ok(done);
            }
        }
    }

    /// Close the active epoch and open the next. `block` is the height and header of the found
    /// block when `reason` is [`CloseReason::Block`]; a second block at the same height is
    /// ignored. Returns the closed epoch, or `None` if nothing was closed.
    pub async fn close(&self, reason: CloseReason, block: Option<(u32, &Header, u64)>) -> Result<Option<EpochRecord>> {
        let mut book = self.book.write().await;
        if let Some((height, _, _)) = block
            && height < book.min_height {
                return Ok(None);
            }
        let current = book.current()?.clone();
        let next_unit = EpochUnit::new(self.pool_id.clone(), current.epoch + 1).unit();
        let closing = block.map(|(height, header, reward)| ClosingBlock {
            hash: header.block_hash().to_string(),
            height,
            reward,
            payout: epoch_payout(reward, self.payout.pool_fee_ppm),
        });
        let (closed, next) = self
            .ledger
            .close_epoch(current.epoch, reason, closing.as_ref(), cdk::util::unix_time(), &next_unit)
            .await?;
        book.epochs.pop();
        book.epochs.push(closed.clone());
        book.epochs.push(next.clone());
        if let Some((height, _, _)) = block {
            book.min_height = height + 1;
        }
        self.mint.rebuild(&book.epochs).await?;
        drop(book);
        tracing::info!(
            epoch = closed.epoch,
            reason = reason.as_str(),
            issued = closed.issued.unwrap_or(0),
            shares = closed.shares.unwrap_or(0),
            next_unit = %next.unit,
            "epoch closed"
        );
        self.changes.send_replace(u64::from(next.epoch));
        for e in [&closed, &next] {
            if let Err(err) = self.announcer.announce_epoch(&self.mint, e).await {
                tracing::warn!(epoch = e.epoch, error = %err, "could not queue the epoch announcement; it is retried at start");
            }
        }
        Ok(Some(closed))
    }

    /// Move closed epochs along their payout lifecycle (protocol §2): an epoch closed on a block
    /// becomes redeemable once `tip` is `maturity_blocks` past that block, and expires
    /// `redeem_window_secs` later. Each change is written, then announced. Returns the epochs
    /// that changed.
    pub async fn advance(&self, tip: u32, now: u64) -> Result<Vec<EpochRecord>> {
        let mut book = self.book.write().await;
        let mut changed = vec![];
        for e in book.epochs.iter_mut() {
            let matured = e.state == EpochState::Closed
                && e.close_reason == Some(CloseReason::Block)
                && e.block_height.is_some_and(|h| tip >= h.saturating_add(self.payout.maturity_blocks));
            let ended = e.state == EpochState::Redeemable && e.expires_at.is_some_and(|x| now >= x);
            let next = if matured {
                // (the ledger stores 63-bit times: a window "forever" ends at the last of them)
                let expires = now.saturating_add(self.payout.redeem_window_secs).min(i64::MAX as u64);
                let done = self.ledger.mark_redeemable(e.epoch, now, expires).await?;
                if done {
                    e.state = EpochState::Redeemable;
                    e.redeemable_at = Some(now);
                    e.expires_at = Some(expires);
                }
                done
            } else if ended {
                let done = self.ledger.mark_expired(e.epoch).await?;
                if done {
                    e.state = EpochState::Expired;
                }
                done
            } else {
                false
            };
            if next {
                tracing::info!(epoch = e.epoch, state = e.state.as_str(), payout = e.payout.unwrap_or(0), "epoch lifecycle");
                changed.push(e.clone());
            }
        }
        drop(book);
        for e in &changed {
            if let Err(err) = self.announcer.announce_epoch(&self.mint, e).await {
                tracing::warn!(epoch = e.epoch, error = %err, "could not queue the epoch announcement; it is retried at start");
            }
        }
        Ok(changed)
    }
}
