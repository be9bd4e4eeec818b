//! # ehash-wallet
//!
//! The user's side of ehash. [`MinerWallet`] keeps one cdk wallet per epoch unit of a pool's
//! mint (all in one SQLite file): it creates NUT-20-locked ehash quotes for the active epoch and
//! mints whatever the pool credited to them, sends and receives tokens (checking DLEQ proofs
//! against the keysets the pool announced on nostr, [`announced`]), lists history, restores from
//! its seed (NUT-09/13), and backs up to and restores from nostr as NIP-60 events ([`nip60`]).
//! [`seed`] holds the wallet's BIP39 seed.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod agent;
pub mod announced;
pub mod audit;
pub mod durable;
pub mod htlc;
pub mod nip60;
pub mod seed;
pub mod transport;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use cdk::amount::SplitTarget;
use cdk::mint_url::MintUrl;
use cdk::nuts::{CurrencyUnit, PaymentMethod, PublicKey, SecretKey, SpendingConditions, Token};
use cdk::wallet::{ReceiveOptions, SendOptions, Wallet, WalletBuilder};
use cdk_common::database::WalletDatabase;
use cdk_common::wallet::KeysetLoadPolicy;
use cdk_sqlite::WalletSqliteDatabase;
use serde::Deserialize;
use tokio::sync::Mutex;

/// The ehash payment method name.
pub const EHASH_METHOD: &str = "ehash";
pub use ehash_protocol::epoch::REDEEM_METHOD;

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
    /// The exchange's HTTP API failed or answered something unexpected.
    #[error("exchange {url}: {reason}")]
    Exchange {
        /// The URL asked.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// Seed file problems.
    #[error("{0}")]
    Seed(String),
    /// A token that cannot be read.
    #[error("invalid token: {0}")]
    InvalidToken(String),
    /// A token from another mint.
    #[error("the token is from {token_mint}; this wallet holds ehash of {ours} (use a wallet for that mint)")]
    ForeignMint {
        /// The token's mint.
        token_mint: String,
        /// This wallet's mint.
        ours: String,
    },
    /// A token whose proofs were already spent (or already received).
    #[error("the token was already spent or already received; nothing changed")]
    AlreadySpent,
    /// A proof that does not check out against the pool's announced keysets: a keyset or amount
    /// the pool never announced, or a DLEQ proof that does not verify.
    #[error("proof of {amount} in keyset {keyset} does not check out against the pool's announced keys: {reason}; nothing was received")]
    BadDleq {
        /// The keyset.
        keyset: String,
        /// The proof's amount.
        amount: u64,
        /// Why.
        reason: String,
    },
    /// Not enough balance.
    #[error("insufficient balance in {unit}: have {have}, need {need}")]
    Insufficient {
        /// Unit.
        unit: String,
        /// Available.
        have: u64,
        /// Asked for.
        need: u64,
    },
    /// The balance is there but backs open offers.
    #[error(
        "{need} {unit} at {mint} wanted, but {reserved} of the {have} held there is promised to {} (`ehash trade status`): cancel or shrink those offers first (`ehash trade cancel ID`); what a matched trade holds is free again once it settles or fails",
        by.join(", ")
    )]
    Reserved {
        /// Unit.
        unit: String,
        /// The mint.
        mint: String,
        /// Held.
        have: u64,
        /// Held for offers and trades.
        reserved: u64,
        /// Asked for.
        need: u64,
        /// Who holds it (`offer ID`, `trade ID`).
        by: Vec<String>,
    },
    /// nostr problems (backup, announcements).
    #[error("nostr: {0}")]
    Nostr(String),
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
    /// What the epoch pays out in total (sats), once closed on a block.
    #[serde(default)]
    pub payout: Option<u64>,
    /// When a redeemable epoch expires.
    #[serde(default)]
    pub expires_at: Option<u64>,
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

/// What a sat deposit did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DepositOutcome {
    /// Minted this many sats.
    Minted(u64),
    /// The invoice was not paid in time.
    Unpaid {
        /// The bolt11 invoice to pay.
        invoice: String,
        /// The quote id.
        quote: String,
    },
}

/// A Lightning payment made from the wallet's sats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withdrawal {
    /// Sats the invoice asked for.
    pub amount: u64,
    /// Routing fee paid, sats.
    pub fee_paid: u64,
    /// The payment preimage, when the mint returns it.
    pub preimage: Option<String>,
}

/// A miner's wallet at one pool mint: one cdk wallet per epoch unit (and, for trading, wallets at
/// sat mints, in the same database).
pub struct MinerWallet {
    mint_url: MintUrl,
    seed: [u8; 64],
    store: Arc<WalletSqliteDatabase>,
    wallets: Mutex<HashMap<(String, String), Wallet>>,
    /// The trade agent's store beside this wallet, whose offers and trades reserve funds.
    reservations: std::sync::RwLock<Option<agent::store::Store>>,
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
        // a trade agent's offers beside the wallet hold funds even when no agent runs
        let agent_dir = db_path.parent().unwrap_or(Path::new("."));
        let reservations = match agent_dir.join("agent.sqlite").exists() {
            true => Some(agent::store::Store::open(agent_dir).await?),
            false => None,
        };
        Ok(Self { mint_url, seed, store: Arc::new(store), wallets: Mutex::new(HashMap::new()), reservations: std::sync::RwLock::new(reservations) })
    }

    /// Reserve for the offers and trades in `store` (the agent of this wallet does this).
    pub(crate) fn reserve_for(&self, store: agent::store::Store) {
        *self.reservations.write().unwrap_or_else(|p| p.into_inner()) = Some(store);
    }

    /// What open offers and unlocked trades hold of `unit` at `mint_url`: the total and who
    /// holds it.
    pub async fn reserved_at(&self, mint_url: &str, unit: &str) -> Result<(u64, Vec<String>)> {
        let store = self.reservations.read().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(store) = store else { return Ok((0, vec![])) };
        let mut total = 0u64;
        let mut by = vec![];
        for r in store.reservations().await?.into_iter().filter(|r| r.holds(mint_url, unit)) {
            total = total.saturating_add(r.amount);
            by.push(r.by);
        }
        Ok((total, by))
    }

    /// What of `unit` at `mint_url` is set aside for this wallet's own swaps in flight (proofs
    /// reserved or pending): it comes back as change, or is spent, when they finish.
    pub async fn in_flight(&self, mint_url: &str, unit: &str) -> Result<u64> {
        let w = self.wallet_at(mint_url, unit).await?;
        let states = Some(vec![cdk::nuts::State::Reserved, cdk::nuts::State::Pending]);
        let proofs = self.store.get_proofs(Some(w.mint_url.clone()), Some(w.unit.clone()), states, None).await.map_err(|e| Error::Database(e.to_string()))?;
        Ok(proofs.iter().map(|p| p.proof.amount.to_u64()).sum())
    }

    /// Check that `need` of `unit` at `mint_url` can be spent without touching what open offers
    /// hold: [`Error::Insufficient`] if the wallet has too little, [`Error::Reserved`] if the
    /// rest backs offers.
    pub async fn ensure_free(&self, mint_url: &str, unit: &str, need: u64) -> Result<()> {
        let have = self.balance_at(mint_url, unit).await?;
        if have < need {
            return Err(Error::Insufficient { unit: unit.to_owned(), have, need });
        }
        let (reserved, by) = self.reserved_at(mint_url, unit).await?;
        if have.saturating_sub(reserved) < need {
            return Err(Error::Reserved { unit: unit.to_owned(), mint: mint_url.to_owned(), have, reserved, need, by });
        }
        Ok(())
    }

    /// The mint URL.
    pub fn mint_url(&self) -> String {
        self.mint_url.to_string()
    }

    /// The wallet seed (NUT-13 outputs, offer keys).
    pub(crate) fn seed(&self) -> &[u8; 64] {
        &self.seed
    }

    /// The cdk wallet for `unit` at the pool's mint (created on first use).
    pub async fn wallet(&self, unit: &str) -> Result<Wallet> {
        self.wallet_at(&self.mint_url.to_string(), unit).await
    }

    /// The cdk wallet for `unit` at any mint (e.g. sats at a sat mint), sharing this wallet's
    /// seed and database.
    pub async fn wallet_at(&self, mint_url: &str, unit: &str) -> Result<Wallet> {
        let parsed: MintUrl = mint_url.parse().map_err(|e| Error::Pool { url: mint_url.to_owned(), reason: format!("not a mint URL: {e}") })?;
        let key = (parsed.to_string(), unit.to_owned());
        let mut wallets = self.wallets.lock().await;
        if let Some(w) = wallets.get(&key) {
            return Ok(w.clone());
        }
        let w = WalletBuilder::new()
            .mint_url(parsed.clone())
            .unit(CurrencyUnit::from_str(unit).unwrap_or_else(|_| CurrencyUnit::custom(unit)))
            .localstore(self.store.clone())
            .seed(self.seed)
            .without_rate_limiting()
            .client(transport::client(parsed.clone()))
            .build()?;
        // The keyset cache is shared by every unit of this mint and may predate this epoch.
        w.keysets(KeysetLoadPolicy::Refresh).await.map_err(|e| match e {
            cdk::Error::UnknownKeySet => Error::Pool { url: parsed.to_string(), reason: format!("the mint has no keyset for unit {unit}") },
            e => Error::Pool { url: parsed.to_string(), reason: e.to_string() },
        })?;
        wallets.insert(key, w.clone());
        Ok(w)
    }

    /// Buy `amount` sats at a sat mint over Lightning (NUT-04 bolt11): create the quote, wait up to
    /// `wait` for the invoice to be paid (a development sat mint pays its own invoices), then
    /// mint. Returns the invoice if it was not paid in time (nothing is lost: mint it later with
    /// the same command).
    pub async fn deposit(&self, sat_mint: &str, amount: u64, wait: std::time::Duration) -> Result<DepositOutcome> {
        let w = self.wallet_at(sat_mint, "sat").await?;
        let q = w.mint_quote(PaymentMethod::BOLT11, Some(amount.into()), None, None).await?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let s = w.check_mint_quote_status(&q.id).await?;
            if s.amount_paid.to_u64() > s.amount_issued.to_u64() || s.state == cdk::nuts::MintQuoteState::Paid {
                let proofs = w.mint(&q.id, SplitTarget::default(), None).await?;
                return Ok(DepositOutcome::Minted(proofs.iter().map(|p| p.amount.to_u64()).sum()));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(DepositOutcome::Unpaid { invoice: q.request, quote: q.id });
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    /// Pay a bolt11 `invoice` with this wallet's sats at `mint` (NUT-05): the sat mint, or the
    /// pool mint for redeemed sats when its operator set up Lightning. Refused before anything
    /// is spent when the sats there do not cover the invoice and the mint's fee reserve; the
    /// part of the reserve the payment did not use comes back as change.
    pub async fn withdraw(&self, mint: &str, invoice: &str) -> Result<Withdrawal> {
        let w = self.wallet_at(mint, "sat").await?;
        let q = w.melt_quote(PaymentMethod::BOLT11, invoice.to_owned(), None, None).await?;
        let need = q.amount.to_u64().saturating_add(q.fee_reserve.to_u64());
        self.ensure_free(mint, "sat", need).await?;
        let done = w.prepare_melt(&q.id, std::collections::HashMap::new()).await?.confirm().await?;
        if done.state() != cdk::nuts::MeltQuoteState::Paid {
            return Err(Error::Pool { url: mint.to_owned(), reason: format!("the Lightning payment ended {}; the sats stay in the wallet", done.state()) });
        }
        Ok(Withdrawal { amount: done.amount().to_u64(), fee_paid: done.fee_paid().to_u64(), preimage: done.payment_proof().map(str::to_owned) })
    }

    /// Unspent balance of `unit` at `mint_url`.
    pub async fn balance_at(&self, mint_url: &str, unit: &str) -> Result<u64> {
        Ok(self.wallet_at(mint_url, unit).await?.total_balance().await?.to_u64())
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

    /// Mint the credited, unminted ehash of every quote; quotes of the same unit go in one NUT-29
    /// batch request. Returns the total minted.
    pub async fn mint_all_credited(&self) -> Result<u64> {
        let mut by_unit: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (unit, quote) in self.ehash_quotes().await? {
            let w = self.wallet(&unit).await?;
            let q = w.check_mint_quote_status(&quote).await?;
            if q.amount_paid.to_u64() > q.amount_issued.to_u64() {
                by_unit.entry(unit).or_default().push(quote);
            }
        }
        let mut total = 0u64;
        for (unit, quotes) in by_unit {
            let w = self.wallet(&unit).await?;
            let proofs = if quotes.len() == 1 {
                w.mint(&quotes[0], SplitTarget::default(), None).await?
            } else {
                let ids: Vec<&str> = quotes.iter().map(String::as_str).collect();
                w.batch_mint(&ids, SplitTarget::default(), None, None).await?
            };
            total = total.saturating_add(proofs.iter().map(|p| p.amount.to_u64()).sum());
        }
        Ok(total)
    }

    /// Redeem `amount` (default: all) of `unit`'s ehash for sat ecash at the pool's own mint
    /// (protocol §2, "Redemption"): a sat quote of method `ehash-redeem`, a melt of the ehash
    /// that pays it (atomic at the mint: the ehash is spent only if the sats are credited), then
    /// the sats are minted. Returns the sats now in the wallet from it. A redemption interrupted
    /// after its melt is finished by the next call (its sat quote is minted).
    pub async fn redeem(&self, unit: &str, amount: Option<u64>) -> Result<u64> {
        let mut got = self.mint_redeemed().await?;
        let epochs = pool_epochs(&self.mint_url.to_string()).await?;
        let e = epochs
            .epochs
            .iter()
            .find(|e| e.unit.eq_ignore_ascii_case(unit))
            .ok_or_else(|| Error::InvalidToken(format!("{unit} is not an epoch unit of this pool (`ehash wallet balance` lists yours)")))?;
        let (Some(payout), Some(issued)) = (e.payout, e.issued) else {
            return Err(Error::Nostr(format!("epoch {} is {} and pays nothing yet: only redeemable epochs redeem", e.epoch, e.state)));
        };
        if e.state != "redeemable" {
            let why = if e.state == "expired" { "its redemption window ended".to_owned() } else { format!("it is {} (its block has not matured)", e.state) };
            return Err(Error::Nostr(format!("epoch {} cannot be redeemed now: {why}", e.epoch)));
        }
        let w = self.wallet(unit).await?;
        let have = w.total_balance().await?.to_u64();
        // by default everything no offer holds
        let amount = match amount {
            Some(n) => n,
            None => have.saturating_sub(self.reserved_at(&self.mint_url.to_string(), unit).await?.0),
        };
        self.ensure_free(&self.mint_url.to_string(), unit, amount.max(1)).await?;
        let sats = ehash_protocol::epoch::redeem_sats(amount, payout, issued);
        if sats == 0 {
            return Err(Error::InvalidToken(format!(
                "{amount} ehash of epoch {} is dust (it redeems for 0 sats); redeem at least {}",
                e.epoch,
                issued.div_ceil(payout.max(1))
            )));
        }
        let sat = self.wallet_at(&self.mint_url.to_string(), "sat").await?;
        let q = sat.mint_quote(PaymentMethod::Custom(REDEEM_METHOD.into()), Some(sats.into()), None, None).await?;
        let mq = w
            .melt_quote(PaymentMethod::Custom(REDEEM_METHOD.into()), q.request.clone(), None, Some(serde_json::json!({ "ehash_amount": amount }).to_string()))
            .await?;
        let done = w.prepare_melt(&mq.id, std::collections::HashMap::new()).await?.confirm().await?;
        if done.state() != cdk::nuts::MeltQuoteState::Paid {
            return Err(Error::Pool { url: self.mint_url.to_string(), reason: format!("the redemption melt ended {}", done.state()) });
        }
        got = got.saturating_add(self.mint_redeemed().await?);
        Ok(got)
    }

    /// Mint every paid, unminted redemption quote (sat, `ehash-redeem`); returns the sats.
    async fn mint_redeemed(&self) -> Result<u64> {
        let quotes = self.store.get_mint_quotes().await.map_err(|e| Error::Database(e.to_string()))?;
        let mut total = 0u64;
        for q in quotes.into_iter().filter(|q| q.mint_url == self.mint_url && q.payment_method == PaymentMethod::Custom(REDEEM_METHOD.into())) {
            let sat = self.wallet_at(&self.mint_url.to_string(), "sat").await?;
            let st = sat.check_mint_quote_status(&q.id).await?;
            if st.amount_paid.to_u64() > st.amount_issued.to_u64() {
                let proofs = sat.mint(&q.id, SplitTarget::default(), None).await?;
                total = total.saturating_add(proofs.iter().map(|p| p.amount.to_u64()).sum());
            }
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

    /// Every unit of this mint the wallet has quotes or proofs in.
    pub async fn known_units(&self) -> Result<Vec<String>> {
        let mut units: Vec<String> = self.ehash_quotes().await?.into_iter().map(|(u, _)| u).collect();
        let proofs = self
            .store
            .get_proofs(Some(self.mint_url.clone()), None, None, None)
            .await
            .map_err(|e| Error::Database(e.to_string()))?;
        units.extend(proofs.into_iter().map(|p| p.unit.to_string()));
        units.sort();
        units.dedup();
        Ok(units)
    }

    /// Finish or roll back any operation a crash interrupted (cdk's saga recovery), in every unit
    /// the wallet holds quotes in. Call at start.
    pub async fn recover(&self) -> Result<()> {
        for unit in self.known_units().await? {
            let report = self.wallet(&unit).await?.recover_incomplete_sagas().await?;
            tracing::debug!(%unit, ?report, "wallet recovery");
        }
        Ok(())
    }

    /// Send `amount` of `unit` as a `cashuB` token, optionally P2PK-locked to `lock_to`.
    pub async fn send(&self, unit: &str, amount: u64, lock_to: Option<PublicKey>) -> Result<String> {
        let w = self.wallet(unit).await?;
        self.ensure_free(&self.mint_url.to_string(), unit, amount).await?;
        let opts = SendOptions { conditions: lock_to.map(|pk| SpendingConditions::new_p2pk(pk, None)), ..Default::default() };
        let prepared = w.prepare_send(amount.into(), opts).await?;
        Ok(prepared.confirm(None).await?.to_string())
    }

    /// Receive a token: it must be from this wallet's mint; with `announced` keysets, each
    /// proof's keyset must be one of them and the DLEQ proofs present are checked against them
    /// (else cdk checks those against the mint's keys); a proof without a DLEQ proof is taken
    /// as NUT-12 allows, the swap at the mint proving its signature. Then it is swapped at the
    /// mint. Returns the unit and amount. On any error nothing changes.
    pub async fn receive(&self, token: &str, p2pk_keys: Vec<SecretKey>, announced: Option<&announced::AnnouncedKeysets>) -> Result<(String, u64)> {
        let t = Token::from_str(token.trim()).map_err(|e| Error::InvalidToken(e.to_string()))?;
        let token_mint = t.mint_url().map_err(|e| Error::InvalidToken(e.to_string()))?;
        if token_mint != self.mint_url {
            return Err(Error::ForeignMint { token_mint: token_mint.to_string(), ours: self.mint_url.to_string() });
        }
        let unit = t.unit().ok_or_else(|| Error::InvalidToken("the token names no unit".into()))?.to_string();
        let w = self.wallet(&unit).await?;
        if let Some(a) = announced {
            let infos = w.mint_connector().get_mint_keysets().await?.keysets;
            let proofs = t.proofs(&infos).map_err(|e| Error::InvalidToken(e.to_string()))?;
            a.verify(&proofs)?;
        }
        let opts = ReceiveOptions { p2pk_signing_keys: p2pk_keys, ..Default::default() };
        match w.receive(token.trim(), opts).await {
            Ok(a) => Ok((unit, a.to_u64())),
            Err(cdk::Error::TokenAlreadySpent) => Err(Error::AlreadySpent),
            Err(e) => Err(Error::Cdk(e)),
        }
    }

    /// Transactions of every unit, newest first: `(unit, direction, amount, unix time)`.
    pub async fn history(&self) -> Result<Vec<(String, String, u64, u64)>> {
        self.balances().await?;
        let wallets = self.pool_wallets().await;
        let mut out = vec![];
        for (unit, w) in wallets {
            for t in w.list_transactions(None).await? {
                out.push((unit.clone(), t.direction.to_string(), t.amount.to_u64(), t.timestamp));
            }
        }
        out.sort_by_key(|t| std::cmp::Reverse(t.3));
        Ok(out)
    }

    /// Restore from the seed (NUT-09/13) in every unit the pool has had; returns the recovered
    /// amount per unit.
    pub async fn restore_from_seed(&self) -> Result<BTreeMap<String, u64>> {
        let epochs = pool_epochs(&self.mint_url.to_string()).await?;
        let mut out = BTreeMap::new();
        for e in epochs.epochs {
            let w = self.wallet(&e.unit).await?;
            w.restore().await?;
            let bal = w.total_balance().await?.to_u64();
            if bal > 0 {
                out.insert(e.unit, bal);
            }
        }
        Ok(out)
    }

    /// The open wallets at the pool's mint, by unit.
    async fn pool_wallets(&self) -> Vec<(String, Wallet)> {
        let mint = self.mint_url.to_string();
        self.wallets.lock().await.iter().filter(|((m, _), _)| *m == mint).map(|((_, u), w)| (u.clone(), w.clone())).collect()
    }

    /// Unspent balance per unit (every unit the wallet holds quotes or proofs in).
    pub async fn balances(&self) -> Result<BTreeMap<String, u64>> {
        for unit in self.known_units().await? {
            self.wallet(&unit).await?;
        }
        let wallets = self.pool_wallets().await;
        let mut out = BTreeMap::new();
        for (unit, w) in wallets {
            out.insert(unit, w.total_balance().await?.to_u64());
        }
        Ok(out)
    }
}

/// Wallet settings for the `ehash wallet` command and the proxy.
///
/// | key | default | meaning |
/// |-----|---------|---------|
/// | `dir` | `.ehash/wallet` | seed words (`mnemonic.txt`), nostr key, cdk database |
/// | `mint_url` | `http://127.0.0.1:3338` | the pool's mint |
/// | `relays` | `[]` | relays for the NIP-60 backup and the pool's keyset announcements |
/// | `nostr_secret_key` | generated in `dir/nostr.key` | the key NIP-60 events are encrypted to |
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Wallet directory.
    pub dir: std::path::PathBuf,
    /// The pool's mint.
    pub mint_url: String,
    /// Relays.
    pub relays: Vec<String>,
    /// Nostr secret key (hex or nsec).
    pub nostr_secret_key: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self { dir: ".ehash/wallet".into(), mint_url: "http://127.0.0.1:3338".into(), relays: vec![], nostr_secret_key: None }
    }
}
