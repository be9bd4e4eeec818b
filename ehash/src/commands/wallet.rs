//! `ehash wallet`: the user's ehash.

use std::collections::BTreeMap;
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use cdk::cdk_database::WalletDatabase;
use cdk::mint_url::MintUrl;
use cdk::nuts::{CurrencyUnit, State};
use ehash_wallet::announced::AnnouncedKeysets;
use ehash_wallet::{DepositOutcome, MinerWallet, seed};
use nostr_sdk::prelude::Keys;

use crate::WalletAction;

/// Open the wallet in `c.dir` (it must exist).
pub(crate) async fn open(c: &ehash_wallet::Config) -> Result<MinerWallet> {
    if !c.dir.join(seed::MNEMONIC_FILE).exists() {
        bail!("no wallet in {}; run `ehash wallet init` (or `ehash wallet restore --words …`)", c.dir.display());
    }
    let (m, _) = seed::load_or_create(&c.dir)?;
    Ok(MinerWallet::open(&c.dir.join("wallet.sqlite"), &c.mint_url, seed::seed_of(&m)).await?)
}

fn nostr_keys(c: &ehash_wallet::Config) -> Result<Keys> {
    Ok(ehash_keyfile::load_or_create_nostr_keys(&c.dir, c.nostr_secret_key.as_deref())?)
}

/// Sats this wallet holds at sat mints: every sat mint its database holds unspent sats at, and
/// each of `sat_mints` (0 if none). Reads the database only (no network).
async fn sat_balances(c: &ehash_wallet::Config, sat_mints: &[String]) -> Result<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    for m in sat_mints {
        let url = MintUrl::from_str(m).with_context(|| format!("--sat-mint {m:?} is not a mint URL"))?;
        out.insert(url.to_string(), 0u64);
    }
    let path = c.dir.join("wallet.sqlite");
    let db = cdk_sqlite::WalletSqliteDatabase::new(&path).await.with_context(|| format!("opening {}", path.display()))?;
    let proofs = db
        .get_proofs(None, Some(CurrencyUnit::Sat), Some(vec![State::Unspent]), None)
        .await
        .with_context(|| format!("reading sat balances from {}", path.display()))?;
    for p in proofs {
        let n = out.entry(p.mint_url.to_string()).or_default();
        *n = n.saturating_add(p.proof.amount.to_u64());
    }
    Ok(out)
}

/// Add the ehash quote `id`, made elsewhere and locked to the public key of `key` (hex), to the
/// wallet, so `ehash wallet mint` mints its credit. Returns its epoch.
async fn import_quote(c: &ehash_wallet::Config, w: &MinerWallet, id: &str, key: &str) -> Result<ehash_wallet::PoolEpoch> {
    if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        bail!("--import {id:?} is not a quote id (the `quote` of the pool's answer: letters, digits, - and _)");
    }
    let sk = cdk::nuts::SecretKey::from_hex(key).context("--key is not a secret key (64 hex digits)")?;
    if w.ehash_quotes().await?.iter().any(|(_, q)| q == id) {
        bail!("quote {id} is already in this wallet; `ehash wallet mint` mints its credit");
    }
    let url = format!("{}/v1/mint/quote/ehash/{id}", c.mint_url.trim_end_matches('/'));
    let resp = bitreq::get(url.as_str()).with_timeout(15).send_async().await.with_context(|| format!("asking the pool for quote {id} ({url})"))?;
    if resp.status_code != 200 {
        bail!("the pool at {} does not know ehash quote {id} (HTTP {}): check the id and --mint-url", c.mint_url, resp.status_code);
    }
    let q: serde_json::Value = resp.json().with_context(|| format!("reading quote {id} from {url}"))?;
    let unit = q.get("unit").and_then(serde_json::Value::as_str).with_context(|| format!("the pool's quote {id} names no unit"))?.to_owned();
    match q.get("pubkey").and_then(serde_json::Value::as_str) {
        Some(pk) if pk.eq_ignore_ascii_case(&sk.public_key().to_hex()) => {}
        Some(pk) => bail!("--key does not lock quote {id}: the quote is locked to {pk}, the key's public key is {}; give the secret key of {pk}", sk.public_key().to_hex()),
        None => bail!("quote {id} is not NUT-20 locked, so it is not an ehash quote of this pool"),
    }
    let epoch = ehash_wallet::pool_epochs(&c.mint_url)
        .await?
        .epochs
        .into_iter()
        .find(|e| e.unit.eq_ignore_ascii_case(&unit))
        .with_context(|| format!("quote {id} is in unit {unit}, which is not an epoch unit of this pool"))?;
    let mint_url = MintUrl::from_str(&c.mint_url).with_context(|| format!("the pool mint URL {:?}", c.mint_url))?;
    let request = q.get("request").and_then(serde_json::Value::as_str).unwrap_or_default().to_owned();
    let amount = q.get("amount").and_then(serde_json::Value::as_u64).map(cdk::Amount::from);
    let quote = cdk::wallet::MintQuote::new(
        id.to_owned(),
        mint_url,
        cdk::nuts::PaymentMethod::Custom(ehash_wallet::EHASH_METHOD.into()),
        amount,
        CurrencyUnit::custom(&unit),
        request,
        0,
        Some(sk),
    );
    let path = c.dir.join("wallet.sqlite");
    let db = cdk_sqlite::WalletSqliteDatabase::new(&path).await.with_context(|| format!("opening {}", path.display()))?;
    db.add_mint_quote(quote).await.with_context(|| format!("writing quote {id} to {}", path.display()))?;
    Ok(epoch)
}

/// Run one wallet action. `sat_mints`: `--sat-mint` flags, else `[trade].sat_mints`.
pub async fn run(c: ehash_wallet::Config, action: WalletAction, sat_mints: Vec<String>) -> Result<()> {
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
            let sats = match sat_balances(&c, &sat_mints).await {
                Ok(s) => s,
                Err(e) => {
                    println!("(sats at sat mints unknown: {e:#})");
                    BTreeMap::new()
                }
            };
            if b.is_empty() && sats.is_empty() {
                println!("0 (no ehash yet)");
            }
            let held = |reserved: u64| if reserved > 0 { format!(" ({reserved} held by open offers)") } else { String::new() };
            for (unit, n) in b {
                let (reserved, _) = w.reserved_at(&c.mint_url, &unit).await?;
                println!("{n:>14} {unit}{}", held(reserved));
            }
            for (mint, n) in sats {
                let (reserved, _) = w.reserved_at(&mint, "sat").await?;
                println!("{n:>14} sat at {mint}{}", held(reserved));
            }
        }
        WalletAction::Deposit { amount, wait } => {
            let Some(sat_mint) = sat_mints.first() else {
                bail!("name the sat mint to deposit at: --sat-mint URL (or set [trade].sat_mints)");
            };
            let w = open(&c).await?;
            // invoices of earlier deposits that were paid since
            let sat_wallet = w.wallet_at(sat_mint, "sat").await.with_context(|| format!("cannot use the sat mint {sat_mint}"))?;
            match sat_wallet.mint_unissued_quotes().await {
                Ok(n) if n.to_u64() > 0 => println!("received {} sat from earlier deposits at {sat_mint}", n.to_u64()),
                Ok(_) if amount.is_none() => println!("no paid deposits to collect at {sat_mint}"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "checking earlier deposits"),
            }
            match amount {
                Some(0) => bail!("AMOUNT must be at least 1 sat"),
                Some(amount) => match w.deposit(sat_mint, amount, std::time::Duration::from_secs(wait)).await.with_context(|| format!("depositing at {sat_mint}"))? {
                    DepositOutcome::Minted(n) => println!("received {n} sat at {sat_mint}"),
                    DepositOutcome::Unpaid { invoice, quote } => {
                        println!("not paid within {wait} s. Pay this Lightning invoice for {amount} sat (quote {quote}):\n\n{invoice}\n");
                        println!("then collect the sats with `ehash wallet deposit --sat-mint {sat_mint}` (no AMOUNT)");
                    }
                },
                None => {}
            }
            println!("balance {} sat at {sat_mint}", w.balance_at(sat_mint, "sat").await?);
        }
        WalletAction::Mint => {
            let w = open(&c).await?;
            println!("minted {}", w.mint_all_credited().await?);
            // a miner mining straight to the pool hears here that its username stopped earning
            let quotes = w.ehash_quotes().await?;
            let pool = ehash_wallet::pool_epochs(&c.mint_url).await?;
            if !quotes.is_empty() && !quotes.iter().any(|(unit, _)| unit.eq_ignore_ascii_case(&pool.current.unit)) {
                println!(
                    "epoch {} (unit {}) is open now and this wallet has no quote in it: usernames of its older quotes earn nothing more; run `ehash wallet quote` for the username to mine with",
                    pool.current.epoch, pool.current.unit
                );
            }
        }
        WalletAction::Quote { worker, import, key } => {
            let max = ehash_protocol::stratum::MAX_WORKER_BYTES;
            if worker.is_empty() || worker.len() > max {
                bail!("--worker must be 1 to {max} bytes (the pool stores it with every share), not {} bytes", worker.len());
            }
            let w = open(&c).await?;
            if let (Some(id), Some(key)) = (import, key) {
                let e = import_quote(&c, &w, id.trim(), key.trim()).await?;
                println!("imported quote {} of epoch {} (unit {}); `ehash wallet mint` mints what its shares earn", id.trim(), e.epoch, e.unit);
                if e.state == "active" {
                    println!("Stratum username: {}.{worker}", id.trim());
                } else {
                    println!("epoch {} is {}: the quote earns nothing more; `ehash wallet quote` prints the username to mine with now", e.epoch, e.state);
                }
                return Ok(());
            }
            let pool = ehash_wallet::pool_epochs(&c.mint_url).await?;
            let e = &pool.current;
            let quote = w.quote_for(&e.unit).await.with_context(|| format!("creating a quote in unit {} at {}", e.unit, c.mint_url))?;
            println!("quote {quote} of epoch {} (unit {}), locked to this wallet's key (NUT-20)", e.epoch, e.unit);
            println!("Stratum username: {quote}.{worker}");
            println!("Mine to the pool's Stratum endpoint with that username (any password); `ehash wallet mint` mints what its shares earned, at any time.");
            println!(
                "When epoch {} closes, the pool answers error 26 and names the new unit: run `ehash wallet quote` again and authorize the new username (on the same connection if the miner can send mining.authorize; `ehash proxy` follows epochs by itself).",
                e.epoch
            );
        }
        WalletAction::Send { unit, amount, lock } => {
            let w = open(&c).await?;
            let lock = lock
                .map(|k| cdk::nuts::PublicKey::from_str(&k).with_context(|| format!("--lock {k:?} is not a public key")))
                .transpose()?;
            println!("{}", w.send(&unit, amount, lock).await?);
        }
        WalletAction::Withdraw { invoice, mint } => {
            let w = open(&c).await?;
            let mint = match mint {
                Some(m) => m,
                None => {
                    let mut held = sat_balances(&c, &sat_mints).await?;
                    held.entry(MintUrl::from_str(&c.mint_url).with_context(|| format!("the pool mint URL {:?}", c.mint_url))?.to_string()).or_default();
                    match held.into_iter().max_by_key(|(_, n)| *n) {
                        Some((m, n)) if n > 0 => m,
                        _ => bail!("this wallet holds no sats to withdraw (`ehash wallet balance`; redeem ehash or buy sats first)"),
                    }
                }
            };
            let paid = w.withdraw(&mint, invoice.trim()).await.with_context(|| format!("paying the invoice with sats at {mint}"))?;
            println!("paid {} sat (fee {} sat) from {mint}", paid.amount, paid.fee_paid);
            if let Some(p) = paid.preimage {
                println!("preimage {p}");
            }
            println!("balance {} sat at {mint}", w.balance_at(&mint, "sat").await?);
        }
        WalletAction::Redeem { unit, amount } => {
            let w = open(&c).await?;
            let sats = w.redeem(&unit, amount).await.with_context(|| format!("redeeming {unit}"))?;
            let have = w.balance_at(&c.mint_url, "sat").await?;
            println!("redeemed for {sats} sat; this wallet holds {have} sat at {} (the pool's mint)", c.mint_url);
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
