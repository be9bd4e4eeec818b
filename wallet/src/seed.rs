//! The wallet seed: a BIP39 mnemonic kept in `mnemonic.txt` (mode 0600) in the wallet
//! directory. cdk derives every secret (NUT-13) from the 64-byte BIP39 seed, so the words alone
//! restore the wallet.

use std::fs;
use std::path::Path;

use bip39::Mnemonic;

use crate::{Error, Result};

/// File holding the mnemonic.
pub const MNEMONIC_FILE: &str = "mnemonic.txt";

/// Read the wallet's mnemonic, or create one. Returns it and whether it was just created (so the
/// caller can show it to the user once).
pub fn load_or_create(dir: &Path) -> Result<(Mnemonic, bool)> {
    let path = dir.join(MNEMONIC_FILE);
    match fs::read_to_string(&path) {
        Ok(words) => {
            let m = Mnemonic::parse(words.trim())
                .map_err(|e| Error::Seed(format!("{}: not a BIP39 mnemonic ({e}); restore the file from your backup", path.display())))?;
            Ok((m, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let m = Mnemonic::generate(12).map_err(|e| Error::Seed(format!("generating a mnemonic: {e}")))?;
            ehash_keyfile::write_private(&path, format!("{m}\n").as_bytes()).map_err(|e| Error::Seed(e.to_string()))?;
            Ok((m, true))
        }
        Err(e) => Err(Error::Seed(format!("{}: {e}", path.display()))),
    }
}

/// The 64-byte seed of a mnemonic (no passphrase).
pub fn seed_of(m: &Mnemonic) -> [u8; 64] {
    m.to_seed("")
}
