//! The exchange's database (sqlx; SQLite by default, PostgreSQL by configuration): the journal
//! of every market, trades' settlement records, epoch announcements, and the nostr outbox (whose
//! stored kind-38191 events are the trades' published state).

use ehash_protocol::api::JournalEntry;
use serde::{Deserialize, Serialize};
use sqlx::{AnyPool, Row};

use crate::{Error, Result};

/// Largest JSON document stored (RUSTSEC-2024-0363 concerns values over 4 GiB).
pub const MAX_RECORD_BYTES: usize = 1 << 20;

/// What the exchange keeps about a trade's settlement beyond its published event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    /// The market.
    pub market: String,
    /// When it was matched.
    pub matched_at: u64,
    /// The seller's lock token, once verified.
    pub seller_lock: Option<String>,
    /// The buyer's lock token, once verified.
    pub buyer_lock: Option<String>,
    /// A lock token received but not yet verified (a mint was unreachable): (from seller?, token).
    pub unverified: Vec<(bool, String)>,
    /// Nothing more will happen (the exchange stops watching).
    pub done: bool,
}

fn db(e: impl std::fmt::Display) -> Error {
    Error::Database(e.to_string())
}

fn i64_of(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::Database(format!("{v} exceeds 63 bits")))
}

/// The exchange's store.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
}

impl Store {
    /// Open (and create) the store: PostgreSQL at `url`, or `exchange.sqlite` in `dir`.
    pub async fn open(url: Option<&str>, dir: &std::path::Path) -> Result<Self> {
        let (url, sqlite) = match url {
            Some(u) => (u.to_owned(), false),
            None => (format!("sqlite://{}?mode=rwc", dir.join("exchange.sqlite").display()), true),
        };
        let pool = ehash_outbox::connect(&url, if sqlite { 4 } else { 8 })
            .await
            .map_err(|e| Error::Database(format!("connecting to {}: {e}", if sqlite { url.as_str() } else { "the PostgreSQL database_url" })))?;
        for ddl in [
            "CREATE TABLE IF NOT EXISTS ex_journal (market TEXT NOT NULL, seq BIGINT NOT NULL, at BIGINT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (market, seq))",
            "CREATE TABLE IF NOT EXISTS ex_settlements (id TEXT PRIMARY KEY, market TEXT NOT NULL, done BOOLEAN NOT NULL, body TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS ex_epochs (market TEXT PRIMARY KEY, created_at BIGINT NOT NULL, event_json TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS ex_meta (k TEXT PRIMARY KEY, v BIGINT NOT NULL)",
        ] {
            sqlx::query(ddl).execute(&pool).await.map_err(db)?;
        }
        Ok(Self { pool })
    }

    /// Record the lot on first use; refuse another one later (every booked price is per it).
    pub async fn check_lot(&self, lot: u64) -> Result<()> {
        let row = sqlx::query("SELECT v FROM ex_meta WHERE k = 'lot'").fetch_optional(&self.pool).await.map_err(db)?;
        match row {
            Some(r) => {
                let stored: i64 = r.try_get(0).map_err(db)?;
                if stored != i64_of(lot)? {
                    return Err(Error::Config(format!(
                        "this exchange's database books prices per lot of {stored}; start with lot = {stored} (--lot {stored}) or use a fresh data_dir / database_url for lot {lot}"
                    )));
                }
            }
            None => {
                sqlx::query("INSERT INTO ex_meta (k, v) VALUES ('lot', $1)").bind(i64_of(lot)?).execute(&self.pool).await.map_err(db)?;
            }
        }
        Ok(())
    }

    /// The pool (shared with the outbox).
    pub fn pool(&self) -> AnyPool {
        self.pool.clone()
    }

    /// Append a journal entry (fails if its number is taken).
    pub async fn append(&self, market: &str, e: &JournalEntry) -> Result<()> {
        let body = serde_json::to_string(e).map_err(db)?;
        if body.len() > MAX_RECORD_BYTES {
            return Err(Error::Database(format!("journal entry of {} bytes is too large", body.len())));
        }
        sqlx::query("INSERT INTO ex_journal (market, seq, at, body) VALUES ($1, $2, $3, $4)")
            .bind(market)
            .bind(i64_of(e.seq)?)
            .bind(i64_of(e.at)?)
            .bind(body)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    /// A market's journal after `after`, at most `limit` entries.
    pub async fn journal(&self, market: &str, after: u64, limit: i64) -> Result<Vec<JournalEntry>> {
        let rows = sqlx::query("SELECT body FROM ex_journal WHERE market = $1 AND seq > $2 ORDER BY seq LIMIT $3")
            .bind(market)
            .bind(i64_of(after)?)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| serde_json::from_str(&r.try_get::<String, _>(0).map_err(db)?).map_err(db))
            .collect()
    }

    /// Markets with a journal.
    pub async fn journal_markets(&self) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT DISTINCT market FROM ex_journal").fetch_all(&self.pool).await.map_err(db)?;
        rows.iter().map(|r| r.try_get::<String, _>(0).map_err(db)).collect()
    }

    /// Save a trade's settlement record.
    pub async fn save_settlement(&self, id: &str, s: &Settlement) -> Result<()> {
        let body = serde_json::to_string(s).map_err(db)?;
        if body.len() > MAX_RECORD_BYTES {
            return Err(Error::Database(format!("settlement record of {} bytes is too large", body.len())));
        }
        sqlx::query(
            "INSERT INTO ex_settlements (id, market, done, body) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO UPDATE SET done = excluded.done, body = excluded.body",
        )
        .bind(id)
        .bind(&s.market)
        .bind(s.done)
        .bind(body)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    /// Every settlement record.
    pub async fn settlements(&self) -> Result<Vec<(String, Settlement)>> {
        let rows = sqlx::query("SELECT id, body FROM ex_settlements").fetch_all(&self.pool).await.map_err(db)?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get(0).map_err(db)?;
                let body: String = r.try_get(1).map_err(db)?;
                Ok((id, serde_json::from_str(&body).map_err(db)?))
            })
            .collect()
    }

    /// Save the latest epoch announcement of a market.
    pub async fn save_epoch(&self, market: &str, created_at: u64, event_json: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO ex_epochs (market, created_at, event_json) VALUES ($1, $2, $3) \
             ON CONFLICT (market) DO UPDATE SET created_at = excluded.created_at, event_json = excluded.event_json \
             WHERE ex_epochs.created_at < excluded.created_at",
        )
        .bind(market)
        .bind(i64_of(created_at)?)
        .bind(event_json)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    /// Every stored epoch announcement (event JSON).
    pub async fn epochs(&self) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT event_json FROM ex_epochs").fetch_all(&self.pool).await.map_err(db)?;
        rows.iter().map(|r| r.try_get::<String, _>(0).map_err(db)).collect()
    }
}
