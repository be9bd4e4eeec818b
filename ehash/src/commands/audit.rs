//! `ehash audit EPOCH`: recompute one epoch's books from public data.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::config::FileConfig;

/// The long help of `ehash audit`.
pub const LONG_ABOUT: &str = "Recompute a closed epoch's books from public data and report every \
    mismatch (protocol §12). Reads the pool's signed epoch announcement (kind 38180) from the \
    relays and the share log and liabilities its mint serves (GET /v1/ehash/epochs/N/log, \
    /liabilities), then checks: every share is real work at the difficulty it was credited at and \
    was credited exactly what that difficulty earns; the log hashes to the root the pool \
    committed to when the epoch closed (a log changed afterwards does not); the log's total is \
    the issued total the pool announced, and its size the share count; and the mint has no more \
    ecash outstanding in the epoch's keyset than was credited. Exits with an error if any check \
    fails.\n\n\
    The pool key is the one the mint names unless --pool pins it. Defaults: [wallet].mint_url and \
    [wallet].relays.";

/// `ehash audit` arguments.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// The epoch number.
    pub epoch: u32,
    /// The pool's mint URL (default `[wallet].mint_url`).
    #[arg(long, value_name = "URL")]
    pub mint_url: Option<String>,
    /// A relay to read the pool's announcements from (repeatable; default `[wallet].relays`).
    #[arg(long = "relay", value_name = "URL")]
    pub relays: Vec<String>,
    /// The pool's nostr public key (hex); by default the one the mint names.
    #[arg(long, value_name = "HEX")]
    pub pool: Option<String>,
}

/// Run the audit and print it.
pub async fn run(file: FileConfig, a: AuditArgs) -> Result<()> {
    let mint = a.mint_url.unwrap_or(file.wallet.mint_url);
    let relays = if a.relays.is_empty() { file.wallet.relays } else { a.relays };
    if relays.is_empty() {
        bail!("no relay to read the pool's announcements from: pass --relay URL (or set [wallet].relays)");
    }
    let pool = match a.pool {
        Some(p) => p,
        None => ehash_wallet::audit::pool_of(&mint).await.with_context(|| format!("asking {mint} for its pool key (or pass --pool)"))?,
    };
    let report = ehash_wallet::audit::retry(Duration::from_secs(5), || ehash_wallet::audit::audit_epoch(&mint, &relays, &pool, a.epoch))
        .await
        .with_context(|| format!("auditing epoch {}", a.epoch))?;
    println!("epoch {} ({}) at {mint}, pool {pool}", report.epoch, report.unit);
    for f in &report.findings {
        println!("  {} {:<12} {}", if f.ok { "ok  " } else { "FAIL" }, f.check, f.detail);
    }
    if !report.passed() {
        bail!("epoch {}'s books do not check out ({} of {} checks failed)", report.epoch, report.findings.iter().filter(|f| !f.ok).count(), report.findings.len());
    }
    println!("OK: epoch {}'s books check out", report.epoch);
    Ok(())
}
