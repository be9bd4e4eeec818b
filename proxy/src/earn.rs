//! Earning: which quote the proxy mines to, minting what the pool credits, following epochs, and
//! auditing the pool.
//!
//! The proxy mines to one NUT-20-locked quote of the active epoch. When the pool closes the epoch
//! (error 26 upstream, or the epoch list shows a new unit) it creates a quote in the new unit and
//! re-authorizes; quotes of closed epochs keep being minted until nothing credited is left. Every
//! `mint_secs` it mints all credited ehash (retrying while the mint is down, losing nothing: the
//! credit waits at the mint) and compares the pool's credits with its own log of accepted shares.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ehash_wallet::MinerWallet;
use serde::Serialize;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::audit::AuditLog;
use crate::upstream::Upstream;

/// How long one epoch's redemption may take before the round moves on (it is retried next round).
const REDEEM_TIMEOUT: Duration = Duration::from_secs(60);

/// What the earning side knows, for `ehash proxy status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Earnings {
    /// The unit mined to now.
    pub unit: String,
    /// The quote mined to now.
    pub quote_id: String,
    /// log2 of the pool's hashes per ehash.
    pub unit_log2_hashes: u32,
    /// Ehash the pool credited to the proxy's quotes (per unit).
    pub credited: BTreeMap<String, u64>,
    /// Ehash in the wallet (per unit).
    pub wallet: BTreeMap<String, u64>,
    /// Ehash the proxy's log says the pool owes beyond what it credited.
    pub shortfall: u64,
    /// Shares in the audit log.
    pub logged_shares: u64,
    /// Logged shares found, with the right amount, in the share logs of closed epochs
    /// (protocol §12).
    pub included_shares: u64,
    /// Logged shares of closed epochs missing from the pool's share log or logged with another
    /// amount, and closed epochs whose served log is not the one the pool committed to.
    pub excluded_shares: u64,
    /// The last error of the earning loop, if any.
    pub last_error: Option<String>,
    /// Ehash in the wallet at the last successful NIP-60 backup.
    pub backed_up: Option<u64>,
    /// Sats received by automatic redemption (`auto_redeem`) since the proxy started.
    pub redeemed_sats: u64,
}

/// Where the wallet is backed up (NIP-60).
#[derive(Debug, Clone)]
pub struct Backup {
    /// The key the events are encrypted to.
    pub keys: nostr_sdk::prelude::Keys,
    /// The relays.
    pub relays: Vec<String>,
    /// The wallet directory (backup bookkeeping).
    pub dir: std::path::PathBuf,
}

/// The earning loop's handle.
pub struct Earner {
    wallet: Arc<MinerWallet>,
    audit: AuditLog,
    worker: String,
    backup: Option<Backup>,
    state: Mutex<Earnings>,
    /// Closed epochs whose share log was checked, with (included, excluded) shares.
    checked: Mutex<BTreeMap<u32, (u64, u64)>>,
    /// Redeem redeemable epochs' ehash each round.
    auto_redeem: bool,
    /// One mint-and-audit round at a time (cdk refuses concurrent updates of a quote).
    round: Mutex<()>,
}

impl std::fmt::Debug for Earner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Earner").field("worker", &self.worker).finish_non_exhaustive()
    }
}

impl Earner {
    /// An earner minting into `wallet` and auditing with `audit`.
    pub fn new(wallet: Arc<MinerWallet>, audit: AuditLog, worker: String, backup: Option<Backup>) -> Self {
        Self { wallet, audit, worker, backup, state: Mutex::new(Earnings::default()), checked: Mutex::new(BTreeMap::new()), auto_redeem: false, round: Mutex::new(()) }
    }

    /// Redeem every redeemable epoch's ehash for sats each round.
    pub fn redeeming(mut self, on: bool) -> Self {
        self.auto_redeem = on;
        self
    }

    /// The username for a quote.
    pub fn username(&self, quote: &str) -> String {
        format!("{quote}.{}", self.worker)
    }

    /// A snapshot.
    pub async fn earnings(&self) -> Earnings {
        self.state.lock().await.clone()
    }

    /// The current quote, its unit, and the pool's unit size.
    pub async fn current(&self) -> (String, String, u32) {
        let s = self.state.lock().await;
        (s.quote_id.clone(), s.unit.clone(), s.unit_log2_hashes)
    }

    /// The audit log.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// Make sure the proxy mines to a quote of the pool's active epoch; returns the username.
    pub async fn ensure_quote(&self) -> Result<String, String> {
        let epochs = ehash_wallet::pool_epochs(&self.wallet.mint_url()).await.map_err(|e| e.to_string())?;
        let unit = epochs.current.unit;
        let quote = self.wallet.quote_for(&unit).await.map_err(|e| e.to_string())?;
        let mut s = self.state.lock().await;
        if s.unit != unit {
            tracing::info!(%unit, %quote, "mining to the active epoch's quote");
        }
        s.unit = unit;
        s.quote_id = quote.clone();
        s.unit_log2_hashes = epochs.unit_log2_hashes;
        Ok(self.username(&quote))
    }

    /// Mint everything credited and reconcile against the log.
    pub async fn mint_and_audit(&self) -> Result<(), String> {
        let _round = self.round.lock().await;
        self.wallet.mint_all_credited().await.map_err(|e| format!("minting: {e}"))?;
        let totals = self.audit.totals().await.map_err(|e| e.to_string())?;
        let mut credited = BTreeMap::new();
        let mut shortfall = 0u64;
        let mut logged = 0u64;
        for (unit, quote) in self.wallet.ehash_quotes().await.map_err(|e| e.to_string())? {
            let w = self.wallet.wallet(&unit).await.map_err(|e| e.to_string())?;
            let paid = w.check_mint_quote_status(&quote).await.map_err(|e| format!("quote {quote}: {e}"))?.amount_paid.to_u64();
            *credited.entry(unit.clone()).or_insert(0u64) += paid;
            if let Some(t) = totals.iter().find(|t| t.quote_id == quote) {
                logged += t.shares;
                if t.expected > paid {
                    let gap = t.expected - paid;
                    tracing::warn!(%quote, %unit, expected = t.expected, credited = paid, "the pool credited less than the shares it accepted");
                    shortfall += gap;
                }
            }
        }
        let (included, excluded) = self.check_inclusion().await?;
        let redeemed = if self.auto_redeem { self.redeem_matured().await? } else { 0 };
        let wallet = self.wallet.balances().await.map_err(|e| e.to_string())?;
        {
            let mut s = self.state.lock().await;
            s.included_shares = included;
            s.redeemed_sats = s.redeemed_sats.saturating_add(redeemed);
            s.excluded_shares = excluded;
            s.credited = credited;
            s.wallet = wallet.clone();
            s.shortfall = shortfall;
            s.logged_shares = logged;
        }
        if let Some(b) = &self.backup {
            // a relay that is down fails this; the next round retries
            self.wallet.backup_nip60(&b.keys, &b.relays, &b.dir).await.map_err(|e| format!("backup: {e}"))?;
            self.state.lock().await.backed_up = Some(wallet.values().sum());
        }
        Ok(())
    }

    /// Redeem the ehash of every redeemable epoch the wallet holds; returns the sats received.
    async fn redeem_matured(&self) -> Result<u64, String> {
        let epochs = ehash_wallet::pool_epochs(&self.wallet.mint_url()).await.map_err(|e| e.to_string())?;
        let balances = self.wallet.balances().await.map_err(|e| e.to_string())?;
        let mut total = 0u64;
        for e in epochs.epochs.iter().filter(|e| e.state == "redeemable") {
            if balances.get(&e.unit).copied().unwrap_or(0) == 0 {
                continue;
            }
            // a mint that never answers must not stall minting and auditing for ever
            let redeemed = tokio::time::timeout(REDEEM_TIMEOUT, self.wallet.redeem(&e.unit, None))
                .await
                .unwrap_or_else(|_| Err(ehash_wallet::Error::Pool { url: self.wallet.mint_url(), reason: format!("no answer to the redemption within {} s", REDEEM_TIMEOUT.as_secs()) }));
            match redeemed {
                Ok(sats) => {
                    tracing::info!(epoch = e.epoch, unit = %e.unit, sats, "redeemed the epoch's ehash");
                    total = total.saturating_add(sats);
                }
                // dust stays (it is worth nothing); anything else is retried next round
                Err(err) => tracing::warn!(epoch = e.epoch, error = %err, "could not redeem"),
            }
        }
        Ok(total)
    }

    /// Look up every logged share of each newly closed epoch in the pool's share log: it must be
    /// there with the amount it earned, and the log must be the one the pool committed to.
    /// Returns (included, excluded) over all closed epochs checked so far.
    async fn check_inclusion(&self) -> Result<(u64, u64), String> {
        let mint = self.wallet.mint_url();
        let epochs = ehash_wallet::pool_epochs(&mint).await.map_err(|e| e.to_string())?;
        let mut checked = self.checked.lock().await;
        for e in &epochs.epochs {
            if e.state == "active" || checked.contains_key(&e.epoch) {
                continue;
            }
            let mine = self.audit.shares_of(&e.unit).await.map_err(|err| err.to_string())?;
            if mine.is_empty() {
                checked.insert(e.epoch, (0, 0));
                continue;
            }
            let log = ehash_wallet::audit::served_log(&mint, e.epoch, ehash_protocol::audit::LOG_PAGE_MAX).await.map_err(|err| err.to_string())?;
            if log.root.is_none() {
                // the pool commits a closed epoch's log right after telling miners of the next
                // epoch: not committed yet is not a broken commitment; looked at next round
                tracing::debug!(epoch = e.epoch, "the closed epoch's share log is not committed yet");
                continue;
            }
            let c = ehash_wallet::audit::inclusion(&log, &mine);
            let mut excluded = (c.missing.len() + c.wrong.len()) as u64;
            if !c.committed {
                tracing::warn!(epoch = e.epoch, "the pool's share log is not the one it committed to when the epoch closed");
                excluded = excluded.max(1);
            }
            for id in &c.missing {
                tracing::warn!(epoch = e.epoch, share = %id, "a share the pool accepted is missing from its share log");
            }
            for (id, got, want) in &c.wrong {
                tracing::warn!(epoch = e.epoch, share = %id, logged = got, earned = want, "a share is in the pool's share log with the wrong amount");
            }
            checked.insert(e.epoch, (c.included, excluded));
        }
        Ok(checked.values().fold((0, 0), |(i, x), (a, b)| (i + a, x + b)))
    }

    async fn note_error(&self, e: Option<String>) {
        self.state.lock().await.last_error = e;
    }

    /// Run the loop until `cancel`: follow epochs, mint, audit.
    pub fn spawn(self: Arc<Self>, upstream: Upstream, every: Duration, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut closed = upstream.epoch_closed();
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tick.tick() => {}
                    r = closed.changed() => if r.is_err() { break },
                }
                let mut error = None;
                match self.ensure_quote().await {
                    Ok(username) => {
                        if username != upstream.username() {
                            upstream.set_username(username);
                        }
                    }
                    Err(e) => error = Some(format!("epoch list: {e}")),
                }
                if let Err(e) = self.mint_and_audit().await {
                    tracing::warn!(error = %e, "minting credited ehash; will retry");
                    error = Some(e);
                }
                self.note_error(error).await;
            }
            // last chance to mint before stopping
            let _ = self.mint_and_audit().await;
        })
    }
}
