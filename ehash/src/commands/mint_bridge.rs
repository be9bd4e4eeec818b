//! `ehash mint-bridge`: run the pool's mint-bridge, or close its epoch.

use anyhow::{Context, Result, bail};
use ehash_mint_bridge::config::DatabaseConfig;
use ehash_mint_bridge::{Config, MintBridge};

use crate::config::FileConfig;
use crate::{CloseEpochArgs, MintBridgeArgs};

/// Apply flags over the layered `[mint_bridge]` section.
pub fn apply_flags(mut c: Config, a: MintBridgeArgs) -> Config {
    if let Some(v) = a.data_dir {
        c.data_dir = v;
    }
    if let Some(v) = a.http_listen {
        c.http_listen = v;
    }
    if let Some(v) = a.public_url {
        c.public_url = Some(v);
    }
    if let Some(v) = a.stratum_listen {
        c.stratum_listen = v;
    }
    if let Some(v) = a.pool_id {
        c.pool_id = Some(v);
    }
    if let Some(v) = a.unit_log2_hashes {
        c.unit_log2_hashes = v;
    }
    if !a.relays.is_empty() {
        c.relays = a.relays;
    }
    if let Some(v) = a.postgres_url {
        c.database = DatabaseConfig::Postgres(v);
    }
    if let Some(v) = a.network_difficulty_exp {
        c.devnet.network_difficulty_exp = v;
    }
    if let Some(v) = a.initial_difficulty_exp {
        c.stratum.initial_difficulty_exp = v;
    }
    if let Some(v) = a.min_difficulty_exp {
        c.stratum.min_difficulty_exp = v;
    }
    c
}

/// Run until Ctrl-C / SIGTERM.
pub async fn run(file: FileConfig, args: MintBridgeArgs) -> Result<()> {
    let config = apply_flags(file.mint_bridge, args);
    let bridge = MintBridge::start(config).await.context("starting the mint-bridge")?;
    println!("mint     {}", bridge.mint_url());
    println!("stratum  stratum+tcp://{}", bridge.stratum_addr());
    if let (Some(addr), Some(key)) = (bridge.sv2_addr(), bridge.sv2_authority_key()) {
        println!("sv2      stratum2+tcp://{addr}   (authority key {key})");
    }
    println!("epochs   {}/v1/ehash/epochs", bridge.mint_url());
    super::shutdown_signal().await;
    tracing::info!("shutting down");
    bridge.shutdown().await;
    Ok(())
}

/// Ask a running mint-bridge to close its active epoch.
pub async fn close_epoch(file: FileConfig, args: CloseEpochArgs) -> Result<()> {
    let dir = args.data_dir.unwrap_or(file.mint_bridge.data_dir.clone());
    let token = ehash_keyfile::read_admin_token(&dir)
        .with_context(|| format!("no admin token in {}; pass --data-dir of the running mint-bridge", dir.display()))?;
    let url = args.url.unwrap_or_else(|| file.mint_bridge.mint_url(file.mint_bridge.http_listen));
    let endpoint = format!("{}/admin/epoch/close", url.trim_end_matches('/'));
    let resp = bitreq::post(endpoint.as_str())
        .with_header("Authorization", format!("Bearer {token}"))
        .with_timeout(60)
        .send_async()
        .await
        .with_context(|| format!("cannot reach the mint-bridge at {url}; is it running? (pass --url)"))?;
    let body = resp.as_str().unwrap_or("").to_owned();
    if resp.status_code != 200 {
        bail!("the mint-bridge refused (HTTP {}): {body}", resp.status_code);
    }
    println!("{body}");
    Ok(())
}
