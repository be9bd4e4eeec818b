//! The pool's cdk mint, rebuilt behind a swappable handle whenever the set of epochs changes.
//!
//! cdk 0.18 fixes its units and payment processors when a `Mint` is built. A new epoch needs a
//! new unit, so the bridge builds a fresh `Mint` over the same database and seed with every
//! epoch's unit configured, installs it in the [`MintHandle`], and stops the old one. Keysets are
//! derived deterministically from the seed and unit, so existing epochs keep their keysets and
//! every issued proof stays spendable (swaps within its own unit) and checkable (NUT-07). Only
//! the active epoch's processor accepts new quotes. The HTTP API forwards each request to the
//! current mint's cdk-axum router.

pub mod lightning;
pub mod processor;
pub mod redeem;

use std::sync::{Arc, RwLock};

use axum::Router;
use cdk::cdk_database::{self, MintDatabase, MintKeysDatabase};
use cdk::mint::{Mint, MintBuilder, MintMeltLimits, UnitConfig};
use cdk::nuts::nut17::{SupportedMethods, WsCommand};
use cdk::nuts::{CurrencyUnit, PaymentMethod};
use ehash_protocol::epoch::EpochState;
use tokio::sync::Mutex;

use crate::error::Result;
use crate::ledger::EpochRecord;
use lightning::SharedLightning;
use processor::{EHASH_METHOD, EhashProcessor};
use redeem::{MintCell, REDEEM_METHOD, RedeemProcessor, SatRedeemProcessor};

use crate::ledger::Ledger;

/// The mint database type: the mint store, the keyset store and the key-value store (where a
/// Lightning backend keeps its state).
pub trait MintStore:
    MintDatabase<cdk_database::Error> + MintKeysDatabase<Err = cdk_database::Error> + cdk_common::database::KVStore<Err = cdk_database::Error> + Send + Sync
{
}
impl<T> MintStore for T where
    T: MintDatabase<cdk_database::Error> + MintKeysDatabase<Err = cdk_database::Error> + cdk_common::database::KVStore<Err = cdk_database::Error> + Send + Sync
{
}

/// Keyset amounts for every epoch unit: 2^0 ..= 2^62.
pub fn keyset_amounts() -> Vec<u64> {
    (0..63).map(|i| 1u64 << i).collect()
}

/// The largest amount a single quote request or mint may carry.
pub const MAX_MINT_AMOUNT: u64 = 1 << 62;

/// Mint identity shown in NUT-06.
#[derive(Debug, Clone)]
pub struct MintIdentity {
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Public URL.
    pub url: String,
}

struct Current {
    mint: Arc<Mint>,
    router: Router,
}

/// The current mint and its HTTP router, swapped atomically on rebuild.
pub struct MintHandle {
    store: Arc<dyn MintStore>,
    seed: [u8; 64],
    identity: MintIdentity,
    current: RwLock<Arc<Current>>,
    rebuild_lock: Mutex<()>,
    /// Held (shared) by every Cashu request for its whole run and (exclusively) by a rebuild:
    /// a new `Mint` recovers unfinished sagas when it starts, so it must never start while the
    /// old one is still in the middle of a swap or mint whose saga it would roll back.
    gate: Arc<tokio::sync::RwLock<()>>,
    /// Epoch states for the redemption processors.
    ledger: Ledger,
    /// Redemptions being credited (shared by every mint instance).
    in_flight: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    /// The Lightning backend paying withdrawals of sats, if configured (shared by every mint
    /// instance, each with its own event stream; it takes no deposits).
    lightning: Option<Arc<SharedLightning>>,
    /// Counts rebuilds: WebSocket clients of a previous instance are told to reconnect.
    generation: tokio::sync::watch::Sender<u64>,
}

impl std::fmt::Debug for MintHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MintHandle").field("identity", &self.identity).finish_non_exhaustive()
    }
}

impl MintHandle {
    /// Build and start the mint for `epochs`; `lightning` pays sat withdrawals (NUT-05 bolt11).
    pub async fn start(
        store: Arc<dyn MintStore>,
        seed: [u8; 64],
        identity: MintIdentity,
        epochs: &[EpochRecord],
        ledger: Ledger,
        lightning: Option<ehash_lightning::Processor>,
    ) -> Result<Self> {
        let in_flight = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
        let lightning = lightning.map(SharedLightning::new);
        if let Some(ln) = &lightning {
            ln.start().await.map_err(|e| crate::error::Error::Config(format!("starting the Lightning backend: {e} (check mint_bridge.lightning)")))?;
        }
        let current = build(&store, &seed, &identity, epochs, &ledger, &in_flight, lightning.as_ref()).await?;
        Ok(Self {
            store,
            seed,
            identity,
            current: RwLock::new(Arc::new(current)),
            rebuild_lock: Mutex::new(()),
            gate: Arc::new(tokio::sync::RwLock::new(())),
            ledger,
            in_flight,
            lightning,
            generation: tokio::sync::watch::Sender::new(0),
        })
    }

    fn current(&self) -> Arc<Current> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The mint serving requests now.
    pub fn mint(&self) -> Arc<Mint> {
        self.current().mint.clone()
    }

    /// The cdk-axum router of the mint serving requests now.
    pub fn router(&self) -> Router {
        self.current().router.clone()
    }

    /// Changes whenever a new mint instance starts serving. Subscribe before taking
    /// [`Self::router`] for a long-lived connection, and end the connection when it changes.
    pub fn rebuilds(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Enter a Cashu request: the guard keeps a rebuild from starting a new mint (and its saga
    /// recovery) until the request is done. Take it before [`Self::router`].
    pub async fn enter(&self) -> tokio::sync::OwnedRwLockReadGuard<()> {
        self.gate.clone().read_owned().await
    }

    /// The owner proof of keyset `id` for the pool key `pool` (protocol §5, "The owner proof"):
    /// the keyset's key for its smallest amount, derived again from the seed and the keyset's
    /// stored derivation path, signs the pool's key.
    pub async fn owner_proof(&self, id: &cdk::nuts::Id, pool: &nostr_sdk::prelude::PublicKey) -> Result<String> {
        use cdk::nuts::MintKeySet;
        let inconsistent = |why: String| crate::error::Error::Inconsistent(why);
        let mut tx = MintKeysDatabase::begin_transaction(&*self.store).await?;
        let infos = tx.get_keyset_infos().await;
        if let Err(e) = tx.rollback().await {
            tracing::debug!(error = %e, "ending a read of the keysets");
        }
        let info = infos?.into_iter().find(|k| k.id == *id).ok_or_else(|| inconsistent(format!("keyset {id} is not stored")))?;
        let secp = bitcoin::secp256k1::Secp256k1::new();
        let xpriv = bitcoin::bip32::Xpriv::new_master(bitcoin::Network::Bitcoin, &self.seed).map_err(|e| inconsistent(format!("the mint seed: {e}")))?;
        let keyset = MintKeySet::generate_from_xpriv(&secp, xpriv, &info.amounts, info.unit.clone(), info.derivation_path.clone(), info.input_fee_ppk, info.final_expiry, id.get_version());
        if keyset.id != *id {
            return Err(inconsistent(format!("keyset {id} does not derive from the seed (derived {})", keyset.id)));
        }
        let secret = keyset.keys.iter().min_by_key(|(amount, _)| **amount).map(|(_, k)| k.secret_key.clone()).ok_or_else(|| inconsistent(format!("keyset {id} has no keys")))?;
        Ok(ehash_protocol::events::epoch::owner_proof(&secret, id, pool))
    }

    /// Rebuild the mint for a new set of epochs and swap it in; the old mint is stopped.
    pub async fn rebuild(&self, epochs: &[EpochRecord]) -> Result<()> {
        let _guard = self.rebuild_lock.lock().await;
        // wait for the requests in flight, and hold new ones, until the new mint serves
        let _quiet = self.gate.clone().write_owned().await;
        let next = Arc::new(build(&self.store, &self.seed, &self.identity, epochs, &self.ledger, &self.in_flight, self.lightning.as_ref()).await?);
        let old = {
            let mut w = match self.current.write() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            std::mem::replace(&mut *w, next)
        };
        self.generation.send_modify(|g| *g += 1);
        if let Err(e) = old.mint.stop().await {
            tracing::warn!(error = %e, "stopping the previous mint instance");
        }
        Ok(())
    }

    /// Stop the current mint's background tasks, and the Lightning backend.
    pub async fn stop(&self) {
        if let Err(e) = self.mint().stop().await {
            tracing::warn!(error = %e, "stopping the mint");
        }
        if let Some(ln) = &self.lightning
            && let Err(e) = ln.stop().await
        {
            tracing::warn!(error = %e, "stopping the pool mint's Lightning backend");
        }
    }
}

/// NUT-17: the subscriptions the mint serves on `/v1/ws`, one entry per method and unit it
/// mints (NUT-04) or melts (NUT-05) in: `<method>_mint_quote` and `<method>_melt_quote` for the
/// quotes of that method (cdk publishes every state change of them), and `proof_state`.
fn websocket_support(mint: &cdk::nuts::nut04::Settings, melt: &cdk::nuts::nut05::Settings) -> Vec<SupportedMethods> {
    let mut out: Vec<SupportedMethods> = vec![];
    let minted = mint.methods.iter().map(|m| (&m.method, &m.unit, true));
    let melted = melt.methods.iter().map(|m| (&m.method, &m.unit, false));
    for (method, unit, is_mint) in minted.chain(melted) {
        let command = match (*method == PaymentMethod::BOLT11, is_mint) {
            (true, true) => WsCommand::Bolt11MintQuote,
            (true, false) => WsCommand::Bolt11MeltQuote,
            (false, true) => WsCommand::custom_mint_quote(&method.to_string()),
            (false, false) => WsCommand::custom_melt_quote(&method.to_string()),
        };
        match out.iter_mut().find(|s| &s.method == method && &s.unit == unit) {
            Some(s) => s.commands.push(command),
            None => out.push(SupportedMethods::new(method.clone(), unit.clone(), vec![command])),
        }
    }
    for s in &mut out {
        s.commands.push(WsCommand::ProofState);
    }
    out
}

async fn build(
    store: &Arc<dyn MintStore>,
    seed: &[u8; 64],
    identity: &MintIdentity,
    epochs: &[EpochRecord],
    ledger: &Ledger,
    in_flight: &Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    lightning: Option<&Arc<SharedLightning>>,
) -> Result<Current> {
    let cell: MintCell = Arc::new(std::sync::OnceLock::new());
    let db: Arc<dyn MintDatabase<cdk_database::Error> + Send + Sync> = store.clone();
    let keys: Arc<dyn MintKeysDatabase<Err = cdk_database::Error> + Send + Sync> = store.clone();
    let mut builder = MintBuilder::new(db)
        .with_name(identity.name.clone())
        .with_description(identity.description.clone())
        .with_urls(vec![identity.url.clone()])
        .with_keyset_v2(Some(true))
        .with_batch_minting(Some(100), Some(vec![EHASH_METHOD.to_string()]));
    for e in epochs {
        let unit = CurrencyUnit::custom(&e.unit);
        builder.configure_unit(unit.clone(), UnitConfig { amounts: keyset_amounts(), input_fee_ppk: 0 })?;
        builder
            .add_payment_processor(
                unit.clone(),
                PaymentMethod::Custom(EHASH_METHOD.to_string()),
                MintMeltLimits::new(1, MAX_MINT_AMOUNT),
                Arc::new(EhashProcessor::new(unit.clone(), e.epoch, e.state == EpochState::Active)),
            )
            .await?;
        // redemption: melting this epoch's ehash pays a sat quote (only once redeemable)
        builder
            .add_payment_processor(
                unit.clone(),
                PaymentMethod::Custom(REDEEM_METHOD.to_string()),
                MintMeltLimits::new(1, MAX_MINT_AMOUNT),
                Arc::new(RedeemProcessor::new(unit, e.epoch, ledger.clone(), cell.clone(), in_flight.clone())),
            )
            .await?;
    }
    // the sats redemptions pay, in the pool's own mint
    builder.configure_unit(CurrencyUnit::Sat, UnitConfig { amounts: keyset_amounts(), input_fee_ppk: 0 })?;
    builder
        .add_payment_processor(
            CurrencyUnit::Sat,
            PaymentMethod::Custom(REDEEM_METHOD.to_string()),
            MintMeltLimits::new(1, MAX_MINT_AMOUNT),
            Arc::new(SatRedeemProcessor),
        )
        .await?;
    // withdrawals of those sats over Lightning
    if let Some(ln) = lightning {
        builder.add_payment_processor(CurrencyUnit::Sat, PaymentMethod::BOLT11, MintMeltLimits::new(1, MAX_MINT_AMOUNT), ln.instance()).await?;
    }
    let mut info = builder.current_mint_info();
    // Served: NUT-04 `ehash` in the epoch units and `ehash-redeem` in sat; NUT-05
    // `ehash-redeem` in the epoch units and, with Lightning, `bolt11` in sat. Each processor
    // also registers the other direction, which is not served (sats are issued only for
    // redeemed ehash, never for Lightning deposits).
    let redeem = PaymentMethod::Custom(REDEEM_METHOD.to_string());
    info.nuts.nut04.methods.retain(|m| m.method != PaymentMethod::BOLT11 && (m.method != redeem || m.unit == CurrencyUnit::Sat));
    info.nuts.nut05.methods.retain(|m| (m.method == redeem && m.unit != CurrencyUnit::Sat) || (m.method == PaymentMethod::BOLT11 && m.unit == CurrencyUnit::Sat));
    info.nuts.nut05.disabled = info.nuts.nut05.methods.is_empty();
    info.nuts.nut17.supported = websocket_support(&info.nuts.nut04, &info.nuts.nut05);
    let mint = builder.build_with_seed(keys, seed).await?;
    // cdk keeps the mint info stored at first start; units added since must be written back.
    let stored = mint.mint_info().await?;
    info.pubkey = stored.pubkey;
    mint.set_mint_info(info).await?;
    let mint = Arc::new(mint);
    let _ = cell.set(Arc::downgrade(&mint));
    mint.start().await?;
    let mut methods = vec![EHASH_METHOD.to_string(), REDEEM_METHOD.to_string()];
    if lightning.is_some() {
        methods.push(PaymentMethod::BOLT11.to_string());
    }
    let router = cdk_axum::create_mint_router(mint.clone(), methods)
        .await
        .map_err(|e| crate::error::Error::Config(format!("cdk-axum router: {e}")))?;
    Ok(Current { mint, router })
}
