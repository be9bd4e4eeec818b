//! `ehash web`: serve the web UI until Ctrl-C.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use clap::Args;

use crate::config::FileConfig;

/// The long help of `ehash web`.
pub const LONG_ABOUT: &str = "Serve the web UI until Ctrl-C: the browser page (embedded in this \
    binary) and /config.json, which points the page at an exchange, sat mints and relays. Open \
    the printed URL in a browser. The page talks to the exchange, the mints and the relays \
    directly, so each URL must be one the browser can reach; the server holds no keys and no \
    money (the page's wallet lives in the browser).\n\n\
    Without --relay the page uses the relays the exchange names (GET /api/info); without \
    --sat-mint, the sat mints named in offers. `ehash up` serves the page for its local market \
    itself. Settings: [web] (see ehash.example.toml); the flags override them.";

/// `ehash web` flags (each overrides the `[web]` config key named).
#[derive(Debug, Args, Default)]
pub struct WebArgs {
    /// Where the page is served; port 0 picks a free one (default `[web].listen`, 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// The exchange's HTTP API as the browser reaches it (default `[web].exchange_url`,
    /// http://127.0.0.1:8090).
    #[arg(long, value_name = "URL")]
    pub exchange: Option<String>,
    /// A sat mint the page offers for deposits (repeatable; replaces `[web].sat_mints`; default:
    /// the sat mints named in offers).
    #[arg(long = "sat-mint", value_name = "URL")]
    pub sat_mints: Vec<String>,
    /// A relay the page uses, ws:// or wss:// (repeatable; replaces `[web].relays`; default: the
    /// exchange's relays).
    #[arg(long = "relay", value_name = "URL")]
    pub relays: Vec<String>,
}

/// Apply flags over the layered `[web]` section.
pub fn apply_flags(mut c: ehash_web::Config, a: WebArgs) -> ehash_web::Config {
    if let Some(v) = a.listen {
        c.listen = v;
    }
    if let Some(v) = a.exchange {
        c.exchange_url = v;
    }
    if !a.sat_mints.is_empty() {
        c.sat_mints = a.sat_mints;
    }
    if !a.relays.is_empty() {
        c.relays = a.relays;
    }
    c
}

/// Run until Ctrl-C / SIGTERM.
pub async fn run(file: FileConfig, a: WebArgs) -> Result<()> {
    let c = apply_flags(file.web, a);
    let web = ehash_web::Web::start(c.clone()).await.context("starting the web UI")?;
    println!("web      {}   (open this in a browser to trade)", web.url());
    println!("exchange {}", c.exchange_url);
    let or = |v: &[String], dflt: &str| if v.is_empty() { dflt.to_owned() } else { v.join(", ") };
    println!("sat mint {}", or(&c.sat_mints, "those named in offers"));
    println!("relays   {}", or(&c.relays, "the exchange's (GET /api/info)"));
    super::shutdown_signal().await;
    web.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_section() {
        let a = WebArgs {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            exchange: Some("http://ex.example".into()),
            sat_mints: vec!["http://m1".into(), "http://m2".into()],
            relays: vec![],
        };
        let base = ehash_web::Config { relays: vec!["ws://r".into()], ..Default::default() };
        let c = apply_flags(base, a);
        assert_eq!(c.listen.port(), 0);
        assert_eq!(c.exchange_url, "http://ex.example");
        assert_eq!(c.sat_mints, ["http://m1", "http://m2"]);
        assert_eq!(c.relays, ["ws://r"]);
    }
}
