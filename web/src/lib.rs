//! # ehash-web
//!
//! Serves the ehash web UI (`ehash web`, and `ehash up` for the local market): the browser
//! bundle built from `web/ui` (TypeScript, bundled into `web/ui/dist`, committed, and embedded
//! here at build time, so building the binary needs only Rust) and a `/config.json` telling the
//! page which exchange, sat mints and relays to use. The page talks to those services directly
//! from the browser (they allow cross-origin calls; see `ehash-cors`); this server holds no
//! keys and no money.
//!
//! | route | answer |
//! |-------|--------|
//! | `GET /` | `index.html` |
//! | `GET /<file>` | that file of `web/ui/dist` (`/app.js`, `/app.css`, …) |
//! | `GET /config.json` | [`PageConfig`]: `{"exchange": URL, "sat_mints": [URL…], "relays": [URL…]}` |
//! | `GET /health` | `ok` |
//! | anything else | 404 |
//!
//! Every answer carries `Cache-Control: no-cache` (a rebuilt binary serves a new bundle at the
//! same paths).

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod assets;
pub mod config;
mod server;

pub use config::{Config, PageConfig};
pub use server::Web;

/// Web UI errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting the page could not use.
    #[error("web UI configuration: {0}")]
    Config(String),
    /// Binding the listen address.
    #[error("web UI listen {addr}: {source}; is another process using the port? (choose another --listen or [web].listen)")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
