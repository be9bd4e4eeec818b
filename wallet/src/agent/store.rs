//! The agent's database (`agent.sqlite` in the wallet directory, through sqlx): offers, trades,
//! messages that arrived before their trade, the offer-key counter, and the nostr outbox.

use std::path::Path;

use sqlx::{AnyPool, Row};

use ehash_protocol::market::{ExchangeInfo, OfferTrade, Side, offer_remaining};

use super::record::{OfferRecord, Step, TradeRecord};
use crate::{Error, Result};

/// Largest JSON document stored (RUSTSEC-2024-0363 concerns values over 4 GiB).
pub const MAX_RECORD_BYTES: usize = 1 << 20;

fn db(e: impl std::fmt::Display) -> Error {
    Error::Database(format!("agent database: {e}"))
}

/// Funds promised to an offer or a trade (see [`Store::reservations`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// The mint the funds are at.
    pub mint_url: String,
    /// Their unit (an epoch unit, or `sat`).
    pub unit: String,
    /// How much.
    pub amount: u64,
    /// What holds them, for people (`offer ID` or `trade ID`).
    pub by: String,
}

impl Reservation {
    /// Whether this holds funds of `unit` at `mint_url` (URLs compared as mint URLs, units
    /// without regard to case).
    pub fn holds(&self, mint_url: &str, unit: &str) -> bool {
        self.unit.eq_ignore_ascii_case(unit) && same_mint(&self.mint_url, mint_url)
    }
}

/// Whether two strings name the same mint (as cdk normalises mint URLs).
fn same_mint(a: &str, b: &str) -> bool {
    match (a.parse::<cdk::mint_url::MintUrl>(), b.parse::<cdk::mint_url::MintUrl>()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// The agent's store.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
}

impl Store {
    /// Open (and create) `agent.sqlite` in `dir`.
    pub async fn open(dir: &Path) -> Result<Self> {
        let url = format!("sqlite://{}?mode=rwc", dir.join("agent.sqlite").display());
        let pool = ehash_outbox::connect(&url, 2).await.map_err(db)?;
        for ddl in [
            "CREATE TABLE IF NOT EXISTS agent_offers (d TEXT PRIMARY KEY, pubkey TEXT NOT NULL UNIQUE, data TEXT NOT NULL, created_at BIGINT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS agent_trades (id TEXT PRIMARY KEY, offer_d TEXT NOT NULL, final BOOLEAN NOT NULL, data TEXT NOT NULL, updated_at BIGINT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS agent_inbox (event_id TEXT PRIMARY KEY, trade_id TEXT NOT NULL, event_json TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS agent_meta (k TEXT PRIMARY KEY, v BIGINT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS agent_exchange (url TEXT PRIMARY KEY, info TEXT NOT NULL)",
        ] {
            sqlx::query(ddl).execute(&pool).await.map_err(db)?;
        }
        Ok(Self { pool })
    }

    /// The pool (shared with the outbox).
    pub fn pool(&self) -> AnyPool {
        self.pool.clone()
    }

    /// Remember what the exchange at `url` said about itself (its key, lot and relays), so the
    /// agent can settle its trades while the exchange is away.
    pub async fn save_exchange(&self, url: &str, info: &ExchangeInfo) -> Result<()> {
        let json = serde_json::to_string(info).map_err(db)?;
        sqlx::query("INSERT INTO agent_exchange (url, info) VALUES ($1, $2) ON CONFLICT (url) DO UPDATE SET info = excluded.info")
            .bind(url.trim_end_matches('/'))
            .bind(json)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    /// What the exchange at `url` last said about itself, if it was ever reached.
    pub async fn exchange(&self, url: &str) -> Result<Option<ExchangeInfo>> {
        let row = sqlx::query("SELECT info FROM agent_exchange WHERE url = $1").bind(url.trim_end_matches('/')).fetch_optional(&self.pool).await.map_err(db)?;
        let Some(row) = row else { return Ok(None) };
        let json: String = row.try_get("info").map_err(db)?;
        serde_json::from_str(&json).map(Some).map_err(db)
    }

    /// The offer-key index the next offer will take.
    pub async fn peek_key_index(&self) -> Result<u32> {
        let row = sqlx::query("SELECT v FROM agent_meta WHERE k = 'offer_key'").fetch_optional(&self.pool).await.map_err(db)?;
        let next: i64 = match row {
            Some(r) => r.try_get("v").map_err(db)?,
            None => 0,
        };
        u32::try_from(next).map_err(|_| db("offer key index out of range"))
    }

    /// Take the next offer-key index.
    pub async fn next_key_index(&self) -> Result<u32> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let row = sqlx::query("SELECT v FROM agent_meta WHERE k = 'offer_key'").fetch_optional(&mut *tx).await.map_err(db)?;
        let next: i64 = match row {
            Some(r) => r.try_get("v").map_err(db)?,
            None => 0,
        };
        sqlx::query("INSERT INTO agent_meta (k, v) VALUES ('offer_key', $1) ON CONFLICT (k) DO UPDATE SET v = excluded.v")
            .bind(next + 1)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        u32::try_from(next).map_err(|_| db("offer key index out of range"))
    }

    /// Every offer with what is left of it ([`Self::remaining`]); an offer is open while not
    /// cancelled, expired or filled. Works while an agent runs.
    pub async fn offer_states(&self) -> Result<Vec<super::OfferState>> {
        let now = super::now();
        let mut out = vec![];
        for offer in self.offers().await? {
            let remaining = self.remaining(&offer).await?;
            let open = !offer.canceled && offer.expiration > now && remaining > 0;
            out.push(super::OfferState { offer, remaining, open });
        }
        Ok(out)
    }

    /// What is left of an offer ([`offer_remaining`]).
    pub async fn remaining(&self, offer: &OfferRecord) -> Result<u64> {
        let trades = self.trades_of(&offer.d).await?;
        let trades = trades.iter().map(|t| OfferTrade { amount: t.terms.amount, failed: t.step == super::record::Step::Failed, locked: t.my_lock.is_some() });
        Ok(offer_remaining(offer.amount, trades))
    }

    /// What this wallet's offers and trades have promised and not locked yet, so it is not spent
    /// otherwise: each open sell offer's remaining ehash, each open buy offer's remaining price
    /// at its first sat mint, and each trade matched but not locked (its lock's inputs are set
    /// aside in the wallet once the lock is prepared). Works while an agent runs.
    pub async fn reservations(&self) -> Result<Vec<Reservation>> {
        let mut out = vec![];
        for s in self.offer_states().await? {
            if !s.open {
                continue;
            }
            let o = &s.offer;
            let (mint_url, unit, amount) = match o.side {
                Side::Sell => (o.mint_url.clone(), o.unit.clone(), s.remaining),
                Side::Buy => {
                    let Some(mint) = o.sat_mints.first() else { continue };
                    (mint.clone(), "sat".to_owned(), o.price.sats_for(s.remaining).unwrap_or(0))
                }
            };
            out.push(Reservation { mint_url, unit, amount, by: format!("offer {}", o.d) });
        }
        for t in self.trades(true).await? {
            if t.step != Step::Matched {
                continue;
            }
            let (mint_url, unit, amount) = match t.role {
                Side::Sell => (t.terms.mint_url.clone(), t.terms.unit.clone(), t.terms.amount),
                Side::Buy => (t.terms.sat_mint.clone(), "sat".to_owned(), t.terms.sats),
            };
            out.push(Reservation { mint_url, unit, amount, by: format!("trade {}", t.id) });
        }
        Ok(out)
    }

    /// Save an offer (insert or replace).
    pub async fn save_offer(&self, o: &OfferRecord) -> Result<()> {
        let data = serde_json::to_string(o).map_err(db)?;
        sqlx::query(
            "INSERT INTO agent_offers (d, pubkey, data, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (d) DO UPDATE SET data = excluded.data",
        )
        .bind(&o.d)
        .bind(&o.pubkey)
        .bind(data)
        .bind(o.created_at as i64)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    /// Every offer, newest first.
    pub async fn offers(&self) -> Result<Vec<OfferRecord>> {
        let rows = sqlx::query("SELECT data FROM agent_offers ORDER BY created_at DESC, d").fetch_all(&self.pool).await.map_err(db)?;
        rows.iter().map(|r| serde_json::from_str(&r.try_get::<String, _>("data").map_err(db)?).map_err(db)).collect()
    }

    /// One offer by id.
    pub async fn offer(&self, d: &str) -> Result<Option<OfferRecord>> {
        let row = sqlx::query("SELECT data FROM agent_offers WHERE d = $1").bind(d).fetch_optional(&self.pool).await.map_err(db)?;
        row.map(|r| serde_json::from_str(&r.try_get::<String, _>("data").map_err(db)?).map_err(db)).transpose()
    }

    /// Save a trade (insert or replace), before any network action that depends on it.
    pub async fn save_trade(&self, t: &TradeRecord) -> Result<()> {
        let data = serde_json::to_string(t).map_err(db)?;
        if data.len() > MAX_RECORD_BYTES {
            return Err(db(format!("trade {} record is larger than {MAX_RECORD_BYTES} bytes", t.id)));
        }
        sqlx::query(
            "INSERT INTO agent_trades (id, offer_d, final, data, updated_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (id) DO UPDATE SET final = excluded.final, data = excluded.data, updated_at = excluded.updated_at",
        )
        .bind(&t.id)
        .bind(&t.offer_d)
        .bind(t.step.is_final())
        .bind(data)
        .bind(t.updated_at as i64)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    /// One trade.
    pub async fn trade(&self, id: &str) -> Result<Option<TradeRecord>> {
        let row = sqlx::query("SELECT data FROM agent_trades WHERE id = $1").bind(id).fetch_optional(&self.pool).await.map_err(db)?;
        row.map(|r| serde_json::from_str(&r.try_get::<String, _>("data").map_err(db)?).map_err(db)).transpose()
    }

    /// Trades, newest first; only unfinished ones if `open_only`.
    pub async fn trades(&self, open_only: bool) -> Result<Vec<TradeRecord>> {
        let sql = if open_only {
            "SELECT data FROM agent_trades WHERE final = FALSE ORDER BY updated_at DESC, id"
        } else {
            "SELECT data FROM agent_trades ORDER BY updated_at DESC, id"
        };
        let rows = sqlx::query(sql).fetch_all(&self.pool).await.map_err(db)?;
        rows.iter().map(|r| serde_json::from_str(&r.try_get::<String, _>("data").map_err(db)?).map_err(db)).collect()
    }

    /// Trades of one offer.
    pub async fn trades_of(&self, offer_d: &str) -> Result<Vec<TradeRecord>> {
        let rows = sqlx::query("SELECT data FROM agent_trades WHERE offer_d = $1").bind(offer_d).fetch_all(&self.pool).await.map_err(db)?;
        rows.iter().map(|r| serde_json::from_str(&r.try_get::<String, _>("data").map_err(db)?).map_err(db)).collect()
    }

    /// Keep a message that arrived before its trade.
    pub async fn stash(&self, trade_id: &str, event_id: &str, event_json: &str) -> Result<()> {
        if event_json.len() > MAX_RECORD_BYTES {
            return Ok(());
        }
        sqlx::query("INSERT INTO agent_inbox (event_id, trade_id, event_json) VALUES ($1, $2, $3) ON CONFLICT (event_id) DO NOTHING")
            .bind(event_id)
            .bind(trade_id)
            .bind(event_json)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    /// Take the stashed messages of a trade.
    pub async fn unstash(&self, trade_id: &str) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT event_json FROM agent_inbox WHERE trade_id = $1").bind(trade_id).fetch_all(&self.pool).await.map_err(db)?;
        let out = rows.iter().map(|r| r.try_get::<String, _>("event_json").map_err(db)).collect::<Result<Vec<_>>>()?;
        sqlx::query("DELETE FROM agent_inbox WHERE trade_id = $1").bind(trade_id).execute(&self.pool).await.map_err(db)?;
        Ok(out)
    }
}
