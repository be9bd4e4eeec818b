//! Bitcoin Core as the job source: templates from `getblocktemplate`, a new tip seen through
//! the long poll and a poll of the best block hash, found blocks sent with `submitblock`, and
//! the depth of a block on the node's active chain for maturity and reorgs.

pub mod local;
pub mod rpc;
pub mod template;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bitcoin::{Address, BlockHash, Network};
use ehash_stratum::{BlockOutcome, FoundBlock, JobSource, JobSourceError, Template};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{Mutex, Notify, watch};
use tokio_util::sync::CancellationToken;

use self::rpc::{RPC_IN_WARMUP, RPC_NOT_FOUND, Rpc, RpcAuth, RpcError};
use self::template::{CoinbaseSpec, Gbt, Prepared, prepare};
use super::{Depth, PoolSource};
use crate::config::BitcoindConfig;
use crate::error::{Error, Result};

/// How long one long poll may wait before it is asked again.
const LONGPOLL_SECS: u64 = 120;
/// How long to wait before asking again after the node failed.
const RETRY: Duration = Duration::from_secs(1);

/// A chain the pool can mine, as the configuration, Bitcoin Core and NIP-87 name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chain {
    /// Bitcoin Core's name (`getblockchaininfo.chain`).
    pub core: &'static str,
    /// The address network.
    pub network: Network,
    /// The NIP-87 `n` value.
    pub nip87: &'static str,
}

impl FromStr for Chain {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Ok(match s {
            "main" | "mainnet" | "bitcoin" => Self { core: "main", network: Network::Bitcoin, nip87: "mainnet" },
            "testnet4" => Self { core: "testnet4", network: Network::Testnet4, nip87: "testnet" },
            "signet" => Self { core: "signet", network: Network::Signet, nip87: "signet" },
            "regtest" => Self { core: "regtest", network: Network::Regtest, nip87: "regtest" },
            other => return Err(format!("unknown chain {other:?}: set mint_bridge.bitcoind.chain to main, testnet4, signet or regtest")),
        })
    }
}

#[derive(Debug, Deserialize)]
struct ChainInfo {
    chain: String,
    initialblockdownload: bool,
    blocks: u64,
}

#[derive(Debug, Deserialize)]
struct HeaderInfo {
    confirmations: i64,
}

struct State {
    next_id: u64,
    prev: Option<BlockHash>,
    longpollid: Option<String>,
    /// The node failed the last time it was asked (logged once until it answers again).
    down: bool,
}

/// The Bitcoin Core job source.
pub struct BitcoindJobSource {
    rpc: Rpc,
    chain: Chain,
    spec: CoinbaseSpec,
    rules: Value,
    state: Mutex<State>,
    tx: watch::Sender<Arc<Template>>,
    refresh: Notify,
}

impl std::fmt::Debug for BitcoindJobSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BitcoindJobSource").field("rpc", &self.rpc.url()).field("chain", &self.chain.core).finish_non_exhaustive()
    }
}

impl BitcoindJobSource {
    /// Check the node (reachable, on the configured chain, not in initial block download on a
    /// public chain) and the payout address (of that chain), take the first template, and start
    /// following the node until `cancel`. `extranonce_len` is the coinbase's extranonce space.
    pub async fn start(config: &BitcoindConfig, extranonce_len: usize, cancel: CancellationToken) -> Result<Arc<Self>> {
        let chain: Chain = config.chain.parse().map_err(Error::Config)?;
        let auth = match (&config.cookie_file, &config.rpc_user, &config.rpc_password) {
            (Some(path), _, _) => RpcAuth::Cookie(path.clone()),
            (None, Some(u), Some(p)) => RpcAuth::UserPass(u.clone(), p.clone()),
            _ => return Err(Error::Config("mint_bridge.bitcoind needs cookie_file, or rpc_user and rpc_password".into())),
        };
        let payout = Address::from_str(&config.payout_address)
            .map_err(|e| Error::Config(format!("mint_bridge.bitcoind.payout_address {:?} is not an address: {e}", config.payout_address)))?
            .require_network(chain.network)
            .map_err(|_| Error::Config(format!("mint_bridge.bitcoind.payout_address {} is not an address of chain {}", config.payout_address, chain.core)))?;
        let spec = CoinbaseSpec { payout: payout.script_pubkey(), tag: config.coinbase_tag.as_bytes().to_vec(), extranonce_len };
        spec.check().map_err(Error::Config)?;
        let rpc = Rpc::new(config.rpc_url.clone(), auth, config.rpc_timeout_secs);
        let info: ChainInfo = rpc.call("getblockchaininfo", json!([])).await.map_err(|e| Error::Node(e.to_string()))?;
        if info.chain != chain.core {
            return Err(Error::Node(format!(
                "bitcoind at {} runs chain {}, but mint_bridge.bitcoind.chain is {}: point the pool at a {} node or change the setting",
                config.rpc_url, info.chain, chain.core, chain.core
            )));
        }
        if info.initialblockdownload && matches!(chain.network, Network::Bitcoin | Network::Testnet4) {
            return Err(Error::Node(format!(
                "bitcoind at {} is still in initial block download (at block {}): start the pool once it has synced",
                config.rpc_url, info.blocks
            )));
        }
        let rules = if chain.network == Network::Signet { json!([{ "rules": ["segwit", "signet"] }]) } else { json!([{ "rules": ["segwit"] }]) };
        let gbt: Gbt = rpc.call("getblocktemplate", rules.clone()).await.map_err(|e| Error::Node(e.to_string()))?;
        let first = prepare(&gbt, &spec, 1, true).map_err(|e| Error::Node(format!("bitcoind's block template: {e}")))?;
        tracing::info!(chain = chain.core, height = first.template.height, "mining on bitcoind");
        let (tx, _) = watch::channel(Arc::new(first.template));
        let state = State { next_id: 2, prev: Some(first.prev), longpollid: first.longpollid, down: false };
        let source = Arc::new(Self { rpc, chain, spec, rules, state: Mutex::new(state), tx, refresh: Notify::new() });
        tokio::spawn(source.clone().follow(Duration::from_secs(config.job_refresh_secs.max(1)), Duration::from_millis(config.tip_poll_ms.max(100)), cancel.clone()));
        tokio::spawn(source.clone().long_poll(cancel));
        Ok(source)
    }

    /// The chain the node runs.
    pub fn chain(&self) -> Chain {
        self.chain
    }

    /// Publish new work: on a new tip at once (clean), else every `refresh`.
    async fn follow(self: Arc<Self>, refresh: Duration, poll: Duration, cancel: CancellationToken) {
        let mut poll_tick = tokio::time::interval(poll);
        poll_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut refresh_at = tokio::time::Instant::now() + refresh;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep_until(refresh_at) => {
                    self.fetch().await;
                    refresh_at = tokio::time::Instant::now() + refresh;
                }
                _ = self.refresh.notified() => self.fetch().await,
                _ = poll_tick.tick() => {
                    match self.rpc.call::<BlockHash>("getbestblockhash", json!([])).await {
                        Ok(best) => {
                            let (known, down) = {
                                let s = self.state.lock().await;
                                (s.prev, s.down)
                            };
                            if known != Some(best) || down {
                                self.fetch().await;
                                refresh_at = tokio::time::Instant::now() + refresh;
                            }
                        }
                        Err(e) => self.node_failed(&e).await,
                    }
                }
            }
        }
    }

    /// Ask for a template with the last long-poll id; when it answers the template changed.
    async fn long_poll(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            let id = self.state.lock().await.longpollid.clone();
            let Some(id) = id else {
                tokio::select! { _ = cancel.cancelled() => break, _ = tokio::time::sleep(RETRY) => continue }
            };
            let mut params = self.rules.clone();
            if let Some(req) = params.get_mut(0).and_then(Value::as_object_mut) {
                req.insert("longpollid".into(), Value::String(id.clone()));
            }
            let answer = tokio::select! {
                _ = cancel.cancelled() => break,
                a = self.rpc.call_with_timeout::<Gbt>("getblocktemplate", params, LONGPOLL_SECS) => a,
            };
            match answer {
                Ok(gbt) if gbt.longpollid.as_deref() != Some(id.as_str()) => self.refresh.notify_one(),
                Ok(_) => {}
                Err(_) => tokio::select! { _ = cancel.cancelled() => break, _ = tokio::time::sleep(RETRY) => {} },
            }
        }
    }

    /// Take a template from the node and publish it (clean when its tip is new).
    async fn fetch(&self) {
        let gbt = match self.rpc.call::<Gbt>("getblocktemplate", self.rules.clone()).await {
            Ok(g) => g,
            Err(e) => return self.node_failed(&e).await,
        };
        let mut state = self.state.lock().await;
        let id = state.next_id;
        let prev: Option<BlockHash> = gbt.previousblockhash.parse().ok();
        let clean = prev != state.prev;
        match prepare(&gbt, &self.spec, id, clean) {
            Ok(Prepared { template, prev, longpollid, .. }) => {
                if state.down {
                    tracing::info!(rpc = self.rpc.url(), height = template.height, "bitcoind answers again; fresh work sent");
                }
                if clean {
                    tracing::debug!(height = template.height, %prev, "new chain tip");
                }
                state.next_id += 1;
                state.prev = Some(prev);
                state.longpollid = longpollid;
                state.down = false;
                self.tx.send_replace(Arc::new(template));
            }
            Err(e) => tracing::error!(error = %e, "bitcoind's block template cannot be mined; the last one stays"),
        }
    }

    async fn node_failed(&self, e: &RpcError) {
        let mut state = self.state.lock().await;
        if !state.down {
            tracing::warn!(error = %e, "bitcoind does not answer; miners keep their connections and the last work until it does");
            state.down = true;
        }
    }
}

#[async_trait]
impl JobSource for BitcoindJobSource {
    fn templates(&self) -> watch::Receiver<Arc<Template>> {
        self.tx.subscribe()
    }

    async fn submit_block(&self, found: &FoundBlock) -> Result<BlockOutcome, JobSourceError> {
        let mut block = found.block()?;
        if crate::fault::active("corrupt-found-block") {
            // a test's fault: the coinbase pays a sat more than the merkle root commits to
            if let Some(out) = block.txdata.first_mut().and_then(|cb| cb.output.first_mut()) {
                out.value += bitcoin::Amount::ONE_SAT;
            }
        }
        let raw = hex::encode(bitcoin::consensus::encode::serialize(&block));
        let hash = block.block_hash();
        let answer = match self.rpc.call::<Option<String>>("submitblock", json!([raw])).await {
            Ok(None) => BlockOutcome::Accepted,
            // stored, but not (yet) on the active chain: the depth check says whether it stays
            Ok(Some(r)) if r == "inconclusive" => BlockOutcome::Accepted,
            Ok(Some(r)) if r == "duplicate" => BlockOutcome::Duplicate,
            Ok(Some(reason)) => BlockOutcome::Rejected(reason),
            Err(RpcError::Node { code, message, .. }) if code != RPC_IN_WARMUP => BlockOutcome::Rejected(format!("{message} (code {code})")),
            Err(e) => return Err(JobSourceError(e.to_string())),
        };
        tracing::info!(height = found.height, %hash, answer = ?answer, "block submitted to bitcoind");
        self.refresh.notify_one();
        Ok(answer)
    }
}

#[async_trait]
impl PoolSource for BitcoindJobSource {
    async fn depth(&self, hash: &BlockHash) -> Result<Depth, JobSourceError> {
        match self.rpc.call::<HeaderInfo>("getblockheader", json!([hash.to_string(), true])).await {
            Ok(h) if h.confirmations < 0 => Ok(Depth::Orphaned),
            Ok(h) => Ok(Depth::Confirmations(u32::try_from(h.confirmations).unwrap_or(u32::MAX))),
            Err(RpcError::Node { code: RPC_NOT_FOUND, .. }) => Err(JobSourceError(format!("bitcoind does not know block {hash}"))),
            Err(e) => Err(JobSourceError(e.to_string())),
        }
    }

    fn network(&self) -> &'static str {
        self.chain.nip87
    }
}
