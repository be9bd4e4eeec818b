//! # ehash-keyfile
//!
//! Long-lived secrets kept as hex files in a data directory with mode 0600, created on first use
//! (written to a temporary file, synced, then renamed), and refused with an error naming the
//! file when damaged:
//!
//! - `mint-seed.hex`: the pool's 64-byte mint seed, from which cdk derives every keyset (losing
//!   it makes outstanding ehash unverifiable, so back it up);
//! - `nostr.key`: a nostr secret key (the pool's, or a wallet's for NIP-60), unless configured;
//! - `admin.token`: the mint-bridge's bearer token for `/admin/*`.
#![cfg_attr(test, allow(clippy::unwrap_used))]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rand::RngCore;

/// Key file errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file holds something unusable.
    #[error("{path}: {reason}; restore the original file or remove it to start a new identity")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A configured key is not a key.
    #[error("{0}")]
    BadConfigured(String),
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The seed file name.
pub const SEED_FILE: &str = "mint-seed.hex";
/// The nostr key file name.
pub const NOSTR_KEY_FILE: &str = "nostr.key";
/// The admin token file name.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
/// The Stratum V2 authority key file name.
pub const SV2_AUTHORITY_KEY_FILE: &str = "sv2-authority.key";

/// The mint seed: read it, or create it on first start.
pub fn load_or_create_seed(dir: &Path) -> Result<[u8; 64]> {
    let bytes = load_or_create_hex(&dir.join(SEED_FILE), 64)?;
    let mut seed = [0u8; 64];
    seed.copy_from_slice(&bytes);
    Ok(seed)
}

/// The pool's nostr keys: from the config value (hex or nsec), or the key file, created if absent.
pub fn load_or_create_nostr_keys(dir: &Path, configured: Option<&str>) -> Result<nostr_sdk::prelude::Keys> {
    if let Some(secret) = configured {
        return nostr_sdk::prelude::Keys::parse(secret.trim())
            .map_err(|e| Error::BadConfigured(format!("nostr_secret_key: {e} (expected 64 hex digits or nsec1…)")));
    }
    let path = dir.join(NOSTR_KEY_FILE);
    let bytes = load_or_create_hex(&path, 32)?;
    nostr_sdk::prelude::Keys::parse(&hex::encode(bytes)).map_err(|e| Error::Damaged { path, reason: e.to_string() })
}

/// The pool's Stratum V2 authority secret key (32 bytes, kept as hex in a file only its owner
/// reads): read it, or create it on first start.
pub fn load_or_create_sv2_authority_key(dir: &Path) -> Result<[u8; 32]> {
    let bytes = load_or_create_hex(&dir.join(SV2_AUTHORITY_KEY_FILE), 32)?;
    let mut key = [0u8; 32];
    key.copy_from_slice(&bytes);
    Ok(key)
}

/// The admin bearer token: read it, or create it on first start.
pub fn load_or_create_admin_token(dir: &Path) -> Result<String> {
    Ok(hex::encode(load_or_create_hex(&dir.join(ADMIN_TOKEN_FILE), 32)?))
}

/// Read the admin token written by a running or past mint-bridge.
pub fn read_admin_token(dir: &Path) -> Result<String> {
    let path = dir.join(ADMIN_TOKEN_FILE);
    let text = fs::read_to_string(&path).map_err(|source| Error::Io { path: path.clone(), source })?;
    Ok(text.trim().to_owned())
}

fn load_or_create_hex(path: &Path, len: usize) -> Result<Vec<u8>> {
    match fs::read_to_string(path) {
        Ok(text) => {
            let bytes = hex::decode(text.trim()).map_err(|e| Error::Damaged {
                path: path.to_owned(),
                reason: format!("not hex: {e}"),
            })?;
            if bytes.len() != len {
                return Err(Error::Damaged {
                    path: path.to_owned(),
                    reason: format!("expected {len} bytes, found {}", bytes.len()),
                });
            }
            Ok(bytes)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = vec![0u8; len];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            write_private(path, hex::encode(&bytes).as_bytes())?;
            Ok(bytes)
        }
        Err(source) => Err(Error::Io { path: path.to_owned(), source }),
    }
}

/// Write a file readable only by its owner, atomically (temp file, fsync, rename).
pub fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    let err = |source| Error::Io { path: path.to_owned(), source };
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(err)?;
    }
    let tmp: PathBuf = path.with_extension("tmp");
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(err)?;
    f.write_all(contents).map_err(err)?;
    f.sync_all().map_err(err)?;
    fs::rename(&tmp, path).map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_persist_and_bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_seed(dir.path()).unwrap();
        let b = load_or_create_seed(dir.path()).unwrap();
        assert_eq!(a, b);
        let k1 = load_or_create_nostr_keys(dir.path(), None).unwrap();
        let k2 = load_or_create_nostr_keys(dir.path(), None).unwrap();
        assert_eq!(k1.public_key(), k2.public_key());
        fs::write(dir.path().join(SEED_FILE), "abcd").unwrap();
        let e = load_or_create_seed(dir.path()).unwrap_err().to_string();
        assert!(e.contains(SEED_FILE) && e.contains("expected 64 bytes"), "{e}");
        assert!(load_or_create_nostr_keys(dir.path(), Some("nope")).is_err());
    }
}
