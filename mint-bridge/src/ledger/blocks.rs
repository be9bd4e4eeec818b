//! Found blocks: recorded with the share that found them, then the network's answer.

use std::str::FromStr;

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::{Ledger, i64_of, u64_col};
use crate::error::{Error, Result};

/// The longest node answer kept with a block.
const MAX_DETAIL_BYTES: usize = 1000;
/// The longest whole block kept, hex (a block weighs at most 4 M units: at most 4 MB).
const MAX_BLOCK_HEX: usize = 8_000_000;

/// What became of a found block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockStatus {
    /// Recorded; the network's answer is not known yet (it is asked again after a restart).
    Pending,
    /// The network took it (or already had it).
    Accepted,
    /// The network refused it: it closes nothing and pays nothing.
    Rejected,
}

impl BlockStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
        }
    }
}

impl FromStr for BlockStatus {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Ok(match s {
            "pending" => Self::Pending,
            "accepted" => Self::Accepted,
            "rejected" => Self::Rejected,
            other => return Err(format!("unknown block status {other:?}")),
        })
    }
}

/// A block found by a share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockRecord {
    /// The share that found it (its id is the block hash).
    pub share_id: String,
    /// The epoch of that share's quote.
    pub epoch: u32,
    /// The block's height.
    pub height: u32,
    /// The block hash (display hex).
    pub hash: String,
    /// What its coinbase pays (sats).
    pub reward: u64,
    /// The 80-byte header, hex.
    pub header: String,
    /// The coinbase transaction, hex.
    pub coinbase: String,
    /// The whole block, hex (`None` in ledgers from before it was kept).
    pub block: Option<String>,
    /// What became of it.
    pub status: BlockStatus,
    /// The network's answer, if any.
    pub detail: Option<String>,
    /// When it was found (unix seconds).
    pub created_at: u64,
}

impl Ledger {
    pub(super) async fn insert_block(tx: &mut Transaction<'_, Any>, b: &BlockRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO ehash_blocks (share_id, epoch, height, hash, reward, header, coinbase, status, detail, created_at, block) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (share_id) DO NOTHING",
        )
        .bind(&b.share_id)
        .bind(i64::from(b.epoch))
        .bind(i64::from(b.height))
        .bind(&b.hash)
        .bind(i64_of(b.reward, "reward")?)
        .bind(&b.header)
        .bind(&b.coinbase)
        .bind(b.status.as_str())
        .bind(b.detail.as_deref())
        .bind(i64_of(b.created_at, "time")?)
        .bind(b.block.as_deref().filter(|h| h.len() <= MAX_BLOCK_HEX))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Record a block on its own (its share could not be credited: its epoch had just closed).
    pub async fn record_block(&self, b: &BlockRecord) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        Self::insert_block(&mut tx, b).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The network's answer to a block.
    pub async fn set_block_status(&self, share_id: &str, status: BlockStatus, detail: Option<&str>) -> Result<()> {
        let detail = detail.map(|d| d.chars().take(MAX_DETAIL_BYTES / 4).collect::<String>());
        sqlx::query("UPDATE ehash_blocks SET status = $2, detail = $3 WHERE share_id = $1")
            .bind(share_id)
            .bind(status.as_str())
            .bind(detail)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A block by its share id.
    pub async fn block(&self, share_id: &str) -> Result<Option<BlockRecord>> {
        let row = sqlx::query(&format!("{SELECT_BLOCK} WHERE share_id = $1")).bind(share_id).fetch_optional(&self.pool).await?;
        row.as_ref().map(block_from_row).transpose()
    }

    /// Every block, oldest first.
    pub async fn blocks(&self) -> Result<Vec<BlockRecord>> {
        let rows = sqlx::query(&format!("{SELECT_BLOCK} ORDER BY created_at, share_id")).fetch_all(&self.pool).await?;
        rows.iter().map(block_from_row).collect()
    }

    /// The accepted block at the greatest height (the chain tip the pool built last).
    pub async fn last_accepted_block(&self) -> Result<Option<BlockRecord>> {
        let row = sqlx::query(&format!("{SELECT_BLOCK} WHERE status = $1 ORDER BY height DESC, created_at DESC LIMIT 1"))
            .bind(BlockStatus::Accepted.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(block_from_row).transpose()
    }
}

const SELECT_BLOCK: &str = "SELECT share_id, epoch, height, hash, reward, header, coinbase, block, status, detail, created_at FROM ehash_blocks";

fn block_from_row(r: &AnyRow) -> Result<BlockRecord> {
    let status: String = r.try_get("status")?;
    Ok(BlockRecord {
        share_id: r.try_get("share_id")?,
        epoch: u32::try_from(u64_col(r, "epoch")?).map_err(|_| Error::Inconsistent("epoch number out of range".into()))?,
        height: u32::try_from(u64_col(r, "height")?).map_err(|_| Error::Inconsistent("block height out of range".into()))?,
        hash: r.try_get("hash")?,
        reward: u64_col(r, "reward")?,
        header: r.try_get("header")?,
        coinbase: r.try_get("coinbase")?,
        block: r.try_get("block")?,
        status: BlockStatus::from_str(&status).map_err(Error::Inconsistent)?,
        detail: r.try_get("detail")?,
        created_at: u64_col(r, "created_at")?,
    })
}
