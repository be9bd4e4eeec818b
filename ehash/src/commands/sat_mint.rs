//! `ehash sat-mint`: a development sat mint (cdk, unit `sat`, fake Lightning) until Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::config::FileConfig;

/// `ehash sat-mint` flags (each overrides the `[sat_mint]` config key of the same name).
#[derive(Debug, Args, Default)]
pub struct SatMintArgs {
    /// Cashu HTTP API listen address; port 0 picks a free one (default `[sat_mint].listen`,
    /// 127.0.0.1:3340).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Data directory: the mint's seed and SQLite database (default `[sat_mint].data_dir`,
    /// .ehash/sat-mint).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The URL wallets use, if it differs from http://<listen> (e.g. behind a reverse proxy).
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// NUT-02 input fee, parts per thousand per input proof; a swap pays ceil(sum / 1000) sats
    /// (default `[sat_mint].input_fee_ppk`, 0).
    #[arg(long, value_name = "PPK")]
    pub input_fee_ppk: Option<u64>,
    /// Largest single Lightning deposit (bolt11 quote), sats (default `[sat_mint].max_deposit`,
    /// 100000000).
    #[arg(long, value_name = "SATS")]
    pub max_deposit: Option<u64>,
}

/// Apply flags over the layered `[sat_mint]` section.
pub fn apply_flags(mut c: ehash_satmint::Config, a: SatMintArgs) -> ehash_satmint::Config {
    if let Some(v) = a.listen {
        c.listen = v;
    }
    if let Some(v) = a.data_dir {
        c.data_dir = v;
    }
    if let Some(v) = a.public_url {
        c.public_url = Some(v);
    }
    if let Some(v) = a.input_fee_ppk {
        c.input_fee_ppk = v;
    }
    if let Some(v) = a.max_deposit {
        c.max_deposit = v;
    }
    c
}

/// Run the sat mint until Ctrl-C / SIGTERM.
pub async fn run(file: FileConfig, a: SatMintArgs) -> Result<()> {
    let c = apply_flags(file.sat_mint, a);
    let mint = ehash_satmint::SatMint::start(&c).await.context("starting the sat mint")?;
    println!("sat mint  {}   (FAKE Lightning: every invoice is paid; never use it for real money)", mint.url());
    println!("data      {}", c.data_dir.display());
    if c.input_fee_ppk > 0 {
        println!("fee       {} ppk per input", c.input_fee_ppk);
    }
    println!("deposit   ehash wallet deposit --sat-mint {} AMOUNT", mint.url());
    super::shutdown_signal().await;
    mint.shutdown().await;
    Ok(())
}
