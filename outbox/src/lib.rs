//! # ehash-outbox
//!
//! The nostr side every ehash service shares: a durable outbox (below) and a resilient
//! subscription, [`watch`], and periodic rounds that stop with the service, [`rounds`].
//!
//! A durable nostr outbox over any sqlx `Any` database (SQLite or PostgreSQL). Publishing writes
//! the signed event to the outbox first; a background task delivers every event to every relay
//! and records each relay's acknowledgement, retrying a relay that is down or refuses until it
//! accepts the current version. Nothing that publishes ever waits for a relay, and a crash
//! after publishing still delivers.
//!
//! Events are keyed: an addressable event by its address `kind:pubkey:d` (a new version
//! replaces the stored one and is signed with a `created_at` strictly greater than the last, so
//! relays never drop it as a same-second tie), any other event by its id.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod rounds;
pub mod watch;

use std::time::Duration;

use sqlx::Executor;
use sqlx::any::AnyPoolOptions;

use nostr_sdk::prelude::*;
use sqlx::{AnyPool, Row};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Open the database a service keeps its outbox (and its own tables) in: PostgreSQL for a
/// `postgres://` URL, else SQLite (`sqlite://…?mode=rwc`) in WAL mode with `synchronous = FULL`
/// (a committed write survives a power cut), a busy timeout, foreign keys on and a 16 MiB page
/// cache per connection.
pub async fn connect(url: &str, max_connections: u32) -> std::result::Result<AnyPool, sqlx::Error> {
    open(url, max_connections, false).await
}

/// [`connect`] for a database written continuously (the share ledger): on SQLite, a commit does
/// not also copy the write-ahead log back into the database (which would stall the writer for
/// as long as that takes); a task of its own does, every [`CHECKPOINT_INTERVAL`], until the pool
/// closes.
pub async fn connect_busy(url: &str, max_connections: u32) -> std::result::Result<AnyPool, sqlx::Error> {
    let pool = open(url, max_connections, true).await?;
    if url.starts_with("sqlite:") {
        let p = pool.clone();
        tokio::spawn(async move {
            while !p.is_closed() {
                tokio::time::sleep(CHECKPOINT_INTERVAL).await;
                if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&p).await
                    && !p.is_closed()
                {
                    tracing::warn!(error = %e, "checkpointing the write-ahead log");
                }
            }
        });
    }
    Ok(pool)
}

/// How often [`connect_busy`] copies the write-ahead log into the database.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(500);

async fn open(url: &str, max_connections: u32, own_checkpoints: bool) -> std::result::Result<AnyPool, sqlx::Error> {
    sqlx::any::install_default_drivers();
    let sqlite = url.starts_with("sqlite:");
    AnyPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(30))
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if sqlite {
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA synchronous = FULL").await?;
                    conn.execute("PRAGMA busy_timeout = 10000").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    conn.execute("PRAGMA cache_size = -16384").await?;
                    if own_checkpoints {
                        conn.execute("PRAGMA wal_autocheckpoint = 0").await?;
                    }
                }
                Ok(())
            })
        })
        .connect(url)
        .await
}

/// Largest event JSON stored (RUSTSEC-2024-0363 concerns values over 4 GiB).
pub const MAX_EVENT_JSON_BYTES: usize = 256 * 1024;
/// How long to wait before retrying relays that failed.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(5);

/// Outbox errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database failed.
    #[error("outbox database: {0}")]
    Database(#[from] sqlx::Error),
    /// An event that cannot be signed or read back.
    #[error("outbox event: {0}")]
    Event(String),
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Its key: the address of an addressable event, else its id.
    pub key: String,
    /// The current event id.
    pub event_id: String,
    /// The signed event JSON.
    pub event_json: String,
    /// Its `created_at`.
    pub created_at: u64,
}

/// The outbox.
#[derive(Debug, Clone)]
pub struct Outbox {
    pool: AnyPool,
    wake: std::sync::Arc<Notify>,
}

impl Outbox {
    /// Create the outbox tables if they do not exist (portable SQL).
    pub async fn open(pool: AnyPool) -> Result<Self> {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS ehash_outbox (\
             slot TEXT PRIMARY KEY, event_id TEXT NOT NULL, event_json TEXT NOT NULL, created_at BIGINT NOT NULL)",
        )
        .execute(&pool)
        .await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS ehash_outbox_deliveries (\
             slot TEXT NOT NULL, relay TEXT NOT NULL, event_id TEXT NOT NULL, PRIMARY KEY (slot, relay))",
        )
        .execute(&pool)
        .await?;
        Ok(Self { pool, wake: std::sync::Arc::new(Notify::new()) })
    }

    /// The stored version of `key`.
    pub async fn get(&self, key: &str) -> Result<Option<Stored>> {
        let row = sqlx::query("SELECT slot, event_id, event_json, created_at FROM ehash_outbox WHERE slot = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| stored_from_row(&r)).transpose()
    }

    /// Sign `builder` with `keys` as the new version of the addressable event at `address`,
    /// with a `created_at` above the previous version's, and queue it; unless the stored
    /// version already has the same content and tags, in which case that one is returned.
    pub async fn publish_addressable(&self, address: &str, builder: EventBuilder, keys: &Keys) -> Result<Event> {
        let stored = self.get(address).await?;
        let unsigned = builder.clone().finalize_unsigned(keys.public_key());
        let mut created_at = Timestamp::now().as_secs();
        if let Some(prev) = &stored {
            let prev_ev = Event::from_json(&prev.event_json).map_err(|e| Error::Event(format!("stored event {address}: {e}")))?;
            if prev_ev.content == unsigned.content && prev_ev.tags == unsigned.tags {
                return Ok(prev_ev);
            }
            created_at = created_at.max(prev.created_at + 1);
        }
        let event = builder
            .custom_created_at(Timestamp::from_secs(created_at))
            .finalize(keys)
            .map_err(|e| Error::Event(format!("signing {address}: {e}")))?;
        self.store(address, &event).await?;
        Ok(event)
    }

    /// Queue an already-signed event under its id.
    pub async fn queue(&self, event: &Event) -> Result<()> {
        self.store(&event.id.to_hex(), event).await
    }

    async fn store(&self, key: &str, event: &Event) -> Result<()> {
        let json = event.as_json();
        if json.len() > MAX_EVENT_JSON_BYTES {
            return Err(Error::Event(format!("{key} is larger than {MAX_EVENT_JSON_BYTES} bytes")));
        }
        let created_at = i64::try_from(event.created_at.as_secs()).map_err(|_| Error::Event("created_at out of range".into()))?;
        sqlx::query(
            "INSERT INTO ehash_outbox (slot, event_id, event_json, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (slot) DO UPDATE SET event_id = excluded.event_id, event_json = excluded.event_json, created_at = excluded.created_at",
        )
        .bind(key)
        .bind(event.id.to_hex())
        .bind(json)
        .bind(created_at)
        .execute(&self.pool)
        .await?;
        self.wake.notify_one();
        Ok(())
    }

    /// Every stored event, by key.
    pub async fn all(&self) -> Result<Vec<Stored>> {
        let rows = sqlx::query("SELECT slot, event_id, event_json, created_at FROM ehash_outbox ORDER BY slot").fetch_all(&self.pool).await?;
        rows.iter().map(stored_from_row).collect()
    }

    /// Events `relay` has not acknowledged in their current version, oldest first.
    pub async fn undelivered(&self, relay: &str, limit: i64) -> Result<Vec<Stored>> {
        let rows = sqlx::query(
            "SELECT o.slot, o.event_id, o.event_json, o.created_at FROM ehash_outbox o \
             LEFT JOIN ehash_outbox_deliveries d ON d.slot = o.slot AND d.relay = $1 \
             WHERE d.event_id IS NULL OR d.event_id <> o.event_id ORDER BY o.created_at, o.slot LIMIT $2",
        )
        .bind(relay)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(stored_from_row).collect()
    }

    /// Record that `relay` accepted `event_id` as the version of `key`.
    pub async fn mark_delivered(&self, key: &str, relay: &str, event_id: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO ehash_outbox_deliveries (slot, relay, event_id) VALUES ($1, $2, $3) \
             ON CONFLICT (slot, relay) DO UPDATE SET event_id = excluded.event_id",
        )
        .bind(key)
        .bind(relay)
        .bind(event_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Deliver the outbox to `relays` until `cancel` fires.
    pub fn spawn_delivery(&self, relays: Vec<String>, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
        let outbox = self.clone();
        tokio::spawn(async move {
            if relays.is_empty() {
                return;
            }
            let client = Client::default();
            let mut urls = Vec::new();
            for r in &relays {
                match RelayUrl::parse(r) {
                    Ok(u) => {
                        if let Err(e) = client.add_relay(&u).await {
                            tracing::warn!(relay = %r, error = %e, "cannot add relay");
                        }
                        urls.push(u);
                    }
                    Err(e) => tracing::warn!(relay = %r, error = %e, "ignoring relay with an invalid URL"),
                }
            }
            client.connect().await;
            loop {
                let mut pending = false;
                for url in &urls {
                    match outbox.deliver_to(&client, url).await {
                        Ok(all) => pending |= !all,
                        Err(e) => {
                            pending = true;
                            tracing::warn!(relay = %url, error = %e, "outbox delivery");
                        }
                    }
                }
                let wait = if pending { RETRY_INTERVAL } else { Duration::from_secs(300) };
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = outbox.wake.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            client.shutdown().await;
        })
    }

    /// Send every event the relay has not acknowledged in its current version. Returns whether
    /// the relay is up to date.
    async fn deliver_to(&self, client: &Client, url: &RelayUrl) -> Result<bool> {
        let relay = url.to_string();
        loop {
            let batch = self.undelivered(&relay, 200).await?;
            if batch.is_empty() {
                return Ok(true);
            }
            let mut progressed = false;
            for s in &batch {
                let event = Event::from_json(&s.event_json).map_err(|e| Error::Event(format!("stored event {}: {e}", s.key)))?;
                match client.send_event(&event).to([url]).save_into_database(false).ok_timeout(Duration::from_secs(5)).await {
                    Ok(out) if out.success.contains_key(url) => {
                        self.mark_delivered(&s.key, &relay, &s.event_id).await?;
                        progressed = true;
                    }
                    Ok(out) => {
                        let why = out.failed.get(url).cloned().unwrap_or_else(|| "no answer".into());
                        if why.starts_with("duplicate") {
                            self.mark_delivered(&s.key, &relay, &s.event_id).await?;
                            progressed = true;
                        } else {
                            tracing::warn!(relay = %relay, key = %s.key, reason = %why, "relay did not accept the event; will retry");
                        }
                    }
                    Err(e) => {
                        tracing::debug!(relay = %relay, error = %e, "relay unreachable; will retry");
                        return Ok(false);
                    }
                }
            }
            if !progressed {
                return Ok(false);
            }
        }
    }
}

fn stored_from_row(r: &sqlx::any::AnyRow) -> Result<Stored> {
    let created_at: i64 = r.try_get("created_at")?;
    Ok(Stored {
        key: r.try_get("slot")?,
        event_id: r.try_get("event_id")?,
        event_json: r.try_get("event_json")?,
        created_at: u64::try_from(created_at).map_err(|_| Error::Event("negative created_at".into()))?,
    })
}
