//! Shares: recorded in groups, with their quotes' running credit; read back as the epoch's log.

use std::collections::{BTreeMap, HashSet};

use ehash_protocol::audit::LogShare;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::blocks::BlockRecord;
use super::{Ledger, ShareRecord, i64_of, u64_col};
use crate::error::{Error, Result};

/// Rows per INSERT statement: a group is cut into statements of these sizes, largest first, so
/// few distinct statements are prepared (9 parameters a row; well under both databases' limits).
const STATEMENT_ROWS: [usize; 5] = [256, 64, 16, 4, 1];
/// Longest worker name stored (the Stratum endpoint refuses longer ones).
const MAX_WORKER_BYTES: usize = ehash_protocol::stratum::MAX_WORKER_BYTES;

/// A quote's running credit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuoteCredit {
    /// The epoch the quote belongs to.
    pub epoch: u32,
    /// Ehash its recorded shares earned.
    pub credited: u64,
    /// How many shares.
    pub shares: u64,
    /// Credit the mint is known to have been paid (it may have been paid more recently).
    pub synced: u64,
}

impl Ledger {
    /// Record a group of shares (and the blocks some of them found) in one transaction: each
    /// share once (same share id, same share: a repeat, here or in the ledger, is not
    /// recorded), its quote's running credit raised by what it earned. Returns, for each share,
    /// whether it was recorded. Nothing is recorded if the transaction fails.
    pub async fn record(&self, shares: &[ShareRecord], blocks: &[BlockRecord]) -> Result<Vec<bool>> {
        let mut tx = self.pool.begin().await?;
        let mut recorded: HashSet<String> = HashSet::with_capacity(shares.len());
        let mut seen: HashSet<&str> = HashSet::with_capacity(shares.len());
        let fresh: Vec<&ShareRecord> = shares.iter().filter(|s| seen.insert(s.share_id.as_str())).collect();
        let mut rest: &[&ShareRecord] = &fresh;
        while !rest.is_empty() {
            let rows = STATEMENT_ROWS.into_iter().find(|n| *n <= rest.len()).unwrap_or(1);
            let (chunk, tail) = rest.split_at(rows);
            rest = tail;
            let sql = self.insert_shares_sql(rows);
            let mut q = sqlx::query(&sql);
            for s in chunk {
                let worker = s.worker.as_deref().filter(|w| w.len() <= MAX_WORKER_BYTES);
                q = q
                    .bind(&s.share_id)
                    .bind(i64::from(s.epoch))
                    .bind(&s.quote_id)
                    .bind(worker)
                    .bind(&s.header)
                    .bind(i64::from(s.difficulty_exp))
                    .bind(i64_of(s.amount, "amount")?)
                    .bind(s.is_block)
                    .bind(i64_of(s.created_at, "time")?);
            }
            for row in q.fetch_all(&mut *tx).await? {
                recorded.insert(row.try_get("share_id")?);
            }
        }
        // the quotes' running credit, one row each
        let mut per_quote: BTreeMap<&str, (u32, u64, u64)> = BTreeMap::new();
        for s in fresh.iter().filter(|s| recorded.contains(&s.share_id)) {
            let e = per_quote.entry(s.quote_id.as_str()).or_insert((s.epoch, 0, 0));
            e.1 = e.1.checked_add(s.amount).ok_or_else(|| Error::Inconsistent(format!("quote {} credit overflows", s.quote_id)))?;
            e.2 += 1;
        }
        for (quote, (epoch, amount, count)) in per_quote {
            sqlx::query(
                "INSERT INTO ehash_quote_credits (quote_id, epoch, credited, shares, synced) VALUES ($1, $2, $3, $4, 0) \
                 ON CONFLICT (quote_id) DO UPDATE SET credited = ehash_quote_credits.credited + excluded.credited, \
                 shares = ehash_quote_credits.shares + excluded.shares",
            )
            .bind(quote)
            .bind(i64::from(epoch))
            .bind(i64_of(amount, "credit")?)
            .bind(i64_of(count, "shares")?)
            .execute(&mut *tx)
            .await?;
        }
        for b in blocks.iter().filter(|b| recorded.contains(&b.share_id)) {
            Self::insert_block(&mut tx, b).await?;
        }
        tx.commit().await?;
        let mut once: HashSet<&str> = HashSet::with_capacity(shares.len());
        Ok(shares.iter().map(|s| once.insert(s.share_id.as_str()) && recorded.contains(&s.share_id)).collect())
    }

    /// `INSERT … VALUES (…), …` for `rows` shares, returning the ids that were new.
    fn insert_shares_sql(&self, rows: usize) -> String {
        let mut sql = String::from(
            "INSERT INTO ehash_shares (share_id, epoch, quote_id, worker, header, difficulty_exp, amount, is_block, created_at) VALUES ",
        );
        for i in 0..rows {
            if i > 0 {
                sql.push(',');
            }
            if self.sqlite {
                sql.push_str("(?,?,?,?,?,?,?,?,?)");
            } else {
                let b = i * 9;
                sql.push_str(&format!("(${},${},${},${},${},${},${},${},${})", b + 1, b + 2, b + 3, b + 4, b + 5, b + 6, b + 7, b + 8, b + 9));
            }
        }
        sql.push_str(" ON CONFLICT (share_id) DO NOTHING RETURNING share_id");
        sql
    }

    /// A quote's running credit, if any share credited it.
    pub async fn quote_credit(&self, quote_id: &str) -> Result<Option<QuoteCredit>> {
        let row = sqlx::query("SELECT epoch, credited, shares, synced FROM ehash_quote_credits WHERE quote_id = $1")
            .bind(quote_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(QuoteCredit {
                epoch: u32::try_from(u64_col(&r, "epoch")?).map_err(|_| Error::Inconsistent("epoch number out of range".into()))?,
                credited: u64_col(&r, "credited")?,
                shares: u64_col(&r, "shares")?,
                synced: u64_col(&r, "synced")?,
            })
        })
        .transpose()
    }

    /// Sum and count of shares credited to a quote.
    pub async fn quote_totals(&self, quote_id: &str) -> Result<(u64, u64)> {
        Ok(self.quote_credit(quote_id).await?.map_or((0, 0), |c| (c.credited, c.shares)))
    }

    /// Quotes (after `after`, in id order) whose credit grew since the mint was last paid up
    /// to it, with that credit.
    pub async fn unsynced_quotes(&self, after: &str, limit: u32) -> Result<Vec<(String, u64)>> {
        let rows = sqlx::query(
            "SELECT quote_id, credited FROM ehash_quote_credits WHERE credited > synced AND quote_id > $1 ORDER BY quote_id LIMIT $2",
        )
        .bind(after)
        .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok((r.try_get("quote_id")?, u64_col(r, "credited")?))).collect()
    }

    /// The mint has been paid `quote_id`'s credit up to `credited`.
    pub async fn mark_synced(&self, quote_id: &str, credited: u64) -> Result<()> {
        sqlx::query("UPDATE ehash_quote_credits SET synced = $2 WHERE quote_id = $1 AND synced < $2")
            .bind(quote_id)
            .bind(i64_of(credited, "credit")?)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The ids of every share credited to a quote (a scan: for audits and tests).
    pub async fn quote_share_ids(&self, quote_id: &str) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT share_id FROM ehash_shares WHERE quote_id = $1 ORDER BY share_id")
            .bind(quote_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok(r.try_get("share_id")?)).collect()
    }

    /// Sum and count of shares in an epoch so far.
    pub async fn epoch_totals(&self, epoch: u32) -> Result<(u64, u64)> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(credited), 0) AS BIGINT) AS amount, CAST(COALESCE(SUM(shares), 0) AS BIGINT) AS shares \
             FROM ehash_quote_credits WHERE epoch = $1",
        )
        .bind(i64::from(epoch))
        .fetch_one(&self.pool)
        .await?;
        Ok((u64_col(&row, "amount")?, u64_col(&row, "shares")?))
    }

    /// Up to `limit` shares of `epoch`'s log after the share id `after` (from the start when
    /// `None`), in log order, with their ids. Ids are lowercase hex of equal length, so the
    /// database's text order is the log's order. A committed log is read by position; an open
    /// epoch's along the share ids.
    pub async fn epoch_log_page(&self, epoch: u32, after: Option<&str>, limit: u32) -> Result<Vec<(String, LogShare)>> {
        if self.committed_log(epoch).await?.is_some() {
            let from = match after {
                None => Some(-1),
                Some(id) => sqlx::query("SELECT log_index FROM ehash_shares WHERE share_id = $1 AND epoch = $2")
                    .bind(id)
                    .bind(i64::from(epoch))
                    .fetch_optional(&self.pool)
                    .await?
                    .map(|r| r.try_get::<Option<i64>, _>("log_index"))
                    .transpose()?
                    .flatten(),
            };
            if let Some(from) = from {
                let rows = sqlx::query(
                    "SELECT share_id, header, difficulty_exp, amount FROM ehash_shares WHERE epoch = $1 AND log_index > $2 ORDER BY log_index LIMIT $3",
                )
                .bind(i64::from(epoch))
                .bind(from)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                return rows.iter().map(|r| Ok((r.try_get("share_id")?, log_share_from_row(r)?))).collect();
            }
        }
        // `+epoch`: walk the share id index in order, not the epoch's rows then sort them
        let rows = sqlx::query(
            "SELECT share_id, header, difficulty_exp, amount FROM ehash_shares WHERE +epoch = $1 AND share_id > $2 ORDER BY share_id LIMIT $3",
        )
        .bind(i64::from(epoch))
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((r.try_get("share_id")?, log_share_from_row(r)?))).collect()
    }
}

pub(super) fn log_share_from_row(r: &AnyRow) -> Result<LogShare> {
    let exp: i64 = r.try_get("difficulty_exp")?;
    Ok(LogShare {
        header: r.try_get("header")?,
        difficulty_exp: i32::try_from(exp).map_err(|_| Error::Inconsistent("difficulty out of range in ledger".into()))?,
        amount: u64_col(r, "amount")?,
    })
}
