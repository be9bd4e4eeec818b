//! The proxy's own log of every share the pool accepted, and its reconciliation against what the
//! mint credited to each quote: a pool that credits less than the work it acknowledged is caught.

use std::path::Path;

use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

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

/// The audit log (`proxy.sqlite` in the data directory).
#[derive(Debug, Clone)]
pub struct AuditLog {
    pool: SqlitePool,
}

impl AuditLog {
    /// Open or create the log in `dir`.
    pub async fn open(dir: &Path) -> Result<Self, sqlx::Error> {
        let opts = SqliteConnectOptions::new().filename(dir.join("proxy.sqlite")).create_if_missing(true);
        let pool = SqlitePoolOptions::new().max_connections(2).connect_with(opts).await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS accepted_shares (share_id TEXT PRIMARY KEY, quote_id TEXT NOT NULL, unit TEXT NOT NULL, \
             expected INTEGER NOT NULL, worker TEXT NOT NULL, created_at INTEGER NOT NULL)",
        )
        .execute(&pool)
        .await?;
        Ok(Self { pool })
    }

    /// Record a share the pool accepted.
    pub async fn record(&self, s: &LoggedShare) -> Result<(), sqlx::Error> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        sqlx::query("INSERT OR IGNORE INTO accepted_shares (share_id, quote_id, unit, expected, worker, created_at) VALUES (?, ?, ?, ?, ?, ?)")
            .bind(&s.share_id)
            .bind(&s.quote_id)
            .bind(&s.unit)
            .bind(i64::try_from(s.expected).unwrap_or(i64::MAX))
            .bind(&s.worker)
            .bind(i64::try_from(now).unwrap_or(0))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The logged shares of `unit`: (share id, expected credit).
    pub async fn shares_of(&self, unit: &str) -> Result<Vec<(String, u64)>, sqlx::Error> {
        let rows = sqlx::query("SELECT share_id, expected FROM accepted_shares WHERE unit = ?").bind(unit).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                let e: i64 = r.try_get("expected")?;
                Ok((r.try_get("share_id")?, u64::try_from(e).unwrap_or(0)))
            })
            .collect()
    }

    /// Expected credit per quote.
    pub async fn totals(&self) -> Result<Vec<QuoteTotal>, sqlx::Error> {
        let rows = sqlx::query("SELECT quote_id, unit, SUM(expected) AS expected, COUNT(*) AS shares FROM accepted_shares GROUP BY quote_id, unit")
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
