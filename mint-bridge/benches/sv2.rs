//! Figures, not a timed test: durable shares credited per second over Stratum V2 (Noise-encrypted,
//! one standard channel per connection) with 1 and 64 channels, beside the same over Stratum V1
//! with 1 and 64 connections, against one pool in the same run (SQLite), the two protocols taking
//! turns (the median of three turns each). Each share is validated,
//! recorded in a group and answered only once its group committed, over either protocol.
//!
//! Goal: SV2 within 20% of SV1 at the same number of miners (the encryption and framing are the
//! only difference in the pool's path).
//!
//! Run: `cargo bench -p ehash-mint-bridge --bench sv2` (`EHASH_BENCH_SECS` per figure, default 5).
//! The load generator runs in this process, on the same two cores.
#![allow(missing_docs, clippy::unwrap_used)]

mod load;

use ehash_mint_bridge::MintBridge;
use ehash_mint_bridge::config::DatabaseConfig;
use load::{Proto, config, load, secs};

/// Turns each protocol takes per figure.
const ROUNDS: usize = 3;

async fn figures() {
    let d = secs();
    let dir = tempfile::tempdir().unwrap();
    let bridge = MintBridge::start(config(dir.path(), &DatabaseConfig::Sqlite)).await.unwrap();
    let wallet = ehash_wallet::MinerWallet::open(&dir.path().join("w.sqlite"), bridge.mint_url(), [1; 64]).await.unwrap();
    println!("== Stratum V2 beside V1 (SQLite, WAL, synchronous = FULL)");
    for miners in [1u64, 64] {
        // V1 and V2 take turns, three rounds each, and each reports its median: the disk's
        // commit latency drifts over a run, and alternating spreads the drift over both
        let mut rates = [vec![], vec![]];
        for round in 0..ROUNDS {
            for (i, proto) in [Proto::V1, Proto::V2].into_iter().enumerate() {
                let quote = wallet.create_quote(&bridge.epochs().current().await.unwrap().unit).await.unwrap();
                let (rate, _) = load(&bridge, &quote, miners, d, proto).await;
                eprintln!("  round {round}: {proto:?}, {miners} miners: {rate:.0} shares/s");
                rates[i].push(rate);
            }
        }
        let median = |r: &mut Vec<f64>| {
            r.sort_by(f64::total_cmp);
            r[r.len() / 2]
        };
        let (v1, v2) = (median(&mut rates[0]), median(&mut rates[1]));
        let ratio = 100.0 * v2 / v1.max(1.0);
        println!(
            "{miners:>3} miners: SV1 {v1:>8.0} shares/s | SV2 {v2:>8.0} shares/s = {ratio:>4.0}% of SV1 ({} the goal of >= 80%)",
            if ratio >= 80.0 { "meets" } else { "BELOW" }
        );
    }
    let pool = bridge.sv2_stats().unwrap();
    println!("SV2 totals: {} shares accepted, {} ehash credited, {} rejected", pool.accepted, pool.credited, pool.rejected.iter().map(|(_, n)| n).sum::<u64>());
    bridge.shutdown().await;
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(figures());
}
