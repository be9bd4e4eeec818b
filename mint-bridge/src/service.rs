//! Start and stop the whole mint-bridge: storage, mint, epochs, announcements, job source,
//! Stratum endpoint and HTTP API.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bitcoin::{BlockHash, XOnlyPublicKey};
use ehash_protocol::epoch::PoolId;
use ehash_protocol::stratum::share::TAG_BYTES;
use ehash_protocol::work::UnitSize;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::announce::{Announcer, ChainFacts};
use crate::config::{Config, DatabaseConfig};
use crate::epochs::{self, Epochs};
use crate::error::{Error, Result};
use crate::http::{self, HttpState};
use crate::ledger::Ledger;
use crate::record::Recorder;
use crate::mint::{MintHandle, MintIdentity, MintStore};
use crate::pool::bitcoind::BitcoindJobSource;
use crate::pool::devnet::DevnetJobSource;
use crate::pool::{EXTRANONCE1_SIZE, PoolBackend, PoolSource};
use ehash_stratum::{AuthorityKey, Difficulty, Server, StatsSnapshot, Sv2Server};

/// How often the payout lifecycle is looked at besides every new chain tip.
const LIFECYCLE_INTERVAL: Duration = Duration::from_secs(1);
/// How often found blocks still waiting for the network's answer are handed over again (and
/// closed epochs without a committed log committed).
const BLOCK_RETRY_INTERVAL: Duration = Duration::from_secs(10);

/// A running mint-bridge.
pub struct MintBridge {
    http_addr: SocketAddr,
    mint_url: String,
    pool: Server,
    sv2: Option<(Sv2Server, AuthorityKey)>,
    epochs: Arc<Epochs>,
    mint: Arc<MintHandle>,
    ledger: Ledger,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for MintBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MintBridge").field("mint_url", &self.mint_url).finish_non_exhaustive()
    }
}

async fn open_store(config: &Config) -> Result<Arc<dyn MintStore>> {
    Ok(match &config.database {
        DatabaseConfig::Sqlite => {
            let path = config.data_dir.join("mint.sqlite");
            Arc::new(cdk_sqlite::MintSqliteDatabase::new(&path).await.map_err(|e| {
                Error::Config(format!("mint database {}: {e}", path.display()))
            })?)
        }
        DatabaseConfig::Postgres(url) => Arc::new(
            cdk_postgres::MintPgDatabase::new(url.as_str())
                .await
                .map_err(|e| Error::Config(format!("mint database (postgres): {e}; check database.postgres")))?,
        ),
    })
}

fn stratum_error(e: ehash_stratum::Error) -> Error {
    match e {
        ehash_stratum::Error::Listen { addr, source } => Error::Listen { what: "stratum", addr, source },
        ehash_stratum::Error::Work(w) => Error::Work(w),
        ehash_stratum::Error::Sv2Authority(e) => Error::Config(format!("{e} ({})", ehash_keyfile::SV2_AUTHORITY_KEY_FILE)),
    }
}

/// The job source the configuration names: Bitcoin Core, else the devnet (which goes on from
/// the last block the ledger says it accepted).
async fn start_source(config: &Config, keys: &nostr_sdk::prelude::Keys, ledger: &Ledger, cancel: CancellationToken) -> Result<Arc<dyn PoolSource>> {
    let extranonce_len = TAG_BYTES + EXTRANONCE1_SIZE + config.stratum.extranonce2_size;
    if let Some(node) = &config.bitcoind {
        return Ok(BitcoindJobSource::start(node, extranonce_len, cancel).await?);
    }
    let xonly = XOnlyPublicKey::from_slice(&keys.public_key().to_bytes())
        .map_err(|e| Error::Config(format!("pool key is not a valid x-only key: {e}")))?;
    let mut chain = vec![];
    for b in ledger.blocks().await? {
        if b.status == crate::ledger::BlockStatus::Accepted {
            let hash = b.hash.parse().map_err(|_| Error::Inconsistent(format!("block hash {} in the ledger", b.hash)))?;
            chain.push((hash, b.height));
        }
    }
    Ok(DevnetJobSource::start(config.devnet.clone(), xonly, extranonce_len, chain, cancel)?)
}

impl MintBridge {
    /// Start everything; returns once the ports are bound and the mint is serving.
    pub async fn start(config: Config) -> Result<Self> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|source| Error::DataDir { path: config.data_dir.clone(), source })?;
        let seed = ehash_keyfile::load_or_create_seed(&config.data_dir)?;
        let keys = ehash_keyfile::load_or_create_nostr_keys(&config.data_dir, config.nostr_secret_key.as_deref())?;
        let admin_token = ehash_keyfile::load_or_create_admin_token(&config.data_dir)?;
        let pool_id = match &config.pool_id {
            Some(p) => PoolId::new(p)?,
            None => PoolId::from_pubkey_hex(&keys.public_key().to_hex())?,
        };
        let unit_size = UnitSize::new(config.unit_log2_hashes)?;

        let store = open_store(&config).await?;
        let ledger = Ledger::open(&config.database, &config.data_dir).await?;
        let all = epochs::load_or_open(&ledger, &pool_id).await?;
        let recorder = Recorder::start(ledger.clone()).await?;

        let http_listener = TcpListener::bind(config.http_listen)
            .await
            .map_err(|source| Error::Listen { what: "http", addr: config.http_listen, source })?;
        let http_addr = http_listener
            .local_addr()
            .map_err(|source| Error::Listen { what: "http", addr: config.http_listen, source })?;
        let mint_url = config.mint_url(http_addr);

        let identity = MintIdentity { name: config.mint_name.clone(), description: config.mint_description.clone(), url: mint_url.clone() };
        let lightning = match &config.lightning {
            Some(ln) => {
                let kv: cdk_common::database::DynKVStore = store.clone();
                let p = ln.processor(kv).await.map_err(|e| Error::Config(format!("{e} (check mint_bridge.lightning)")))?;
                if !ln.is_real() {
                    tracing::warn!("pool mint with FAKE Lightning: sat withdrawals pay nothing; for local use only");
                }
                Some(p)
            }
            None => None,
        };
        let withdrawals = lightning.is_some();
        let mint = Arc::new(MintHandle::start(store, seed, identity, &all, ledger.clone(), lightning).await?);
        let cancel = CancellationToken::new();
        let source = start_source(&config, &keys, &ledger, cancel.clone()).await?;
        let network = source.network();
        if let Some(configured) = &config.network
            && configured != network
        {
            cancel.cancel();
            return Err(Error::Config(format!("network is {configured}, but the job source mines {network}: remove the setting or point the pool at a {configured} node")));
        }
        let metadata = serde_json::json!({ "name": config.mint_name, "about": config.mint_description });
        let outbox = ehash_outbox::Outbox::open(ledger.pool())
            .await
            .map_err(|e| Error::Inconsistent(format!("announcement outbox: {e}")))?;
        let chain = ChainFacts { network: network.to_owned(), templates: source.templates(), pool_fee_ppm: config.payout.pool_fee_ppm };
        let announcer = Announcer::new(keys.clone(), outbox, mint_url.clone(), metadata, unit_size.log2(), chain);
        // work on the source's current tip is current; a share on an older one is stale
        let min_height = source.templates().borrow().height;
        let epochs = Arc::new(Epochs::new(
            ledger.clone(),
            recorder,
            mint.clone(),
            pool_id,
            unit_size,
            announcer.clone(),
            config.payout.clone(),
            all.clone(),
            min_height,
        ));

        // finish what the last run left: blocks without the network's answer or their close,
        // closed epochs without a committed log, credit the mint was not paid
        epochs.resolve_blocks(&*source).await?;
        epochs.commit_pending_logs().await?;
        let paid = epochs.sync_all().await?;
        if paid > 0 {
            tracing::info!(quotes = paid, "paid the mint credit recorded before the last stop");
        }
        announcer.announce_mint(&mint.mint()).await?;
        for e in &epochs.all().await {
            announcer.announce_epoch(&mint, e).await?;
        }
        let mut tasks = vec![announcer.spawn_delivery(config.relays.clone(), cancel.clone())];
        let templates = source.templates();
        // the payout lifecycle follows the chain (every new template, and the clock): each closed
        // epoch's block is looked up on the source's active chain
        let (life, mut tips, life_cancel, chain) = (epochs.clone(), templates.clone(), cancel.clone(), source.clone());
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(LIFECYCLE_INTERVAL);
            loop {
                tokio::select! {
                    _ = life_cancel.cancelled() => break,
                    _ = tick.tick() => {}
                    r = tips.changed() => if r.is_err() { break },
                }
                let mut depths = HashMap::new();
                for hash in life.maturing_blocks().await {
                    let Ok(h) = hash.parse::<BlockHash>() else { continue };
                    match chain.depth(&h).await {
                        Ok(d) => {
                            depths.insert(hash, d);
                        }
                        Err(e) => tracing::debug!(block = %hash, error = %e, "a closed epoch's block cannot be looked up"),
                    }
                }
                if let Err(e) = life.advance_on(&depths, cdk::util::unix_time()).await {
                    tracing::warn!(error = %e, "advancing the epochs' payout lifecycle");
                }
            }
        }));
        let backend = Arc::new(PoolBackend::new(epochs.clone(), source.clone()));
        let difficulty = Difficulty::from_config(&config.stratum, unit_size.min_difficulty()).map_err(stratum_error)?;
        let pool = Server::start(config.stratum_listen, config.stratum.clone(), difficulty, backend.clone(), templates.clone(), cancel.clone())
            .await
            .map_err(stratum_error)?;
        // Stratum V2, when configured: the same backend and job source as V1
        let sv2 = match config.sv2_listen {
            Some(listen) => {
                let started = async {
                    let secret = ehash_keyfile::load_or_create_sv2_authority_key(&config.data_dir)?;
                    let authority = AuthorityKey::from_secret(secret).map_err(|e| {
                        Error::Config(format!("{}: {e}", config.data_dir.join(ehash_keyfile::SV2_AUTHORITY_KEY_FILE).display()))
                    })?;
                    let server = Sv2Server::start(listen, authority.clone(), config.stratum.clone(), difficulty, backend, templates, cancel.clone())
                        .await
                        .map_err(stratum_error)?;
                    Ok::<_, Error>((server, authority))
                };
                match started.await {
                    Ok((server, authority)) => {
                        tracing::info!(sv2 = %server.local_addr(), sv2_authority_key = %authority.public_key(), "stratum v2 endpoint");
                        Some((server, authority))
                    }
                    Err(e) => {
                        // what already runs (the V1 endpoint, the tasks) stops with it
                        cancel.cancel();
                        return Err(e);
                    }
                }
            }
            None => None,
        };

        let ws_slots = Arc::new(tokio::sync::Semaphore::new(config.max_ws_connections.max(1)));
        let state = HttpState { epochs: epochs.clone(), mint: mint.clone(), admin_token: Arc::new(admin_token), withdrawals, ws_slots };
        let app = http::router(state);
        let http_cancel = cancel.clone();
        let http_listener = axum::serve::ListenerExt::tap_io(http_listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        tasks.push(tokio::spawn(async move {
            let serve = axum::serve(http_listener, app.into_make_service_with_connect_info::<SocketAddr>())
                .with_graceful_shutdown(async move { http_cancel.cancelled().await });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "http server");
            }
        }));
        // paying the mint credit nobody asked about
        let (rec, rec_cancel) = (epochs.clone(), cancel.clone());
        let sync_every = Duration::from_secs(config.credit_sync_secs.max(1));
        tasks.push(tokio::spawn(async move {
            let mut sync = tokio::time::interval(sync_every);
            loop {
                tokio::select! {
                    _ = rec_cancel.cancelled() => break,
                    _ = sync.tick() => {
                        if let Err(e) = rec.sync_all().await {
                            tracing::warn!(error = %e, "paying the mint recorded credit");
                        }
                    }
                }
            }
        }));
        // blocks still waiting for the network's answer or their close, logs not committed, a
        // book behind the ledger
        let (fin, fin_cancel) = (epochs.clone(), cancel.clone());
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(BLOCK_RETRY_INTERVAL);
            loop {
                tokio::select! {
                    _ = fin_cancel.cancelled() => break,
                    _ = tick.tick() => {
                        let done = async {
                            fin.resolve_blocks(&*source).await?;
                            fin.refresh().await?;
                            fin.commit_pending_logs().await
                        };
                        if let Err(e) = done.await {
                            tracing::warn!(error = %e, "finishing found blocks and closed epochs");
                        }
                    }
                }
            }
        }));
        tracing::info!(%mint_url, stratum = %pool.local_addr(), pool_pubkey = %keys.public_key(), "mint-bridge running");
        Ok(Self { http_addr, mint_url, pool, sv2, epochs, mint, ledger, cancel, tasks })
    }

    /// The HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The mint URL.
    pub fn mint_url(&self) -> &str {
        &self.mint_url
    }

    /// The Stratum address.
    pub fn stratum_addr(&self) -> SocketAddr {
        self.pool.local_addr()
    }

    /// The Stratum V2 address, if the endpoint is on.
    pub fn sv2_addr(&self) -> Option<SocketAddr> {
        self.sv2.as_ref().map(|(s, _)| s.local_addr())
    }

    /// The Stratum V2 authority public key as clients take it (base58-check), if the endpoint
    /// is on.
    pub fn sv2_authority_key(&self) -> Option<String> {
        self.sv2.as_ref().map(|(_, k)| k.public_key())
    }

    /// Stratum V2 counters, if the endpoint is on.
    pub fn sv2_stats(&self) -> Option<StatsSnapshot> {
        self.sv2.as_ref().map(|(s, _)| s.stats())
    }

    /// Pool counters (Stratum V1).
    pub fn stats(&self) -> StatsSnapshot {
        self.pool.stats()
    }

    /// The epoch book.
    pub fn epochs(&self) -> &Arc<Epochs> {
        &self.epochs
    }

    /// The mint handle.
    pub fn mint(&self) -> &Arc<MintHandle> {
        &self.mint
    }

    /// Stop serving and close storage.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
        self.mint.stop().await;
        self.ledger.close().await;
    }
}
