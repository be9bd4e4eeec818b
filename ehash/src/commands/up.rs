//! `ehash up`: the local market in one process — a relay, the pool's mint-bridge on a devnet
//! tuned for a CPU miner, a mining proxy earning into its own wallet, and a simulated miner
//! mining through the proxy.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::{Context, Result};
use ehash_mint_bridge::MintBridge;
use ehash_proxy::Proxy;
use ehash_sim_miner::{Miner, MinerConfig};
use tokio_util::sync::CancellationToken;

use crate::UpArgs;
use crate::config::FileConfig;

/// One ehash = 2^20 hashes in the local market.
const UP_UNIT_LOG2: u32 = 20;
/// Shares start at one ehash (2^-12 difficulty = 2^20 hashes); vardiff adjusts.
const UP_MIN_DIFFICULTY_EXP: i32 = -12;

/// Run until Ctrl-C.
pub async fn run(file: FileConfig, args: UpArgs) -> Result<()> {
    let root = args.data_dir.unwrap_or_else(|| file.up.data_dir.clone());
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;

    let mut mb = file.mint_bridge.clone();
    mb.data_dir = root.join("mint-bridge");
    // the relay accepts the pool's announcements: it needs the pool's key before the pool starts
    std::fs::create_dir_all(&mb.data_dir).with_context(|| format!("creating {}", mb.data_dir.display()))?;
    let pool_keys = ehash_keyfile::load_or_create_nostr_keys(&mb.data_dir, mb.nostr_secret_key.as_deref())?;

    let mut relay_config = file.relay.clone();
    relay_config.data_dir = root.join("relay");
    relay_config.pool_keys.push(pool_keys.public_key().to_hex());
    let relay = ehash_relay::Relay::start(&relay_config).await.context("starting the relay")?;

    if !mb.relays.iter().any(|r| r == relay.url()) {
        mb.relays.push(relay.url().to_owned());
    }
    mb.unit_log2_hashes = UP_UNIT_LOG2;
    mb.stratum.min_difficulty_exp = UP_MIN_DIFFICULTY_EXP;
    mb.stratum.initial_difficulty_exp = UP_MIN_DIFFICULTY_EXP;
    mb.stratum.target_share_secs = 2;
    mb.stratum.retarget_secs = 20;
    mb.devnet.network_difficulty_exp = file.up.network_difficulty_exp;
    mb.devnet.job_refresh_secs = 30;
    let bridge = MintBridge::start(mb).await.context("starting the mint-bridge")?;

    let mut pc = file.proxy.clone();
    pc.data_dir = root.join("proxy");
    pc.wallet_dir = root.join("wallet");
    pc.pool = bridge.stratum_addr().to_string();
    pc.mint_url = bridge.mint_url().to_owned();
    pc.mint_secs = file.up.mint_secs;
    pc.worker = "up".into();
    pc.stratum.initial_difficulty_exp = UP_MIN_DIFFICULTY_EXP;
    pc.stratum.min_difficulty_exp = UP_MIN_DIFFICULTY_EXP;
    pc.stratum.target_share_secs = 2;
    pc.stratum.retarget_secs = 20;
    let proxy = Proxy::start(pc).await.context("starting the proxy")?;

    let cancel = CancellationToken::new();
    let miner = Miner::start(
        MinerConfig { pool: proxy.local_addr(), username: "sim1".into(), agent: "ehash-sim-miner/0.1".into(), version_rolling: true },
        cancel.clone(),
    );

    println!("ehash local market");
    println!("  relay    {}", relay.url());
    println!("  mint     {}   (Cashu HTTP API; epochs at /v1/ehash/epochs)", bridge.mint_url());
    println!("  pool     stratum+tcp://{}   (username: <quote-id>.<worker>)", bridge.stratum_addr());
    println!("  proxy    stratum+tcp://{}   (point your miners here; status: http://{}/status)", proxy.local_addr(), proxy.status_addr());
    println!("  pool key {}", pool_keys.public_key().to_hex());
    println!("  wallet   {}   (ehash wallet --dir {} balance)", root.join("wallet").display(), root.join("wallet").display());
    println!("Ctrl-C stops it; the data directory keeps everything for the next run.");

    let tty = std::io::stdout().is_terminal();
    let mut status = tokio::time::interval(Duration::from_secs(file.up.status_secs.max(1)));
    let shutdown = super::shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = status.tick() => {
                let line = status_line(&bridge, &proxy).await;
                if tty {
                    print!("\r\x1b[2K{line}");
                    let _ = std::io::stdout().flush();
                } else {
                    println!("{line}");
                }
            }
        }
    }
    println!();
    tracing::info!("stopping");
    cancel.cancel();
    miner.join().await;
    proxy.shutdown();
    tokio::time::sleep(Duration::from_millis(500)).await;
    bridge.shutdown().await;
    relay.shutdown();
    Ok(())
}

async fn status_line(bridge: &MintBridge, proxy: &Proxy) -> String {
    let pool = bridge.stats();
    let epoch = bridge.epochs().current().await.map(|e| format!("epoch {} ({})", e.epoch, e.unit)).unwrap_or_default();
    let p = proxy.status().await;
    let wallet: u64 = p.earnings.wallet.values().sum();
    let credited: u64 = p.earnings.credited.values().sum();
    let rejected: u64 = p.shares_rejected.iter().map(|(_, n)| n).sum();
    format!(
        "{epoch} | miners {} {:.2} MH/s | shares {} accepted, {} to pool, {rejected} rejected | credited {credited} | wallet {wallet} ehash | blocks {}",
        p.miners,
        p.hashrate / 1e6,
        p.shares_accepted,
        p.shares_forwarded,
        pool.blocks
    )
}
