//! `ehash up`: the local market in one process — a relay, the pool's mint-bridge on a devnet
//! tuned for a CPU miner, and a simulated miner that earns ehash into its own wallet.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::{Context, Result};
use ehash_mint_bridge::MintBridge;
use ehash_sim_miner::{Miner, MinerConfig};
use ehash_wallet::{MinerWallet, seed};
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
    let pool_keys = ehash_mint_bridge::secrets::load_or_create_nostr_keys(&mb.data_dir, mb.nostr_secret_key.as_deref())?;

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

    let miner_dir = root.join("miner");
    let (mnemonic, created) = seed::load_or_create(&miner_dir)?;
    if created {
        println!("simulated miner: new wallet, seed words in {}", miner_dir.join(seed::MNEMONIC_FILE).display());
    }
    let wallet = MinerWallet::open(&miner_dir.join("wallet.sqlite"), bridge.mint_url(), seed::seed_of(&mnemonic)).await?;
    let mut unit = bridge.epochs().current().await?.unit;
    let mut quote = wallet.quote_for(&unit).await?;
    let cancel = CancellationToken::new();
    let miner = Miner::start(
        MinerConfig {
            pool: bridge.stratum_addr(),
            username: format!("{quote}.sim"),
            agent: "ehash-sim-miner/0.1".into(),
            version_rolling: true,
        },
        cancel.clone(),
    );

    let pool_npub = bridge.epochs().announcer().public_key();
    println!("ehash local market");
    println!("  relay    {}", relay.url());
    println!("  mint     {}   (Cashu HTTP API; epochs at /v1/ehash/epochs)", bridge.mint_url());
    println!("  stratum  stratum+tcp://{}   (username: <quote-id>.<worker>)", bridge.stratum_addr());
    println!("  pool key {}", pool_npub.to_hex());
    println!("  data     {}", root.display());
    println!("Ctrl-C stops it; the data directory keeps everything for the next run.");

    let tty = std::io::stdout().is_terminal();
    let mut status = tokio::time::interval(Duration::from_secs(file.up.status_secs.max(1)));
    let mut mint = tokio::time::interval(Duration::from_secs(file.up.mint_secs.max(1)));
    let shutdown = super::shutdown_signal();
    tokio::pin!(shutdown);
    let started = std::time::Instant::now();
    let mut epochs = bridge.epochs().changes();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = epochs.changed() => {
                // a new epoch: earn in its unit right away
                let current = bridge.epochs().current().await?.unit;
                if current != unit {
                    unit = current;
                    quote = wallet.quote_for(&unit).await?;
                    miner.set_username(format!("{quote}.sim"));
                }
            }
            _ = mint.tick() => {
                if let Err(e) = wallet.mint_all_credited().await {
                    tracing::warn!(error = %e, "minting credited ehash");
                }
            }
            _ = status.tick() => {
                let line = status_line(&bridge, &wallet, &miner, started.elapsed()).await;
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
    let _ = wallet.mint_all_credited().await;
    bridge.shutdown().await;
    relay.shutdown();
    Ok(())
}

async fn status_line(bridge: &MintBridge, wallet: &MinerWallet, miner: &Miner, elapsed: Duration) -> String {
    let pool = bridge.stats();
    let epoch = bridge.epochs().current().await.map(|e| format!("epoch {} ({})", e.epoch, e.unit)).unwrap_or_default();
    let minted: u64 = wallet.balances().await.map(|b| b.values().sum()).unwrap_or(0);
    let s = miner.stats();
    let hashes = s.hashes.load(std::sync::atomic::Ordering::Relaxed);
    let rate = hashes as f64 / elapsed.as_secs_f64().max(1.0) / 1e6;
    let rejected: u64 = pool.rejected.iter().map(|(_, n)| n).sum();
    format!(
        "{epoch} | shares {} accepted, {rejected} rejected | credited {} ehash | wallet {minted} ehash | blocks {} | {rate:.2} MH/s",
        pool.accepted, pool.credited, pool.blocks
    )
}
