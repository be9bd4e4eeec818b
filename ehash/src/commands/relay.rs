//! `ehash relay`: run the nostr relay.

use anyhow::{Context, Result};

use crate::RelayArgs;
use crate::config::FileConfig;

/// Apply flags over the layered `[relay]` section.
pub fn apply_flags(mut c: ehash_relay::Config, a: RelayArgs) -> ehash_relay::Config {
    fn set<T>(slot: &mut T, v: Option<T>) {
        if let Some(v) = v {
            *slot = v;
        }
    }
    set(&mut c.data_dir, a.data_dir);
    set(&mut c.listen, a.listen);
    set(&mut c.public_url, a.public_url.map(Some));
    set(&mut c.map_size, a.map_size);
    if !a.public_urls.is_empty() {
        c.public_urls = a.public_urls;
    }
    if !a.pool_keys.is_empty() {
        c.pool_keys = a.pool_keys;
    }
    if !a.exchange_keys.is_empty() {
        c.exchange_keys = a.exchange_keys;
    }
    if !a.extra_kinds.is_empty() {
        c.extra_kinds = a.extra_kinds;
    }
    set(&mut c.expiry_sweep_secs, a.expiry_sweep_secs);
    let l = &mut c.limits;
    set(&mut l.max_connections, a.max_connections);
    set(&mut l.max_connections_per_ip, a.max_connections_per_ip);
    set(&mut l.max_message_bytes, a.max_message_bytes);
    set(&mut l.max_event_bytes, a.max_event_bytes);
    set(&mut l.events_per_minute, a.events_per_minute);
    set(&mut l.reqs_per_minute, a.reqs_per_minute);
    set(&mut l.messages_per_minute, a.messages_per_minute);
    set(&mut l.max_subscriptions, a.max_subscriptions);
    set(&mut l.max_filters, a.max_filters);
    set(&mut l.max_limit, a.max_limit);
    set(&mut l.max_subid_length, a.max_subid_length);
    set(&mut l.max_filter_values, a.max_filter_values);
    set(&mut l.max_future_secs, a.max_future_secs);
    set(&mut l.slow_consumer_secs, a.slow_consumer_secs);
    set(&mut c.info.name, a.name);
    set(&mut c.info.description, a.description);
    set(&mut c.info.pubkey, a.operator_pubkey.map(Some));
    set(&mut c.info.contact, a.contact.map(Some));
    c
}

/// Run until Ctrl-C / SIGTERM.
pub async fn run(file: FileConfig, a: RelayArgs) -> Result<()> {
    let c = apply_flags(file.relay, a);
    let relay = ehash_relay::Relay::start(&c).await.context("starting the relay")?;
    println!("relay    {}", relay.url());
    println!("metrics  http://{}/metrics", relay.local_addr());
    super::shutdown_signal().await;
    relay.shutdown();
    Ok(())
}
