//! `ehash wallet`: the user's ehash.

use std::str::FromStr;

use anyhow::{Context, Result, bail};
use ehash_wallet::announced::AnnouncedKeysets;
use ehash_wallet::{MinerWallet, seed};
use nostr_sdk::prelude::Keys;

use crate::WalletAction;

async fn open(c: &ehash_wallet::Config) -> Result<MinerWallet> {
    if !c.dir.join(seed::MNEMONIC_FILE).exists() {
        bail!("no wallet in {}; run `ehash wallet init` (or `ehash wallet restore --words …`)", c.dir.display());
    }
    let (m, _) = seed::load_or_create(&c.dir)?;
    Ok(MinerWallet::open(&c.dir.join("wallet.sqlite"), &c.mint_url, seed::seed_of(&m)).await?)
}

fn nostr_keys(c: &ehash_wallet::Config) -> Result<Keys> {
    Ok(ehash_keyfile::load_or_create_nostr_keys(&c.dir, c.nostr_secret_key.as_deref())?)
}

/// Run one wallet action.
pub async fn run(c: ehash_wallet::Config, action: WalletAction) -> Result<()> {
    match action {
        WalletAction::Init => {
            let (m, created) = seed::load_or_create(&c.dir)?;
            if !created {
                bail!("a wallet already exists in {}; its words are in {}", c.dir.display(), c.dir.join(seed::MNEMONIC_FILE).display());
            }
            let keys = nostr_keys(&c)?;
            println!("New wallet in {}.", c.dir.display());
            println!("Write these words down now; they restore the wallet and are shown only once:\n\n    {m}\n");
            println!("nostr key for NIP-60 backups: {} (secret in {})", keys.public_key().to_hex(), c.dir.join("nostr.key").display());
        }
        WalletAction::Balance => {
            let w = open(&c).await?;
            let b = w.balances().await?;
            if b.is_empty() {
                println!("0 (no ehash yet)");
            }
            for (unit, n) in b {
                println!("{n:>14} {unit}");
            }
        }
        WalletAction::Mint => {
            let w = open(&c).await?;
            println!("minted {}", w.mint_all_credited().await?);
        }
        WalletAction::Send { unit, amount, lock } => {
            let w = open(&c).await?;
            let lock = lock
                .map(|k| cdk::nuts::PublicKey::from_str(&k).with_context(|| format!("--lock {k:?} is not a public key")))
                .transpose()?;
            println!("{}", w.send(&unit, amount, lock).await?);
        }
        WalletAction::Receive { token, p2pk_key } => {
            let w = open(&c).await?;
            let keys = p2pk_key
                .map(|k| cdk::nuts::SecretKey::from_str(&k).with_context(|| "--p2pk-key is not a secret key"))
                .transpose()?
                .into_iter()
                .collect();
            let announced = if c.relays.is_empty() {
                None
            } else {
                let pool = ehash_wallet::pool_epochs(&c.mint_url).await?.pool_pubkey;
                Some(AnnouncedKeysets::fetch(&c.relays, &pool, &c.mint_url).await?)
            };
            let (unit, n) = w.receive(&token, keys, announced.as_ref()).await?;
            println!("received {n} {unit}");
        }
        WalletAction::History => {
            let w = open(&c).await?;
            for (unit, dir, n, t) in w.history().await? {
                println!("{t} {dir:<9} {n:>12} {unit}");
            }
        }
        WalletAction::Restore { words } => {
            let m = bip39::Mnemonic::from_str(words.trim()).context("--words is not a BIP39 mnemonic")?;
            if c.dir.join(seed::MNEMONIC_FILE).exists() {
                let (existing, _) = seed::load_or_create(&c.dir)?;
                if existing != m {
                    bail!("{} already holds a different wallet; restore into an empty --dir", c.dir.display());
                }
            } else {
                ehash_keyfile::write_private(&c.dir.join(seed::MNEMONIC_FILE), format!("{m}\n").as_bytes())?;
            }
            let w = open(&c).await?;
            for (unit, n) in w.restore_from_seed().await? {
                println!("restored {n:>12} {unit}");
            }
        }
        WalletAction::Backup => {
            let w = open(&c).await?;
            let keys = nostr_keys(&c)?;
            let r = w.backup_nip60(&keys, &c.relays, &c.dir).await?;
            println!("published {:?}; unchanged {:?}", r.published, r.unchanged);
        }
        WalletAction::RestoreNostr { nsec } => {
            let keys = Keys::parse(nsec.trim()).context("--nsec is not a nostr secret key")?;
            if !c.dir.join(seed::MNEMONIC_FILE).exists() {
                seed::load_or_create(&c.dir)?;
            }
            let w = open(&c).await?;
            for (unit, n) in w.restore_nip60(&keys, &c.relays).await? {
                println!("restored {n:>12} {unit}");
            }
        }
    }
    Ok(())
}
