//! # ehash-satmint
//!
//! A sat mint: a cdk Cashu mint in unit `sat` served over HTTP by cdk-axum, with deposits and
//! withdrawals over Lightning (NUT-04/05 bolt11). Its Lightning backend is chosen in
//! configuration (`lightning`):
//!
//! - `"fake"` (the default, for local markets and tests): `cdk-fake-wallet`, so **every
//!   invoice is paid at once**; never for real money;
//! - `{ lnd = { address, cert_file, macaroon_file } }`: an LND node over gRPC (`cdk-lnd`).
//!
//! Buyers deposit sats with an ordinary NUT-04 bolt11 quote and swap and lock them like at any
//! Cashu mint; `/v1/info` (NUT-06) lists the NUT-17 WebSocket subscriptions served
//! (`bolt11_mint_quote`, `bolt11_melt_quote` and `proof_state` in `sat`). Inputs can carry a fee
//! (`input_fee_ppk`), so fee handling is exercised. Browsers may call it from any origin (the web
//! UI; see `ehash-cors`).
//!
//! | key | default | meaning |
//! |-----|---------|---------|
//! | `data_dir` | `.ehash/sat-mint` | seed and SQLite database |
//! | `listen` | `127.0.0.1:3340` | Cashu HTTP API |
//! | `public_url` | `http://<listen>` | the URL wallets use |
//! | `input_fee_ppk` | `0` | NUT-02 input fee, parts per thousand per input |
//! | `max_deposit` | `100000000` | largest single bolt11 quote, sats |
//! | `lightning` | `"fake"` | the Lightning backend: `"fake"` or `{ lnd = { address, cert_file, macaroon_file } }` |

#![cfg_attr(test, allow(clippy::unwrap_used))]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::response::IntoResponse;
use cdk::cdk_database::{self, MintDatabase, MintKeysDatabase};
use cdk::mint::{Mint, MintBuilder, MintMeltLimits, UnitConfig};
use cdk::nuts::nut17::SupportedMethods;
use cdk::nuts::{CurrencyUnit, PaymentMethod};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// Sat mint settings (see the module docs).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Seed and database directory.
    pub data_dir: PathBuf,
    /// HTTP listen address (port 0 picks a free port).
    pub listen: SocketAddr,
    /// The URL wallets use; defaults to `http://<listen>`.
    pub public_url: Option<String>,
    /// Input fee in parts per thousand per proof.
    pub input_fee_ppk: u64,
    /// Largest bolt11 quote.
    pub max_deposit: u64,
    /// The Lightning backend.
    pub lightning: Lightning,
}

pub use ehash_lightning::Lightning;

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(".ehash/sat-mint"),
            listen: SocketAddr::from(([127, 0, 0, 1], 3340)),
            public_url: None,
            input_fee_ppk: 0,
            max_deposit: 100_000_000,
            lightning: Lightning::Fake,
        }
    }
}

/// Sat mint errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The data directory.
    #[error("sat mint data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The seed file.
    #[error(transparent)]
    Key(#[from] ehash_keyfile::Error),
    /// The database.
    #[error("sat mint database: {0}")]
    Database(String),
    /// cdk.
    #[error("sat mint: {0}")]
    Mint(#[from] cdk::Error),
    /// The Lightning backend could not be set up.
    #[error("sat mint Lightning backend ({backend}): {reason} (check sat_mint.lightning)")]
    Lightning {
        /// Which backend.
        backend: &'static str,
        /// Why.
        reason: String,
    },
    /// Binding the port.
    #[error("sat mint listen {addr}: {source} (choose another sat_mint.listen)")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// A running sat mint.
pub struct SatMint {
    url: String,
    addr: SocketAddr,
    mint: Arc<Mint>,
    cancel: CancellationToken,
    server: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for SatMint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SatMint").field("url", &self.url).finish_non_exhaustive()
    }
}

impl SatMint {
    /// Open the database, build the mint and serve it; returns once the port is bound.
    pub async fn start(config: &Config) -> Result<Self, Error> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| Error::DataDir { path: config.data_dir.clone(), source })?;
        let seed = ehash_keyfile::load_or_create_seed(&config.data_dir)?;
        let path = config.data_dir.join("sat-mint.sqlite");
        let store = Arc::new(cdk_sqlite::MintSqliteDatabase::new(&path).await.map_err(|e| Error::Database(format!("{}: {e}", path.display())))?);
        let listener = tokio::net::TcpListener::bind(config.listen).await.map_err(|source| Error::Listen { addr: config.listen, source })?;
        let addr = listener.local_addr().map_err(|source| Error::Listen { addr: config.listen, source })?;
        let url = config.public_url.clone().unwrap_or_else(|| format!("http://{addr}"));

        let db: Arc<dyn MintDatabase<cdk_database::Error> + Send + Sync> = store.clone();
        let kv: cdk_common::database::DynKVStore = store.clone();
        let keys: Arc<dyn MintKeysDatabase<Err = cdk_database::Error> + Send + Sync> = store;
        let (name, description) = match &config.lightning {
            Lightning::Fake | Lightning::FakeSlow { .. } => ("ehash local sat mint (fake Lightning)", "Development sat mint: every Lightning invoice is paid. Not for real money."),
            Lightning::Lnd { .. } => ("ehash sat mint", "Sats over Lightning (LND)."),
        };
        let processor = config.lightning.processor(kv).await.map_err(|e| Error::Lightning { backend: e.backend, reason: e.reason })?;
        let mut builder = MintBuilder::new(db).with_name(name.to_string()).with_description(description.to_string()).with_urls(vec![url.clone()]);
        builder.configure_unit(
            CurrencyUnit::Sat,
            UnitConfig { amounts: (0..40).map(|i| 1u64 << i).collect(), input_fee_ppk: config.input_fee_ppk },
        )?;
        builder
            .add_payment_processor(CurrencyUnit::Sat, PaymentMethod::BOLT11, MintMeltLimits::new(1, config.max_deposit), processor)
            .await?;
        // NUT-17: quote and proof state subscriptions on /v1/ws (cdk-axum serves them)
        let builder = builder.with_supported_websockets(SupportedMethods::default_bolt11(CurrencyUnit::Sat));
        let mut info = builder.current_mint_info();
        let mint = builder.build_with_seed(keys, &seed).await?;
        // cdk keeps the mint info stored at first start: write back what this version serves
        info.pubkey = mint.mint_info().await?.pubkey;
        mint.set_mint_info(info).await?;
        let mint = Arc::new(mint);
        mint.start().await?;
        let cdk_router = cdk_axum::create_mint_router(mint.clone(), vec!["bolt11".to_string()])
            .await
            .map_err(|e| Error::Database(format!("cdk-axum router: {e}")))?;
        // each request in its own task, so it runs to completion even if its client goes away
        // (cdk's swap leaves its inputs PENDING when its future is dropped half-way)
        let router = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let r = cdk_router.clone();
            async move {
                match tokio::spawn(tower::ServiceExt::oneshot(r, req)).await {
                    Ok(Ok(resp)) => resp,
                    Ok(Err(never)) => match never {},
                    Err(_) => axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                }
            }
        })
        // the same CORS as the pool mint and the exchange (cdk-axum's own layer answers
        // preflights too; this one also answers Private Network Access preflights)
        .layer(axum::middleware::from_fn(ehash_cors::middleware));
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        let server = tokio::spawn(async move {
            let serve = axum::serve(listener, router).with_graceful_shutdown(async move { stop.cancelled().await });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "sat mint HTTP server stopped");
            }
        });
        match config.lightning {
            Lightning::Fake | Lightning::FakeSlow { .. } => tracing::warn!(%url, "sat mint with FAKE Lightning: every invoice is paid; for local use only"),
            Lightning::Lnd { .. } => tracing::info!(%url, "sat mint with LND"),
        }
        Ok(Self { url, addr, mint, cancel, server })
    }

    /// The mint URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The cdk mint.
    pub fn mint(&self) -> &Arc<Mint> {
        &self.mint
    }

    /// Stop serving and stop the mint's background tasks.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.server.abort();
        let _ = self.server.await;
        if let Err(e) = self.mint.stop().await {
            tracing::warn!(error = %e, "stopping the sat mint");
        }
    }
}
