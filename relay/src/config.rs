//! Relay configuration.
//!
//! | key | default | meaning |
//! |-----|---------|---------|
//! | `data_dir` | `.ehash/relay` | LMDB store and the expiry index |
//! | `listen` | `127.0.0.1:7777` | bind address (WebSocket, NIP-11, `/health`, `/metrics` on one port) |
//! | `public_url` | `ws://<listen>` | the URL clients use (behind a TLS proxy: `wss://relay.example.com`); NIP-42 AUTH checks it |
//! | `public_urls` | `[]` | more URLs clients reach the relay at (other host names, ports); an AUTH naming any of them, or `public_url`, is accepted |
//! | `map_size` | 1 GiB | LMDB map size: the most the database can grow to |
//! | `pool_keys` | `[]` | nostr keys (hex or npub) allowed to publish mint and epoch announcements |
//! | `exchange_keys` | `[]` | nostr keys allowed to publish trade events |
//! | `extra_kinds` | `[]` | kinds accepted in addition to the built-in allow-list |
//! | `expiry_sweep_secs` | 60 | how often NIP-40-expired events are deleted from disk |
//! | `limits.*` | see [`Limits`] | sizes, rates and caps |
//! | `info.*` | see [`Info`] | the NIP-11 document |

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The relay configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// LMDB directory (also holds `expiry.sqlite`).
    pub data_dir: PathBuf,
    /// Listen address (port 0 picks a free port).
    pub listen: SocketAddr,
    /// The URL clients reach the relay at; defaults to `ws://<listen>`.
    pub public_url: Option<String>,
    /// Other URLs clients reach the relay at; NIP-42 AUTH events naming any of them are accepted
    /// too. A loopback public URL (`127.0.0.1`, `localhost`, `[::1]`) also accepts the other
    /// loopback names on the same port without listing them.
    pub public_urls: Vec<String>,
    /// LMDB map size in bytes.
    pub map_size: usize,
    /// Keys allowed to publish kind 38172 and 38180 (hex or npub).
    pub pool_keys: Vec<String>,
    /// Keys allowed to publish trade events (hex or npub).
    pub exchange_keys: Vec<String>,
    /// Kinds accepted besides the built-in allow-list.
    pub extra_kinds: Vec<u16>,
    /// Seconds between sweeps that delete expired events.
    pub expiry_sweep_secs: u64,
    /// Limits.
    pub limits: Limits,
    /// NIP-11 information.
    pub info: Info,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(".ehash/relay"),
            listen: SocketAddr::from(([127, 0, 0, 1], 7777)),
            public_url: None,
            public_urls: vec![],
            map_size: 1 << 30,
            pool_keys: vec![],
            exchange_keys: vec![],
            extra_kinds: vec![],
            expiry_sweep_secs: 60,
            limits: Limits::default(),
            info: Info::default(),
        }
    }
}

/// Sizes, rates and caps. The event and query budgets belong to the client's address (every
/// connection from one IP address spends the same budget, and reconnecting does not refill it);
/// the message rate is per connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Open connections in total.
    pub max_connections: usize,
    /// Open connections from one IP address.
    pub max_connections_per_ip: usize,
    /// Largest WebSocket message, bytes.
    pub max_message_bytes: usize,
    /// Largest event, bytes.
    pub max_event_bytes: usize,
    /// EVENTs per minute per client address (a token bucket: up to a minute's worth at once,
    /// refilled continuously).
    pub events_per_minute: u32,
    /// REQs, COUNTs and NEG-OPENs per minute per client address (a token bucket, as events).
    pub reqs_per_minute: u32,
    /// Messages of any kind per minute per connection (exceeding it closes the connection).
    pub messages_per_minute: u32,
    /// Open subscriptions per connection.
    pub max_subscriptions: usize,
    /// Filters in one REQ.
    pub max_filters: usize,
    /// Largest `limit` honoured in a filter (larger ones are lowered).
    pub max_limit: usize,
    /// Longest subscription id.
    pub max_subid_length: usize,
    /// Most ids, authors, kinds or tag values in one filter.
    pub max_filter_values: usize,
    /// Seconds an event's `created_at` may be ahead of the relay's clock.
    pub max_future_secs: u64,
    /// Seconds a client may leave outgoing messages unread before it is disconnected.
    pub slow_consumer_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            max_connections_per_ip: 64,
            max_message_bytes: 512 * 1024,
            max_event_bytes: 128 * 1024,
            events_per_minute: 600,
            reqs_per_minute: 600,
            messages_per_minute: 6000,
            max_subscriptions: 64,
            max_filters: 16,
            max_limit: 1000,
            max_subid_length: 128,
            max_filter_values: 1000,
            max_future_secs: 900,
            slow_consumer_secs: 10,
        }
    }
}

/// The NIP-11 relay information document.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Info {
    /// Relay name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Operator's nostr public key (hex), if any.
    pub pubkey: Option<String>,
    /// Operator contact (URI), if any.
    pub contact: Option<String>,
}

impl Default for Info {
    fn default() -> Self {
        Self {
            name: "ehash relay".into(),
            description: "The ehash market's relay: mints, epochs, offers and trades of mining-share ecash.".into(),
            pubkey: None,
            contact: None,
        }
    }
}

impl Config {
    /// Every URL an AUTH event may name: the public URL, `public_urls`, and for a loopback public
    /// URL the other loopback names on its port.
    pub fn auth_urls(&self, bound: SocketAddr) -> Vec<String> {
        let public = self.public_url(bound);
        let mut urls = vec![public.clone()];
        urls.extend(self.public_urls.iter().map(|u| u.trim().trim_end_matches('/').to_owned()));
        if let Some((scheme, rest)) = public.split_once("://") {
            const LOOPBACK: [&str; 3] = ["127.0.0.1", "localhost", "[::1]"];
            let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
            let (host, port) = match authority.rsplit_once(':') {
                Some((h, p)) if !p.contains(']') => (h, Some(p)),
                _ => (authority, None),
            };
            if LOOPBACK.iter().any(|l| l.eq_ignore_ascii_case(host)) {
                for other in LOOPBACK {
                    let port = port.map(|p| format!(":{p}")).unwrap_or_default();
                    let path = if path.is_empty() { String::new() } else { format!("/{path}") };
                    urls.push(format!("{scheme}://{other}{port}{path}"));
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        urls.retain(|u| seen.insert(u.to_ascii_lowercase()));
        urls
    }

    /// The public URL, without a trailing slash.
    pub fn public_url(&self, bound: SocketAddr) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("ws://{bound}"))
            .trim_end_matches('/')
            .to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_accepts_every_public_name_and_the_loopback_aliases() {
        let bound: SocketAddr = "127.0.0.1:7777".parse().unwrap();
        let urls = Config::default().auth_urls(bound);
        for u in ["ws://127.0.0.1:7777", "ws://localhost:7777", "ws://[::1]:7777"] {
            assert!(urls.iter().any(|x| x == u), "{u} in {urls:?}");
        }
        let c = Config {
            public_url: Some("wss://relay.example.com/".into()),
            public_urls: vec!["wss://market.example.org".into()],
            ..Default::default()
        };
        assert_eq!(c.auth_urls(bound), ["wss://relay.example.com", "wss://market.example.org"]);
    }
}
