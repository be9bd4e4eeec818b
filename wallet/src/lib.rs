//! # ehash-wallet
//!
//! The user's side of ehash. [`MinerWallet`] keeps one cdk wallet per epoch unit of a pool's
//! mint (all in one SQLite file), creates NUT-20-locked ehash quotes for the active epoch and
//! mints whatever the pool has credited to them. [`seed`] holds the wallet's BIP39 seed.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod seed;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use cdk::amount::SplitTarget;
use cdk::mint_url::MintUrl;
use cdk::nuts::{CurrencyUnit, PaymentMethod};
use cdk::wallet::{Wallet, WalletBuilder};
use cdk_common::database::WalletDatabase;
use cdk_common::wallet::KeysetLoadPolicy;
use cdk_sqlite::WalletSqliteDatabase;
use serde::Deserialize;
use tokio::sync::Mutex;

/// The ehash payment method name.
pub const EHASH_METHOD: &str = "ehash";

/// Wallet errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// cdk wallet error.
    #[error("wallet: {0}")]
    Cdk(#[from] cdk::Error),
    /// Wallet database error.
    #[error("wallet database: {0}")]
    Database(String),
    /// The pool's HTTP API failed or answered something unexpected.
    #[error("pool {url}: {reason}")]
    Pool {
        /// The URL asked.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// Seed file problems.
    #[error("{0}")]
    Seed(String),
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One epoch as the pool's `/v1/ehash/epochs` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PoolEpoch {
    /// Epoch number.
    pub epoch: u32,
    /// Unit.
    pub unit: String,
    /// Keyset id.
    pub keyset_id: Option<String>,
    /// `active`, `closed`, …
    pub state: String,
    /// Total credited once closed.
    pub issued: Option<u64>,
    /// Share count once closed.
    pub shares: Option<u64>,
}

/// The pool's epoch list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PoolEpochs {
    /// The pool's nostr public key (hex).
    pub pool_pubkey: String,
    /// log2 of the hashes per ehash unit.
    pub unit_log2_hashes: u32,
    /// The active epoch.
    pub current: PoolEpoch,
    /// All epochs.
    pub epochs: Vec<PoolEpoch>,
}

/// Ask a pool mint for its epochs.
pub async fn pool_epochs(mint_url: &str) -> Result<PoolEpochs> {
    let url = format!("{}/v1/ehash/epochs", mint_url.trim_end_matches('/'));
    let err = |reason: String| Error::Pool { url: url.clone(), reason };
    let resp = bitreq::get(url.as_str()).with_timeout(15).send_async().await.map_err(|e| err(e.to_string()))?;
    if resp.status_code != 200 {
        return Err(err(format!("HTTP {}", resp.status_code)));
    }
    resp.json::<PoolEpochs>().map_err(|e| err(format!("unexpected answer: {e}")))
}

/// A miner's wallet at one pool mint: one cdk wallet per epoch unit.
pub struct MinerWallet {
    mint_url: MintUrl,
    seed: [u8; 64],
    store: Arc<WalletSqliteDatabase>,
    wallets: Mutex<HashMap<String, Wallet>>,
}

impl std::fmt::Debug for MinerWallet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MinerWallet").field("mint_url", &self.mint_url).finish_non_exhaustive()
    }
}

impl MinerWallet {
    /// Open (or create) the wallet database at `db_path`.
    pub async fn open(db_path: &Path, mint_url: &str, seed: [u8; 64]) -> Result<Self> {
        let mint_url: MintUrl = mint_url.parse().map_err(|e| Error::Pool { url: mint_url.to_owned(), reason: format!("not a mint URL: {e}") })?;
        let store = WalletSqliteDatabase::new(&db_path.to_path_buf()).await.map_err(|e| Error::Database(e.to_string()))?;
        Ok(Self { mint_url, seed, store: Arc::new(store), wallets: Mutex::new(HashMap::new()) })
    }

    /// The mint URL.
    pub fn mint_url(&self) -> String {
        self.mint_url.to_string()
    }

    /// The cdk wallet for `unit` (created on first use).
    pub async fn wallet(&self, unit: &str) -> Result<Wallet> {
        let mut wallets = self.wallets.lock().await;
        if let Some(w) = wallets.get(unit) {
            return Ok(w.clone());
        }
        let w = WalletBuilder::new()
            .mint_url(self.mint_url.clone())
            .unit(CurrencyUnit::custom(unit))
            .localstore(self.store.clone())
            .seed(self.seed)
            .without_rate_limiting()
            .build()?;
        // The keyset cache is shared by every unit of this mint and may predate this epoch.
        w.keysets(KeysetLoadPolicy::Refresh).await.map_err(|e| match e {
            cdk::Error::UnknownKeySet => Error::Pool {
                url: self.mint_url.to_string(),
                reason: format!("the mint has no keyset for unit {unit}"),
            },
            e => Error::Cdk(e),
        })?;
        wallets.insert(unit.to_owned(), w.clone());
        Ok(w)
    }

    /// Create a NUT-20-locked ehash quote in `unit`; returns its id.
    pub async fn create_quote(&self, unit: &str) -> Result<String> {
        let w = self.wallet(unit).await?;
        // An ehash quote accumulates credits share by share; its amount is only informational,
        // but cdk's wallet requires one for custom methods.
        let q = w.mint_quote(PaymentMethod::Custom(EHASH_METHOD.into()), Some(1.into()), None, None).await?;
        Ok(q.id)
    }

    /// The ehash quote this wallet already holds in `unit`, or a new one.
    pub async fn quote_for(&self, unit: &str) -> Result<String> {
        if let Some(q) = self.ehash_quotes().await?.into_iter().find(|(u, _)| u == unit) {
            return Ok(q.1);
        }
        self.create_quote(unit).await
    }

    /// Every ehash quote in the wallet's store, as `(unit, quote id)`.
    pub async fn ehash_quotes(&self) -> Result<Vec<(String, String)>> {
        let quotes = self.store.get_mint_quotes().await.map_err(|e| Error::Database(e.to_string()))?;
        Ok(quotes
            .into_iter()
            .filter(|q| q.mint_url == self.mint_url && q.payment_method == PaymentMethod::Custom(EHASH_METHOD.into()))
            .map(|q| (q.unit.to_string(), q.id))
            .collect())
    }

    /// Mint the credited, unminted ehash of every quote; returns the total minted.
    pub async fn mint_all_credited(&self) -> Result<u64> {
        let mut total = 0u64;
        for (unit, quote) in self.ehash_quotes().await? {
            total = total.saturating_add(self.mint_credited(&unit, &quote).await?);
        }
        Ok(total)
    }

    /// Mint whatever has been credited to `quote_id` and not yet minted; returns the amount.
    pub async fn mint_credited(&self, unit: &str, quote_id: &str) -> Result<u64> {
        let w = self.wallet(unit).await?;
        let q = w.check_mint_quote_status(quote_id).await?;
        let mintable = q.amount_paid.to_u64().saturating_sub(q.amount_issued.to_u64());
        if mintable == 0 {
            return Ok(0);
        }
        let proofs = w.mint(quote_id, SplitTarget::default(), None).await?;
        let mut total = 0u64;
        for p in &proofs {
            total = total.saturating_add(p.amount.to_u64());
        }
        Ok(total)
    }

    /// Finish or roll back any operation a crash interrupted (cdk's saga recovery), in every unit
    /// the wallet holds quotes in. Call at start.
    pub async fn recover(&self) -> Result<()> {
        for (unit, _) in self.ehash_quotes().await? {
            let report = self.wallet(&unit).await?.recover_incomplete_sagas().await?;
            tracing::debug!(%unit, ?report, "wallet recovery");
        }
        Ok(())
    }

    /// Unspent balance per unit (every unit the wallet holds quotes or proofs in).
    pub async fn balances(&self) -> Result<BTreeMap<String, u64>> {
        for (unit, _) in self.ehash_quotes().await? {
            self.wallet(&unit).await?;
        }
        let wallets: Vec<(String, Wallet)> = self.wallets.lock().await.iter().map(|(u, w)| (u.clone(), w.clone())).collect();
        let mut out = BTreeMap::new();
        for (unit, w) in wallets {
            out.insert(unit, w.total_balance().await?.to_u64());
        }
        Ok(out)
    }
}
