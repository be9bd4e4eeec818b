//! The share ledger (sqlx; SQLite by default, PostgreSQL by configuration): epochs and every
//! accepted share. The nostr announcement outbox (`ehash-outbox`) lives in the same database.
//!
//! A share is written here, durably, before its submit is acknowledged and before the mint quote
//! is credited; `credited` flips once cdk has recorded the payment. On start, uncredited shares
//! are credited again (cdk ignores a payment id it has seen), so a crash at any point neither
//! loses nor doubles a credit.

use std::path::Path;
use std::str::FromStr;

use ehash_protocol::audit::{self, LogShare};
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
    /// Total ehash credited (set when closed).
    pub issued: Option<u64>,
    /// Shares credited (set when closed).
    pub shares: Option<u64>,
    /// Root of the closed epoch's share log (protocol §12), hex; fixed at close.
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
}

fn u64_col(row: &AnyRow, col: &str) -> Result<u64> {
    let v: i64 = row.try_get(col)?;
    u64::try_from(v).map_err(|_| Error::Inconsistent(format!("negative {col} in ledger")))
}

fn opt_u64_col(row: &AnyRow, col: &str) -> Result<Option<u64>> {
    let v: Option<i64> = row.try_get(col)?;
    v.map(|v| u64::try_from(v).map_err(|_| Error::Inconsistent(format!("negative {col} in ledger"))))
        .transpose()
}

fn i64_of(v: u64, what: &str) -> Result<i64> {
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
        let pool = ehash_outbox::connect(&url, max).await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self { pool })
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
    /// The closed epoch's issued total and share count are summed from its shares.
    pub async fn close_epoch(
        &self,
        epoch: u32,
        reason: CloseReason,
        block: Option<&ClosingBlock>,
        now: u64,
        next_unit: &str,
    ) -> Result<(EpochRecord, EpochRecord)> {
        let mut tx = self.pool.begin().await?;
        let totals = sqlx::query("SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) AS issued, COUNT(*) AS shares FROM ehash_shares WHERE epoch = $1")
            .bind(i64::from(epoch))
            .fetch_one(&mut *tx)
            .await?;
        let issued = totals.try_get::<i64, _>("issued")?;
        let shares = totals.try_get::<i64, _>("shares")?;
        let rows = sqlx::query("SELECT header, difficulty_exp, amount FROM ehash_shares WHERE epoch = $1")
            .bind(i64::from(epoch))
            .fetch_all(&mut *tx)
            .await?;
        let mut log = rows.iter().map(log_share_from_row).collect::<Result<Vec<_>>>()?;
        audit::sort_log(&mut log);
        let root = audit::root(&log).map_err(|e| Error::Inconsistent(format!("epoch {epoch} share log: {e}")))?;
        if i64::try_from(root.sum).ok() != Some(issued) {
            return Err(Error::Inconsistent(format!("epoch {epoch}: the share log sums to {}, the ledger to {issued}", root.sum)));
        }
        let updated = sqlx::query(
            "UPDATE ehash_epochs SET state = $1, ended_at = $2, close_reason = $3, block_hash = $4, issued = $5, shares = $6, log_root = $9, \
             block_height = $10, reward = $11, payout = $12 WHERE epoch = $7 AND state = $8",
        )
        .bind(EpochState::Closed.as_str())
        .bind(i64_of(now, "time")?)
        .bind(reason.as_str())
        .bind(block.map(|b| b.hash.as_str()))
        .bind(issued)
        .bind(shares)
        .bind(i64::from(epoch))
        .bind(EpochState::Active.as_str())
        .bind(hex::encode(root.hash))
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
        let all = self.epochs().await?;
        let find = |n: u32| {
            all.iter()
                .find(|e| e.epoch == n)
                .cloned()
                .ok_or_else(|| Error::Inconsistent(format!("epoch {n} vanished")))
        };
        Ok((find(epoch)?, find(epoch + 1)?))
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

    /// The share log of `epoch` in log order (protocol §12).
    pub async fn epoch_log(&self, epoch: u32) -> Result<Vec<LogShare>> {
        let rows = sqlx::query("SELECT header, difficulty_exp, amount FROM ehash_shares WHERE epoch = $1")
            .bind(i64::from(epoch))
            .fetch_all(&self.pool)
            .await?;
        let mut log = rows.iter().map(log_share_from_row).collect::<Result<Vec<_>>>()?;
        audit::sort_log(&mut log);
        Ok(log)
    }

    /// Up to `limit` shares of `epoch`'s log after the share id `after` (from the start when
    /// `None`), in log order, with their ids. Ids are lowercase hex of equal length, so the
    /// database's text order is the log's order.
    pub async fn epoch_log_page(&self, epoch: u32, after: Option<&str>, limit: u32) -> Result<Vec<(String, LogShare)>> {
        let rows = sqlx::query(
            "SELECT share_id, header, difficulty_exp, amount FROM ehash_shares WHERE epoch = $1 AND share_id > $2 ORDER BY share_id LIMIT $3",
        )
        .bind(i64::from(epoch))
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((r.try_get("share_id")?, log_share_from_row(r)?))).collect()
    }

    /// Record an accepted share. Returns `false` if the same share (same header) was recorded
    /// before, in which case nothing changes.
    pub async fn insert_share(&self, s: &ShareRecord) -> Result<bool> {
        let r = sqlx::query(
            "INSERT INTO ehash_shares (share_id, epoch, quote_id, worker, header, difficulty_exp, amount, is_block, created_at, credited) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, FALSE) ON CONFLICT (share_id) DO NOTHING",
        )
        .bind(&s.share_id)
        .bind(i64::from(s.epoch))
        .bind(&s.quote_id)
        .bind(s.worker.as_deref())
        .bind(&s.header)
        .bind(i64::from(s.difficulty_exp))
        .bind(i64_of(s.amount, "amount")?)
        .bind(s.is_block)
        .bind(i64_of(s.created_at, "time")?)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Mark a share as credited to its mint quote.
    pub async fn mark_credited(&self, share_id: &str) -> Result<()> {
        sqlx::query("UPDATE ehash_shares SET credited = TRUE WHERE share_id = $1")
            .bind(share_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Shares recorded but not yet credited to their quotes, oldest first.
    pub async fn uncredited_shares(&self, limit: u32) -> Result<Vec<ShareRecord>> {
        let rows = sqlx::query(
            "SELECT share_id, epoch, quote_id, worker, header, difficulty_exp, amount, \
             CASE WHEN is_block THEN 1 ELSE 0 END AS is_block, created_at \
             FROM ehash_shares WHERE credited = FALSE ORDER BY created_at, share_id LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(share_from_row).collect()
    }

    /// Sum and count of shares credited to a quote.
    pub async fn quote_totals(&self, quote_id: &str) -> Result<(u64, u64)> {
        let row = sqlx::query("SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) AS amount, COUNT(*) AS shares FROM ehash_shares WHERE quote_id = $1")
            .bind(quote_id)
            .fetch_one(&self.pool)
            .await?;
        Ok((u64_col(&row, "amount")?, u64_col(&row, "shares")?))
    }

    /// The ids of every share credited to a quote.
    pub async fn quote_share_ids(&self, quote_id: &str) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT share_id FROM ehash_shares WHERE quote_id = $1 ORDER BY share_id")
            .bind(quote_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok(r.try_get("share_id")?)).collect()
    }

    /// Sum and count of shares in an epoch so far.
    pub async fn epoch_totals(&self, epoch: u32) -> Result<(u64, u64)> {
        let row = sqlx::query("SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) AS amount, COUNT(*) AS shares FROM ehash_shares WHERE epoch = $1")
            .bind(i64::from(epoch))
            .fetch_one(&self.pool)
            .await?;
        Ok((u64_col(&row, "amount")?, u64_col(&row, "shares")?))
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

fn log_share_from_row(r: &AnyRow) -> Result<LogShare> {
    let exp: i64 = r.try_get("difficulty_exp")?;
    Ok(LogShare {
        header: r.try_get("header")?,
        difficulty_exp: i32::try_from(exp).map_err(|_| Error::Inconsistent("difficulty out of range in ledger".into()))?,
        amount: u64_col(r, "amount")?,
    })
}

fn share_from_row(r: &AnyRow) -> Result<ShareRecord> {
    Ok(ShareRecord {
        share_id: r.try_get("share_id")?,
        epoch: u32::try_from(u64_col(r, "epoch")?).map_err(|_| Error::Inconsistent("epoch number out of range".into()))?,
        quote_id: r.try_get("quote_id")?,
        worker: r.try_get("worker")?,
        header: r.try_get("header")?,
        difficulty_exp: i32::try_from(r.try_get::<i64, _>("difficulty_exp")?)
            .map_err(|_| Error::Inconsistent("difficulty out of range".into()))?,
        amount: u64_col(r, "amount")?,
        // read as an integer: sqlx's Any driver cannot decode SQLite's BOOLEAN
        is_block: r.try_get::<i64, _>("is_block")? != 0,
        created_at: u64_col(r, "created_at")?,
    })
}
