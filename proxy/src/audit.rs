//! The proxy's own log of every share the pool accepted, and its reconciliation against what the
//! mint credited to each quote: a pool that credits less than the work it acknowledged is caught.
//! Shares are appended in groups (one transaction each) with each quote's running totals, so
//! logging a share costs the same however long the log is.

use std::path::Path;

use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use tokio::sync::{mpsc, oneshot};

/// One logged share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedShare {
    /// Block hash of the share (display hex).
    pub share_id: String,
    /// The quote it should have credited.
    pub quote_id: String,
    /// That quote's unit.
    pub unit: String,
    /// The ehash it should have earned.
    pub expected: u64,
    /// The local worker that found it.
    pub worker: String,
}

/// Per-quote totals of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteTotal {
    /// The quote.
    pub quote_id: String,
    /// Its unit.
    pub unit: String,
    /// Expected credit.
    pub expected: u64,
    /// Shares.
    pub shares: u64,
}

/// Most shares written in one transaction.
const MAX_GROUP: usize = 1024;

type Entry = (LoggedShare, oneshot::Sender<Result<(), String>>);

/// The audit log (`proxy.sqlite` in the data directory). Shares are written by one task in
/// groups (whatever queued up while the last group was written, one transaction each), and
/// [`AuditLog::record`] returns once its share's group has committed.
#[derive(Debug, Clone)]
pub struct AuditLog {
    pool: SqlitePool,
    writes: mpsc::Sender<Entry>,
}

impl AuditLog {
    /// Open or create the log in `dir`.
    pub async fn open(dir: &Path) -> Result<Self, sqlx::Error> {
        let opts = SqliteConnectOptions::new()
            .filename(dir.join("proxy.sqlite"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full);
        let pool = SqlitePoolOptions::new().max_connections(2).connect_with(opts).await?;
        // shares are appended (the pool accepts a share once), each quote's totals kept beside
        let mut tx = pool.begin().await?;
        for ddl in [
            "CREATE TABLE IF NOT EXISTS audit_shares (share_id TEXT NOT NULL, quote_id TEXT NOT NULL, unit TEXT NOT NULL, \
             expected INTEGER NOT NULL, worker TEXT NOT NULL, created_at INTEGER NOT NULL)",
            "CREATE INDEX IF NOT EXISTS audit_shares_unit ON audit_shares (unit)",
            "CREATE TABLE IF NOT EXISTS audit_totals (quote_id TEXT PRIMARY KEY, unit TEXT NOT NULL, expected INTEGER NOT NULL, shares INTEGER NOT NULL)",
        ] {
            sqlx::query(ddl).execute(&mut *tx).await?;
        }
        // a log kept by an earlier version (one table, keyed by share id) moves over
        let old: Option<String> = sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'accepted_shares'")
            .fetch_optional(&mut *tx)
            .await?;
        if old.is_some() {
            sqlx::query("INSERT INTO audit_shares SELECT share_id, quote_id, unit, expected, worker, created_at FROM accepted_shares")
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO audit_totals SELECT quote_id, unit, SUM(expected), COUNT(*) FROM accepted_shares WHERE true GROUP BY quote_id, unit \
                 ON CONFLICT (quote_id) DO UPDATE SET expected = expected + excluded.expected, shares = shares + excluded.shares",
            )
            .execute(&mut *tx)
            .await?;
            sqlx::query("DROP TABLE accepted_shares").execute(&mut *tx).await?;
        }
        tx.commit().await?;
        let (writes, rx) = mpsc::channel(16 * 1024);
        tokio::spawn(write(pool.clone(), rx));
        Ok(Self { pool, writes })
    }

    /// Record a share the pool accepted; returns once it is on disk.
    pub async fn record(&self, s: &LoggedShare) -> Result<(), String> {
        let (reply, rx) = oneshot::channel();
        self.writes.send((s.clone(), reply)).await.map_err(|_| "the audit log writer stopped".to_owned())?;
        rx.await.map_err(|_| "the audit log writer stopped".to_owned())?
    }

    /// The logged shares of `unit`: (share id, expected credit).
    pub async fn shares_of(&self, unit: &str) -> Result<Vec<(String, u64)>, sqlx::Error> {
        let rows = sqlx::query("SELECT share_id, expected FROM audit_shares WHERE unit = ?").bind(unit).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                let e: i64 = r.try_get("expected")?;
                Ok((r.try_get("share_id")?, u64::try_from(e).unwrap_or(0)))
            })
            .collect()
    }

    /// Expected credit per quote.
    pub async fn totals(&self) -> Result<Vec<QuoteTotal>, sqlx::Error> {
        let rows = sqlx::query("SELECT quote_id, unit, expected, shares FROM audit_totals")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(QuoteTotal {
                    quote_id: r.try_get("quote_id")?,
                    unit: r.try_get("unit")?,
                    expected: u64::try_from(r.try_get::<i64, _>("expected")?).unwrap_or(0),
                    shares: u64::try_from(r.try_get::<i64, _>("shares")?).unwrap_or(0),
                })
            })
            .collect()
    }
}

/// The writer: each group of queued shares in one transaction.
async fn write(pool: SqlitePool, mut rx: mpsc::Receiver<Entry>) {
    while let Some(first) = rx.recv().await {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(e) => group.push(e),
                Err(_) => break,
            }
        }
        let outcome = insert(&pool, &group).await.map_err(|e| e.to_string());
        for (_, reply) in group {
            let _ = reply.send(outcome.clone());
        }
    }
}

/// Rows per INSERT statement, largest first (few distinct statements to prepare).
const STATEMENT_ROWS: [usize; 4] = [128, 32, 8, 1];

async fn insert(pool: &SqlitePool, group: &[Entry]) -> Result<(), sqlx::Error> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let now = i64::try_from(now).unwrap_or(0);
    let mut tx = pool.begin().await?;
    let mut rest = group;
    while !rest.is_empty() {
        let rows = STATEMENT_ROWS.into_iter().find(|n| *n <= rest.len()).unwrap_or(1);
        let (chunk, tail) = rest.split_at(rows);
        rest = tail;
        let sql = format!(
            "INSERT INTO audit_shares (share_id, quote_id, unit, expected, worker, created_at) VALUES {}",
            vec!["(?, ?, ?, ?, ?, ?)"; rows].join(", ")
        );
        let mut q = sqlx::query(&sql);
        for (s, _) in chunk {
            q = q.bind(&s.share_id).bind(&s.quote_id).bind(&s.unit).bind(i64::try_from(s.expected).unwrap_or(i64::MAX)).bind(&s.worker).bind(now);
        }
        q.execute(&mut *tx).await?;
    }
    let mut totals: std::collections::BTreeMap<(&str, &str), (u64, u64)> = std::collections::BTreeMap::new();
    for (s, _) in group {
        let t = totals.entry((s.quote_id.as_str(), s.unit.as_str())).or_insert((0, 0));
        *t = (t.0.saturating_add(s.expected), t.1 + 1);
    }
    for ((quote, unit), (expected, shares)) in totals {
        sqlx::query(
            "INSERT INTO audit_totals (quote_id, unit, expected, shares) VALUES (?, ?, ?, ?) \
             ON CONFLICT (quote_id) DO UPDATE SET expected = expected + excluded.expected, shares = shares + excluded.shares",
        )
        .bind(quote)
        .bind(unit)
        .bind(i64::try_from(expected).unwrap_or(i64::MAX))
        .bind(i64::try_from(shares).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}
