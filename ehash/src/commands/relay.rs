//! `ehash relay`: run the nostr relay.

use anyhow::{Context, Result};

use crate::RelayArgs;
use crate::config::FileConfig;

/// Run until Ctrl-C / SIGTERM.
pub async fn run(file: FileConfig, a: RelayArgs) -> Result<()> {
    let mut c = file.relay;
    if let Some(v) = a.data_dir {
        c.data_dir = v;
    }
    if let Some(v) = a.listen {
        c.listen = v;
    }
    if let Some(v) = a.map_size {
        c.map_size = v;
    }
    let relay = ehash_relay::Relay::start(&c).await.context("starting the relay")?;
    println!("relay    {}", relay.url());
    super::shutdown_signal().await;
    relay.shutdown();
    Ok(())
}
