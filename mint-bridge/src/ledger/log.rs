//! A closed epoch's committed share log (protocol §12): the tree is built once, when the epoch
//! has closed, streaming its shares in log order; each share's position and the tree's nodes at
//! the block level are stored, so an inclusion proof reads one block of shares.

use ehash_protocol::audit::{BLOCK_LEVEL, LogBuilder, LogShare, SumNode};
use ehash_protocol::epoch::EpochState;
use sqlx::Row;

use super::shares::log_share_from_row;
use super::{Ledger, i64_of, u64_col};
use crate::error::{Error, Result};

/// Shares read (and positioned) per transaction while committing a log.
const COMMIT_PAGE: u32 = 10_000;

/// A closed epoch's committed log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedLog {
    /// The root (the commitment announced in kind 38180).
    pub root: SumNode,
    /// Shares in the log.
    pub count: usize,
    /// The level whose nodes are kept.
    pub block_level: u32,
    /// The tree's nodes at that level, in order.
    pub blocks: Vec<SumNode>,
}

fn encode_nodes(nodes: &[SumNode]) -> String {
    let mut out = String::with_capacity(nodes.len() * 80);
    for n in nodes {
        out.push_str(&hex::encode(n.hash));
        out.push_str(&hex::encode(n.sum.to_be_bytes()));
    }
    out
}

fn decode_nodes(s: &str) -> Result<Vec<SumNode>> {
    let bytes = hex::decode(s).map_err(|e| Error::Inconsistent(format!("stored log nodes: {e}")))?;
    if bytes.len() % 40 != 0 {
        return Err(Error::Inconsistent("stored log nodes are not 40-byte records".into()));
    }
    Ok(bytes
        .chunks(40)
        .map(|c| {
            let mut hash = [0u8; 32];
            hash.copy_from_slice(&c[..32]);
            let mut sum = [0u8; 8];
            sum.copy_from_slice(&c[32..]);
            SumNode { hash, sum: u64::from_be_bytes(sum) }
        })
        .collect())
}

impl Ledger {
    /// Commit the log of a closed epoch, once: position every share, keep the block-level
    /// nodes, and set the epoch's root (or check it against the one fixed before). The credits
    /// in the log must add up to the epoch's issued total.
    pub async fn commit_log(&self, epoch: u32) -> Result<CommittedLog> {
        if let Some(c) = self.committed_log(epoch).await? {
            return Ok(c);
        }
        let e = self.epoch(epoch).await?;
        if e.state == EpochState::Active {
            return Err(Error::Inconsistent(format!("epoch {epoch} is still open; its log is committed when it closes")));
        }
        let mut builder = LogBuilder::new(BLOCK_LEVEL);
        let mut after: Option<String> = None;
        let mut index = 0u64;
        loop {
            let page = self.epoch_log_page(epoch, after.as_deref(), COMMIT_PAGE).await?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            let mut tx = self.pool.begin().await?;
            for (id, share) in &page {
                builder.push(share).map_err(|err| Error::Inconsistent(format!("epoch {epoch} share {id}: {err}")))?;
                sqlx::query("UPDATE ehash_shares SET log_index = $1 WHERE share_id = $2")
                    .bind(i64_of(index, "log index")?)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                index += 1;
            }
            tx.commit().await?;
        }
        let built = builder.finish().map_err(|err| Error::Inconsistent(format!("epoch {epoch} share log: {err}")))?;
        if Some(built.root.sum) != e.issued {
            return Err(Error::Inconsistent(format!("epoch {epoch}: the share log sums to {}, the ledger to {:?}", built.root.sum, e.issued)));
        }
        let root = hex::encode(built.root.hash);
        if e.log_root.as_ref().is_some_and(|r| *r != root) {
            return Err(Error::Inconsistent(format!("epoch {epoch}: its share log has root {root}, not the committed {:?}", e.log_root)));
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE ehash_epochs SET log_root = $1 WHERE epoch = $2")
            .bind(&root)
            .bind(i64::from(epoch))
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO ehash_log_nodes (epoch, block_level, count, nodes) VALUES ($1, $2, $3, $4) ON CONFLICT (epoch) DO NOTHING")
            .bind(i64::from(epoch))
            .bind(i64::from(BLOCK_LEVEL))
            .bind(i64_of(built.count as u64, "count")?)
            .bind(encode_nodes(&built.blocks))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(CommittedLog { root: built.root, count: built.count, block_level: BLOCK_LEVEL, blocks: built.blocks })
    }

    /// A closed epoch's committed log, if it was committed.
    pub async fn committed_log(&self, epoch: u32) -> Result<Option<CommittedLog>> {
        let row = sqlx::query(
            "SELECT n.block_level, n.count, n.nodes, e.log_root, e.issued FROM ehash_log_nodes n JOIN ehash_epochs e ON e.epoch = n.epoch WHERE n.epoch = $1",
        )
        .bind(i64::from(epoch))
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let root: Option<String> = r.try_get("log_root")?;
        let hash = root
            .and_then(|h| hex::decode(h).ok())
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| Error::Inconsistent(format!("epoch {epoch} has stored log nodes but no root")))?;
        let sum: Option<i64> = r.try_get("issued")?;
        let count = usize::try_from(u64_col(&r, "count")?).map_err(|_| Error::Inconsistent("log count out of range".into()))?;
        Ok(Some(CommittedLog {
            root: SumNode { hash, sum: sum.and_then(|s| u64::try_from(s).ok()).unwrap_or(0) },
            count,
            block_level: u32::try_from(u64_col(&r, "block_level")?).map_err(|_| Error::Inconsistent("block level out of range".into()))?,
            blocks: decode_nodes(&r.try_get::<String, _>("nodes")?)?,
        }))
    }

    /// A share's position in its epoch's committed log and the block of shares around it.
    pub async fn log_block(&self, epoch: u32, share_id: &str, block_level: u32) -> Result<Option<(usize, Vec<LogShare>)>> {
        let row = sqlx::query("SELECT log_index FROM ehash_shares WHERE share_id = $1 AND epoch = $2")
            .bind(share_id)
            .bind(i64::from(epoch))
            .fetch_optional(&self.pool)
            .await?;
        let Some(index) = row.map(|r| r.try_get::<Option<i64>, _>("log_index")).transpose()?.flatten() else {
            return Ok(None);
        };
        let index = u64::try_from(index).map_err(|_| Error::Inconsistent("negative log index".into()))?;
        let size = 1u64 << block_level;
        let first = index / size * size;
        let rows = sqlx::query(
            "SELECT header, difficulty_exp, amount FROM ehash_shares WHERE epoch = $1 AND log_index >= $2 AND log_index < $3 ORDER BY log_index",
        )
        .bind(i64::from(epoch))
        .bind(i64_of(first, "log index")?)
        .bind(i64_of(first + size, "log index")?)
        .fetch_all(&self.pool)
        .await?;
        let block = rows.iter().map(log_share_from_row).collect::<Result<Vec<_>>>()?;
        Ok(Some((usize::try_from(index).map_err(|_| Error::Inconsistent("log index out of range".into()))?, block)))
    }
}
