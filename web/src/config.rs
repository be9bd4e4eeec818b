//! `[web]` settings.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Web UI settings.
///
/// | key | default | meaning |
/// |-----|---------|---------|
/// | `listen` | `127.0.0.1:8080` | where the page is served |
/// | `exchange_url` | `http://127.0.0.1:8090` | the exchange's API as the *browser* reaches it |
/// | `sat_mints` | `[]` | sat mints the page suggests (each trusted by its user before use) |
/// | `relays` | `[]` | relays the page uses (empty: the exchange's, from `GET /api/info`) |
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Listen address (port 0 picks a free one).
    pub listen: SocketAddr,
    /// The exchange's base URL, as a browser opening the page reaches it.
    pub exchange_url: String,
    /// Sat mint URLs (`http(s)://…`).
    pub sat_mints: Vec<String>,
    /// Relay URLs (`ws(s)://…`).
    pub relays: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            exchange_url: "http://127.0.0.1:8090".into(),
            sat_mints: vec![],
            relays: vec![],
        }
    }
}

/// What `GET /config.json` tells the page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageConfig {
    /// The exchange's base URL (no trailing `/`).
    pub exchange: String,
    /// Sat mint URLs (no trailing `/`); may be empty.
    pub sat_mints: Vec<String>,
    /// Relay URLs; may be empty.
    pub relays: Vec<String>,
}

impl Config {
    /// Check the URLs (the page would fail on them later, far from the cause) and build what
    /// `/config.json` serves.
    pub fn page(&self) -> Result<PageConfig, crate::Error> {
        let exchange = checked(&self.exchange_url, &["http://", "https://"], "exchange_url (--exchange)")?;
        let sat_mints =
            self.sat_mints.iter().map(|u| checked(u, &["http://", "https://"], "sat_mints (--sat-mint)")).collect::<Result<_, _>>()?;
        let relays = self.relays.iter().map(|u| checked(u, &["ws://", "wss://"], "relays (--relay)")).collect::<Result<_, _>>()?;
        Ok(PageConfig { exchange, sat_mints, relays })
    }
}

/// `url` trimmed, without a trailing `/`, if it starts with one of `schemes` and names a host.
fn checked(url: &str, schemes: &[&str], what: &str) -> Result<String, crate::Error> {
    let u = url.trim().trim_end_matches('/');
    let ok = schemes.iter().any(|s| u.len() > s.len() && u[..s.len()].eq_ignore_ascii_case(s));
    if !ok || u.contains(char::is_whitespace) {
        return Err(crate::Error::Config(format!(
            "{what}: {url:?} is not a URL the browser can use; give {}host:port",
            schemes.join("host:port or ")
        )));
    }
    Ok(u.to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn urls_are_checked_and_trimmed() {
        let c = Config {
            exchange_url: "http://127.0.0.1:8090/".into(),
            sat_mints: vec!["https://mint.example/".into()],
            relays: vec!["wss://relay.example".into()],
            ..Default::default()
        };
        let p = c.page().unwrap();
        assert_eq!(p.exchange, "http://127.0.0.1:8090");
        assert_eq!(p.sat_mints, ["https://mint.example"]);
        assert_eq!(p.relays, ["wss://relay.example"]);
        let e = Config { exchange_url: "127.0.0.1:8090".into(), ..Default::default() }.page().unwrap_err().to_string();
        assert!(e.contains("exchange_url (--exchange)") && e.contains("http://host:port"), "{e}");
        let e = Config { relays: vec!["http://relay".into()], ..Default::default() }.page().unwrap_err().to_string();
        assert!(e.contains("relays (--relay)") && e.contains("ws://host:port or wss://host:port"), "{e}");
        let e = Config { sat_mints: vec!["http://".into()], ..Default::default() }.page().unwrap_err().to_string();
        assert!(e.contains("sat_mints"), "{e}");
    }
}
