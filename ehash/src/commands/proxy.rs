//! `ehash proxy`: run the mining proxy, or show a running one's status.

use anyhow::{Context, Result, bail};

use crate::config::FileConfig;
use crate::{ProxyArgs, ProxyStatusArgs};

/// Apply flags over the layered `[proxy]` section.
pub fn apply_flags(mut c: ehash_proxy::Config, a: ProxyArgs) -> ehash_proxy::Config {
    fn set<T>(slot: &mut T, v: Option<T>) {
        if let Some(v) = v {
            *slot = v;
        }
    }
    set(&mut c.listen, a.listen);
    set(&mut c.pool, a.pool);
    if a.pool_authority_key.is_some() {
        c.pool_authority_key = a.pool_authority_key;
    }
    set(&mut c.mint_url, a.mint_url);
    set(&mut c.status_listen, a.status_listen);
    set(&mut c.data_dir, a.data_dir);
    set(&mut c.wallet_dir, a.wallet_dir);
    set(&mut c.worker, a.worker);
    set(&mut c.mint_secs, a.mint_secs);
    set(&mut c.stratum.initial_difficulty_exp, a.initial_difficulty_exp);
    set(&mut c.stratum.min_difficulty_exp, a.min_difficulty_exp);
    c
}

/// Run until Ctrl-C / SIGTERM.
pub async fn run(file: FileConfig, a: ProxyArgs) -> Result<()> {
    let c = apply_flags(file.proxy, a);
    let (words, created) = ehash_wallet::seed::load_or_create(&c.wallet_dir)?;
    if created {
        println!("New wallet in {}. Write these words down now; they restore it and are shown only once:\n\n    {words}\n", c.wallet_dir.display());
    }
    let proxy = ehash_proxy::Proxy::start(c).await.context("starting the proxy")?;
    println!("miners   stratum+tcp://{}", proxy.local_addr());
    println!("status   http://{}/status   (ehash proxy status)", proxy.status_addr());
    super::shutdown_signal().await;
    proxy.shutdown();
    // give the last mint a moment
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    Ok(())
}

/// Print a running proxy's status.
pub async fn status(file: FileConfig, a: ProxyStatusArgs) -> Result<()> {
    let addr = a.status.unwrap_or(file.proxy.status_listen);
    let resp = bitreq::get(format!("http://{addr}/status"))
        .with_timeout(10)
        .send_async()
        .await
        .with_context(|| format!("no proxy answers at {addr}; is `ehash proxy` running? (pass --status)"))?;
    if resp.status_code != 200 {
        bail!("the proxy answered HTTP {}", resp.status_code);
    }
    let v: serde_json::Value = serde_json::from_str(resp.as_str()?)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let e = &v["earnings"];
    println!("upstream   {}", if v["upstream_connected"] == true { "connected" } else { "DISCONNECTED" });
    println!("miners     {}", v["miners"]);
    if v["miners"].as_u64().unwrap_or(0) == 0 {
        println!("hashrate   none (no miner connected)");
    } else {
        println!("hashrate   {:.3} MH/s (about the last 5 minutes)", v["hashrate"].as_f64().unwrap_or(0.0) / 1e6);
    }
    println!("shares     {} accepted, {} credited by the pool", v["shares_accepted"], v["shares_forwarded"]);
    println!("pool diff  {}", v["upstream_difficulty"]);
    for r in v["shares_rejected"].as_array().into_iter().flatten() {
        println!("rejected   code {}: {}", r[0], r[1]);
    }
    println!("mining to  {} (quote {})", e["unit"].as_str().unwrap_or("?"), e["quote_id"].as_str().unwrap_or("?"));
    for (unit, n) in e["credited"].as_object().into_iter().flatten() {
        println!("credited   {n} {unit}");
    }
    for (unit, n) in e["wallet"].as_object().into_iter().flatten() {
        println!("wallet     {n} {unit}");
    }
    let redeemed = e["redeemed_sats"].as_u64().unwrap_or(0);
    if redeemed > 0 {
        println!("REDEEMED   {redeemed} sat from matured epochs (auto_redeem)");
    }
    let excluded = e["excluded_shares"].as_u64().unwrap_or(0);
    if excluded > 0 {
        println!("AUDIT      {excluded} accepted share(s) missing from, or miscredited in, the pool's share logs of closed epochs (see the log)");
    }
    let shortfall = e["shortfall"].as_u64().unwrap_or(0);
    if shortfall > 0 {
        println!("AUDIT      the pool credited {shortfall} ehash less than the shares it accepted");
    } else {
        println!("audit      ok ({} shares logged)", e["logged_shares"]);
    }
    if let Some(err) = e["last_error"].as_str() {
        println!("last error {err}");
    }
    Ok(())
}
