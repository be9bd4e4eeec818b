//! The share ledger (sqlx; SQLite by default, PostgreSQL by configuration): epochs, every
//! accepted share, each quote's running credit, found blocks and each closed epoch's committed
//! log. The nostr announcement outbox (`ehash-outbox`) lives in the same database.
//!
//! Shares are written here in groups ([`Ledger::record`], one transaction for many shares),
//! durably, before any of them is acknowledged; the same transaction adds them to their quotes'
//! running credit. The mint learns of credit later, in aggregated payments (`crate::credit`):
//! the ledger is the record of what is owed, the mint's amount paid the record of what was paid.

mod blocks;
mod log;
mod shares;

pub use blocks::{BlockRecord, BlockStatus};
pub use log::CommittedLog;
pub use shares::QuoteCredit;

use std::path::Path;
use std::str::FromStr;

use ehash_protocol::epoch::{CloseReason, EpochState};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use crate::config::DatabaseConfig;
use crate::error::{Error, Result};

/// One epoch as the ledger records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochRecord {
    /// Epoch number, from 1.
    pub epoch: u32,
    /// The epoch's Cashu unit.
    pub unit: String,
    /// Lifecycle state.
    pub state: EpochState,
    /// Opened at (unix seconds).
    pub started_at: u64,
    /// Closed at.
    pub ended_at: Option<u64>,
    /// Why it closed.
    pub close_reason: Option<CloseReason>,
    /// The block that closed it (display hex).
    pub block_hash: Option<String>,
    /// Total ehash credited (set when closed; [`Ledger::epoch_totals`] while active).
    pub issued: Option<u64>,
    /// Shares credited (set when closed).
    pub shares: Option<u64>,
    /// Root of the closed epoch's share log (protocol §12), hex; committed once it is closed.
    pub log_root: Option<String>,
    /// Height of the block that closed it.
    pub block_height: Option<u32>,
    /// That block's reward (sats).
    pub reward: Option<u64>,
    /// What the epoch pays out in total after the pool's fee (sats).
    pub payout: Option<u64>,
    /// When it became redeemable.
    pub redeemable_at: Option<u64>,
    /// When it expires (once redeemable).
    pub expires_at: Option<u64>,
}

/// The found block an epoch closes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosingBlock {
    /// Block hash (display hex).
    pub hash: String,
    /// Height.
    pub height: u32,
    /// Coinbase outputs total (sats).
    pub reward: u64,
    /// The epoch's payout after the pool's fee.
    pub payout: u64,
}

/// One accepted share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareRecord {
    /// The share id: its block hash (display hex). Same header, same share.
    pub share_id: String,
    /// The epoch it was credited in.
    pub epoch: u32,
    /// The quote it credits.
    pub quote_id: String,
    /// The worker name from the username.
    pub worker: Option<String>,
    /// The 80-byte header, hex.
    pub header: String,
    /// The difficulty exponent assigned to the share.
    pub difficulty_exp: i32,
    /// Ehash credited.
    pub amount: u64,
    /// Whether the share met the network target.
    pub is_block: bool,
    /// Accepted at (unix seconds).
    pub created_at: u64,
}

/// The ledger.
#[derive(Debug, Clone)]
pub struct Ledger {
    pool: AnyPool,
    /// SQLite (else PostgreSQL): statements with many parameters are written in each one's
    /// placeholder style (SQLite looks named parameters up one by one, in time linear in
    /// their number, so `$n` in a long statement costs quadratic time; `?` does not).
    sqlite: bool,
}

pub(crate) fn u64_col(row: &AnyRow, col: &str) -> Result<u64> {
    let v: i64 = row.try_get(col)?;
    u64::try_from(v).map_err(|_| Error::Inconsistent(format!("negative {col} in ledger")))
}

pub(crate) fn opt_u64_col(row: &AnyRow, col: &str) -> Result<Option<u64>> {
    let v: Option<i64> = row.try_get(col)?;
    v.map(|v| u64::try_from(v).map_err(|_| Error::Inconsistent(format!("negative {col} in ledger"))))
        .transpose()
}

pub(crate) fn i64_of(v: u64, what: &str) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::Inconsistent(format!("{what} {v} exceeds the ledger's 63-bit range")))
}

impl Ledger {
    /// Open (and migrate) the ledger.
    pub async fn open(db: &DatabaseConfig, data_dir: &Path) -> Result<Self> {
        let (url, max) = match db {
            DatabaseConfig::Sqlite => {
                let path = data_dir.join("ledger.sqlite");
                (format!("sqlite://{}?mode=rwc", path.display()), 4)
            }
            DatabaseConfig::Postgres(url) => (url.clone(), 8),
        };
        let pool = ehash_outbox::connect_busy(&url, max).await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self { pool, sqlite: matches!(db, DatabaseConfig::Sqlite) })
    }

    /// Every epoch, oldest first.
    pub async fn epochs(&self) -> Result<Vec<EpochRecord>> {
        let rows = sqlx::query(
            "SELECT epoch, unit, state, started_at, ended_at, close_reason, block_hash, issued, shares, log_root, \
             block_height, reward, payout, redeemable_at, expires_at FROM ehash_epochs ORDER BY epoch",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(epoch_from_row).collect()
    }

    /// Record the first epoch.
    pub async fn open_first_epoch(&self, unit: &str, now: u64) -> Result<EpochRecord> {
        sqlx::query("INSERT INTO ehash_epochs (epoch, unit, state, started_at) VALUES ($1, $2, $3, $4)")
            .bind(1i64)
            .bind(unit)
            .bind(EpochState::Active.as_str())
            .bind(i64_of(now, "time")?)
            .execute(&self.pool)
            .await?;
        Ok(EpochRecord {
            epoch: 1,
            unit: unit.to_owned(),
            state: EpochState::Active,
            started_at: now,
            ended_at: None,
            close_reason: None,
            block_hash: None,
            issued: None,
            shares: None,
            log_root: None,
            block_height: None,
            reward: None,
            payout: None,
            redeemable_at: None,
            expires_at: None,
        })
    }

    /// Close the active epoch `epoch` and open `epoch + 1` with `next_unit`, in one transaction.
    /// The closed epoch's issued total and share count are the sums of its quotes' running
    /// credits (no share is read); its log is committed afterwards ([`Self::commit_log`]).
    pub async fn close_epoch(
        &self,
        epoch: u32,
        reason: CloseReason,
        block: Option<&ClosingBlock>,
        now: u64,
        next_unit: &str,
    ) -> Result<(EpochRecord, EpochRecord)> {
        // the first statement writes: a SQLite transaction that read first could not take the
        // write lock once another writer committed (SQLITE_BUSY without waiting)
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE ehash_epochs SET state = $1, ended_at = $2, close_reason = $3, block_hash = $4, \
             issued = (SELECT CAST(COALESCE(SUM(credited), 0) AS BIGINT) FROM ehash_quote_credits WHERE epoch = $5), \
             shares = (SELECT CAST(COALESCE(SUM(shares), 0) AS BIGINT) FROM ehash_quote_credits WHERE epoch = $5), \
             block_height = $7, reward = $8, payout = $9 WHERE epoch = $5 AND state = $6",
        )
        .bind(EpochState::Closed.as_str())
        .bind(i64_of(now, "time")?)
        .bind(reason.as_str())
        .bind(block.map(|b| b.hash.as_str()))
        .bind(i64::from(epoch))
        .bind(EpochState::Active.as_str())
        .bind(block.map(|b| i64::from(b.height)))
        .bind(block.map(|b| i64_of(b.reward, "reward")).transpose()?)
        .bind(block.map(|b| i64_of(b.payout, "payout")).transpose()?)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() != 1 {
            return Err(Error::Inconsistent(format!("epoch {epoch} is not the active epoch")));
        }
        sqlx::query("INSERT INTO ehash_epochs (epoch, unit, state, started_at) VALUES ($1, $2, $3, $4)")
            .bind(i64::from(epoch) + 1)
            .bind(next_unit)
            .bind(EpochState::Active.as_str())
            .bind(i64_of(now, "time")?)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((self.epoch(epoch).await?, self.epoch(epoch + 1).await?))
    }

    /// A block found by a share of `epoch` after the operator closed it (the two raced): the
    /// epoch, closed without a block, closes on this one instead and pays it out (protocol §2).
    /// Returns the amended record, or `None` if `epoch` is not closed without a block.
    pub async fn amend_close_with_block(&self, epoch: u32, block: &ClosingBlock) -> Result<Option<EpochRecord>> {
        let r = sqlx::query(
            "UPDATE ehash_epochs SET close_reason = $1, block_hash = $2, block_height = $3, reward = $4, payout = $5 \
             WHERE epoch = $6 AND state = $7 AND close_reason = $8",
        )
        .bind(CloseReason::Block.as_str())
        .bind(&block.hash)
        .bind(i64::from(block.height))
        .bind(i64_of(block.reward, "reward")?)
        .bind(i64_of(block.payout, "payout")?)
        .bind(i64::from(epoch))
        .bind(EpochState::Closed.as_str())
        .bind(CloseReason::Operator.as_str())
        .execute(&self.pool)
        .await?;
        if r.rows_affected() != 1 {
            return Ok(None);
        }
        self.epoch(epoch).await.map(Some)
    }

    /// One epoch.
    pub async fn epoch(&self, epoch: u32) -> Result<EpochRecord> {
        let row = sqlx::query(
            "SELECT epoch, unit, state, started_at, ended_at, close_reason, block_hash, issued, shares, log_root, \
             block_height, reward, payout, redeemable_at, expires_at FROM ehash_epochs WHERE epoch = $1",
        )
        .bind(i64::from(epoch))
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| Error::Inconsistent(format!("epoch {epoch} is not in the ledger")))?;
        epoch_from_row(&row)
    }

    /// A closed epoch's block matured: it is redeemable from `now` until `expires_at`.
    pub async fn mark_redeemable(&self, epoch: u32, now: u64, expires_at: u64) -> Result<bool> {
        let r = sqlx::query("UPDATE ehash_epochs SET state = $1, redeemable_at = $2, expires_at = $3 WHERE epoch = $4 AND state = $5")
            .bind(EpochState::Redeemable.as_str())
            .bind(i64_of(now, "time")?)
            .bind(i64_of(expires_at, "time")?)
            .bind(i64::from(epoch))
            .bind(EpochState::Closed.as_str())
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// A closed epoch's block left the active chain before it matured: it pays nothing.
    pub async fn mark_orphaned(&self, epoch: u32) -> Result<bool> {
        let r = sqlx::query("UPDATE ehash_epochs SET state = $1, payout = 0 WHERE epoch = $2 AND state = $3")
            .bind(EpochState::Orphaned.as_str())
            .bind(i64::from(epoch))
            .bind(EpochState::Closed.as_str())
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// A redeemable epoch's window ended.
    pub async fn mark_expired(&self, epoch: u32) -> Result<bool> {
        let r = sqlx::query("UPDATE ehash_epochs SET state = $1 WHERE epoch = $2 AND state = $3")
            .bind(EpochState::Expired.as_str())
            .bind(i64::from(epoch))
            .bind(EpochState::Redeemable.as_str())
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// The database pool (shared with the announcement outbox).
    pub fn pool(&self) -> AnyPool {
        self.pool.clone()
    }

    /// Close the pool's connections.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn epoch_from_row(r: &AnyRow) -> Result<EpochRecord> {
    let state: String = r.try_get("state")?;
    let reason: Option<String> = r.try_get("close_reason")?;
    Ok(EpochRecord {
        epoch: u32::try_from(u64_col(r, "epoch")?).map_err(|_| Error::Inconsistent("epoch number out of range".into()))?,
        unit: r.try_get("unit")?,
        state: EpochState::from_str(&state).map_err(Error::Inconsistent)?,
        started_at: u64_col(r, "started_at")?,
        ended_at: opt_u64_col(r, "ended_at")?,
        close_reason: reason.map(|s| CloseReason::from_str(&s).map_err(Error::Inconsistent)).transpose()?,
        block_hash: r.try_get("block_hash")?,
        issued: opt_u64_col(r, "issued")?,
        shares: opt_u64_col(r, "shares")?,
        log_root: r.try_get("log_root")?,
        block_height: opt_u64_col(r, "block_height")?
            .map(|h| u32::try_from(h).map_err(|_| Error::Inconsistent("block height out of range".into())))
            .transpose()?,
        reward: opt_u64_col(r, "reward")?,
        payout: opt_u64_col(r, "payout")?,
        redeemable_at: opt_u64_col(r, "redeemable_at")?,
        expires_at: opt_u64_col(r, "expires_at")?,
    })
}

