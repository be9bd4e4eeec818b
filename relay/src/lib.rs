//! # ehash-relay
//!
//! The market's nostr relay: nostr-sdk's local relay on LMDB storage. This first version is a
//! plain persistent relay; the market policy (kinds, schemas, pool keys, NIP-42, limits) builds
//! on it.

#![cfg_attr(test, allow(clippy::unwrap_used))]

use std::net::SocketAddr;
use std::path::PathBuf;

use nostr_lmdb::NostrLmdb;
use nostr_sdk::prelude::*;
use serde::{Deserialize, Serialize};

/// Relay errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Storage could not be opened.
    #[error("relay storage {path}: {reason}")]
    Storage {
        /// The LMDB directory.
        path: PathBuf,
        /// The cause.
        reason: String,
    },
    /// The listener could not be started.
    #[error("relay listen {addr}: {reason}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        reason: String,
    },
}

/// Relay configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// LMDB directory.
    pub data_dir: PathBuf,
    /// Listen address (port 0 picks a free port).
    pub listen: SocketAddr,
    /// LMDB map size in bytes (the most the database can grow to).
    pub map_size: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self { data_dir: PathBuf::from(".ehash/relay"), listen: SocketAddr::from(([127, 0, 0, 1], 7777)), map_size: 1 << 30 }
    }
}

/// A running relay.
#[derive(Debug, Clone)]
pub struct Relay {
    inner: LocalRelay,
    url: String,
}

impl Relay {
    /// Open storage and start serving.
    pub async fn start(config: &Config) -> Result<Self, Error> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| Error::Storage { path: config.data_dir.clone(), reason: e.to_string() })?;
        let db = NostrLmdb::builder(&config.data_dir)
            .map_size(config.map_size)
            .build()
            .await
            .map_err(|e| Error::Storage { path: config.data_dir.clone(), reason: e.to_string() })?;
        let mut builder = LocalRelay::builder().addr(config.listen.ip()).database(db);
        if config.listen.port() != 0 {
            builder = builder.port(config.listen.port());
        }
        let inner = builder.build();
        inner.run().await.map_err(|e| Error::Listen { addr: config.listen, reason: e.to_string() })?;
        let url = inner.url().await.to_string();
        Ok(Self { inner, url })
    }

    /// The relay's WebSocket URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stop serving.
    pub fn shutdown(&self) {
        self.inner.shutdown();
    }
}
