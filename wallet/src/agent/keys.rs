//! Offer keys: a fresh nostr key per offer, derived from the wallet seed at BIP-32 path
//! `m/129373'/11'/<index>'` (the NUT-13 purpose, an account of its own), so a wallet restored
//! from its words can find its offers and trades again. The key signs the offer and the
//! settlement messages, and is the offer's Cashu lock key (`02 ‖ x-only key`).

use bitcoin::bip32::{ChildNumber, Xpriv};
use bitcoin::secp256k1::Secp256k1;
use nostr_sdk::prelude::{Keys, SecretKey};

use crate::{Error, Result};

/// NUT-13 derivation purpose.
const PURPOSE: u32 = 129373;
/// The account under it used for offer keys.
const ACCOUNT: u32 = 11;

/// The key of offer number `index`.
pub fn offer_keys(seed: &[u8; 64], index: u32) -> Result<Keys> {
    let secp = Secp256k1::new();
    let master = Xpriv::new_master(bitcoin::NetworkKind::Main, seed).map_err(|e| Error::Seed(format!("offer key: {e}")))?;
    let path = [PURPOSE, ACCOUNT, index]
        .into_iter()
        .map(ChildNumber::from_hardened_idx)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Seed(format!("offer key path: {e}")))?;
    let child = master.derive_priv(&secp, &path).map_err(|e| Error::Seed(format!("offer key: {e}")))?;
    let secret = SecretKey::from_slice(&child.private_key.secret_bytes()).map_err(|e| Error::Seed(format!("offer key: {e}")))?;
    Ok(Keys::new(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offer_keys_are_deterministic_and_distinct() {
        let a = offer_keys(&[1; 64], 0).unwrap();
        assert_eq!(a.public_key(), offer_keys(&[1; 64], 0).unwrap().public_key());
        assert_ne!(a.public_key(), offer_keys(&[1; 64], 1).unwrap().public_key());
        assert_ne!(a.public_key(), offer_keys(&[2; 64], 0).unwrap().public_key());
    }
}
