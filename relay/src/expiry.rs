//! NIP-40: the relay refuses expired events and never serves them; this index also deletes
//! them from disk. Every accepted event with an `expiration` tag is recorded here (SQLite,
//! `expiry.sqlite` in the data directory) and a sweeper deletes those whose time has come.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use nostr_sdk::prelude::*;
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use tokio_util::sync::CancellationToken;

/// Events deleted per sweep step.
const SWEEP_BATCH: i64 = 500;

/// The expiration index.
#[derive(Debug, Clone)]
pub struct ExpiryIndex {
    pool: SqlitePool,
}

impl ExpiryIndex {
    /// Open or create the index in `dir`.
    pub async fn open(dir: &Path) -> Result<Self, sqlx::Error> {
        let opts = SqliteConnectOptions::new().filename(dir.join("expiry.sqlite")).create_if_missing(true);
        let pool = SqlitePoolOptions::new().max_connections(2).connect_with(opts).await?;
        sqlx::query("CREATE TABLE IF NOT EXISTS expirations (id TEXT PRIMARY KEY, expires_at INTEGER NOT NULL)")
            .execute(&pool)
            .await?;
        sqlx::query("CREATE INDEX IF NOT EXISTS expirations_at ON expirations (expires_at)")
            .execute(&pool)
            .await?;
        Ok(Self { pool })
    }

    /// Record that `id` expires at `at` (unix seconds).
    pub async fn record(&self, id: &EventId, at: u64) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT OR IGNORE INTO expirations (id, expires_at) VALUES (?, ?)")
            .bind(id.to_hex())
            .bind(i64::try_from(at).unwrap_or(i64::MAX))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Delete every event that expired at or before `now` from `db`; returns how many.
    pub async fn sweep(&self, db: &Arc<dyn NostrDatabase>, now: u64) -> Result<usize, String> {
        let mut total = 0;
        loop {
            let rows = sqlx::query("SELECT id FROM expirations WHERE expires_at <= ? LIMIT ?")
                .bind(i64::try_from(now).unwrap_or(i64::MAX))
                .bind(SWEEP_BATCH)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| e.to_string())?;
            if rows.is_empty() {
                return Ok(total);
            }
            let ids: Vec<String> = rows.iter().filter_map(|r| r.try_get::<String, _>("id").ok()).collect();
            let event_ids: Vec<EventId> = ids.iter().filter_map(|i| EventId::from_hex(i).ok()).collect();
            db.delete(Filter::new().ids(event_ids)).await.map_err(|e| e.to_string())?;
            for id in &ids {
                sqlx::query("DELETE FROM expirations WHERE id = ?")
                    .bind(id)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            total += ids.len();
        }
    }

    /// Sweep every `every` until cancelled.
    pub fn spawn_sweeper(self: Arc<Self>, db: Arc<dyn NostrDatabase>, every: Duration, cancel: CancellationToken) {
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(every) => {
                        match self.sweep(&db, Timestamp::now().as_secs()).await {
                            Ok(0) => {}
                            Ok(n) => tracing::info!(deleted = n, "purged expired events"),
                            Err(e) => tracing::warn!(error = %e, "expiry sweep"),
                        }
                    }
                }
            }
        });
    }
}
