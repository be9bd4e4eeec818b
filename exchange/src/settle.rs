//! Watching settlements (protocol §10): the exchange reads its copy of each settlement message,
//! verifies every lock with the agents' own code ([`ehash_wallet::htlc`]), asks both mints
//! (NUT-07) how the locks were spent, enforces the deadlines, blames whoever missed one, and
//! publishes each trade's progress. It holds no keys to any lock.
//!
//! The mints are asked without the exchange's state lock held, each call bounded by
//! [`MINT_TIMEOUT`]: a mint that stalls delays only the trades that use it. What a mint said is
//! applied only if the trade did not change in the meantime (else the next round asks again).

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use cdk::mint_url::MintUrl;
use cdk::nuts::{CurrencyUnit, KeySet, Proofs};
use cdk::wallet::MintConnector;
use ehash_protocol::events::settlement::{Body, Message};
use ehash_protocol::events::{Blame, LockStatus, TradeState};
use ehash_protocol::market::lock_key;
use ehash_wallet::htlc::{self, LockError, LockTerms, Spend};
use ehash_wallet::transport::{self, MintClient};
use nostr_sdk::prelude::*;
use tokio::sync::Mutex;

use crate::engine::{Inner, Live, now};
use crate::{Error, Result};

/// The longest the exchange waits for one answer of a mint.
pub const MINT_TIMEOUT: Duration = Duration::from_secs(10);

/// Seconds past a deadline a lock received in time may take to be verified (its checks ask the
/// mint a few times, each bounded by [`MINT_TIMEOUT`]).
const VERIFY_SECS: u64 = 3 * MINT_TIMEOUT.as_secs();

/// `f`, or an error naming the mint if it takes longer than [`MINT_TIMEOUT`].
async fn bounded<T>(url: &str, f: impl std::future::Future<Output = T>) -> std::result::Result<T, String> {
    tokio::time::timeout(MINT_TIMEOUT, f).await.map_err(|_| format!("the mint {url} did not answer within {} s", MINT_TIMEOUT.as_secs()))
}

/// HTTP clients of the mints the exchange watches.
pub struct Mints {
    clients: Mutex<HashMap<String, Arc<MintClient>>>,
    private_ok: bool,
}

impl Mints {
    /// Clients of mints at public addresses, and at private ones if `private_ok`.
    pub fn new(private_ok: bool) -> Self {
        Self { clients: Mutex::new(HashMap::new()), private_ok }
    }

    async fn get(&self, url: &str) -> Result<Arc<MintClient>> {
        // booked offers were checked; this guards every other way a URL could get here
        // (names resolved each time: what a name points at can change)
        if let Some(why) = crate::reach::resolved_refusal(url, self.private_ok).await {
            return Err(Error::Remote(why));
        }
        let mut c = self.clients.lock().await;
        if let Some(h) = c.get(url) {
            return Ok(h.clone());
        }
        let mint = MintUrl::from_str(url).map_err(|e| Error::Remote(format!("mint URL {url}: {e}")))?;
        // bounded in time and size, and honouring Retry-After
        let h = Arc::new(transport::client(mint));
        c.insert(url.to_owned(), h.clone());
        Ok(h)
    }
}

/// Which lock a message or check concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    /// The seller's ehash lock at the pool mint.
    Ehash,
    /// The buyer's sats lock at the sat mint.
    Sats,
}

impl Inner {
    /// A settlement message copied to the exchange.
    pub(crate) async fn on_message(&self, ev: &Event) -> Result<()> {
        if ev.verify().is_err() {
            return Ok(());
        }
        let msg = match Message::from_event(ev, &self.keys) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(event = %ev.id, error = %e, "unreadable settlement message");
                return Ok(());
            }
        };
        let mut st = self.state.lock().await;
        let Some(live) = st.trades.get(&msg.trade).cloned() else { return Ok(()) };
        let t = &live.trade;
        let from_seller = ev.pubkey == t.seller().pubkey;
        if !from_seller && ev.pubkey != t.buyer().pubkey {
            return Ok(());
        }
        let sender = if from_seller { Blame::Seller } else { Blame::Buyer };
        match msg.body {
            Body::Lock { token } => {
                let (which, deadline, open) = if from_seller {
                    (Which::Ehash, t.times.seller_lock_by, t.state == TradeState::Matched && t.ehash_lock == LockStatus::None)
                } else {
                    (Which::Sats, t.times.buyer_lock_by, t.state == TradeState::EhashLocked && t.sats_lock == LockStatus::None)
                };
                if !open {
                    // the buyer's lock read before the seller's (after a restart): kept until
                    // the seller's is verified
                    if !from_seller && t.state == TradeState::Matched && !live.s.unverified.iter().any(|(s, _)| !*s) {
                        let mut live = live;
                        live.s.unverified.push((false, token));
                        self.store.save_settlement(&msg.trade, &live.s).await?;
                        st.trades.insert(msg.trade, live);
                    }
                    return Ok(());
                }
                // Timely if it reached the exchange in time: its date is the sender's to choose.
                // Only a message read while this exchange catches up with the relays (after a
                // restart or an outage) is judged by its date, the one evidence there is.
                let matched = t.times.seller_lock_by.saturating_sub(self.config.lock_secs);
                let at = self.reading().received(ev.created_at.as_secs(), matched, now());
                if at > deadline + self.config.grace_secs {
                    tracing::info!(trade = %t.id, "a lock arrived after its deadline");
                    return Ok(());
                }
                // written down as received in time before the mint is asked: the deadline round
                // waits for its check instead of blaming its sender
                let mut live = live;
                live.s.unverified.retain(|(s, _)| *s != from_seller);
                live.s.unverified.push((from_seller, token.clone()));
                self.store.save_settlement(&msg.trade, &live.s).await?;
                st.trades.insert(msg.trade.clone(), live);
                drop(st);
                self.verify(&msg.trade, which, token).await
            }
            Body::Preimage { preimage } => {
                let Some(hash) = &t.hash else { return Ok(()) };
                if !from_seller || t.preimage.is_some() || !htlc::hash_of(&preimage).is_ok_and(|h| h.eq_ignore_ascii_case(hash)) {
                    return Ok(());
                }
                let mut live = live;
                live.trade.preimage = Some(preimage.to_ascii_lowercase());
                self.publish(&mut live).await?;
                st.trades.insert(msg.trade, live);
                Ok(())
            }
            Body::Abort { reason } => {
                if !matches!(t.state, TradeState::Matched | TradeState::EhashLocked) {
                    return Ok(());
                }
                let who = if from_seller { "seller" } else { "buyer" };
                // the counterparty's lock is here but its mint could not be asked: the sender
                // could not check it either, so the abort is nobody's fault
                let blame = if live.s.unverified.iter().any(|(seller, _)| *seller != from_seller) { Blame::None } else { sender };
                self.fail(&mut st, &msg.trade, blame, format!("the {who} aborted: {reason}")).await
            }
        }
    }

    /// The terms a lock must meet (`keyset`: the market's announced keyset, for the ehash lock).
    async fn terms(&self, keyset: Option<&KeySet>, live: &Live, which: Which) -> Result<LockTerms> {
        let t = &live.trade;
        let key = |p: &PublicKey| lock_key(p).map_err(|e| Error::Remote(e.to_string()));
        let url = |u: &str| MintUrl::from_str(u).map_err(|e| Error::Remote(format!("mint URL {u}: {e}")));
        Ok(match which {
            Which::Ehash => {
                let ks = keyset.ok_or_else(|| Error::Remote(format!("no announcement of {}", t.market)))?;
                LockTerms {
                    mint_url: url(&t.mint_url)?,
                    unit: CurrencyUnit::custom(&t.unit),
                    keysets: HashMap::from([(ks.id, (ks.keys.clone(), ks.input_fee_ppk))]),
                    hash: None,
                    locktime: t.times.ehash_locktime,
                    receiver: key(&t.buyer().pubkey)?,
                    maker: key(&t.seller().pubkey)?,
                    amount: t.amount,
                }
            }
            Which::Sats => {
                let client = self.mints.get(&t.sat_mint).await?;
                let unreachable = |e: cdk::Error| Error::Remote(format!("sat mint {}: {e}", t.sat_mint));
                let infos = client.get_mint_keysets().await.map_err(unreachable)?.keysets;
                let mut keysets = HashMap::new();
                for k in infos.into_iter().filter(|k| k.unit == CurrencyUnit::Sat) {
                    let ks = client.get_mint_keyset(k.id).await.map_err(unreachable)?;
                    keysets.insert(k.id, (ks.keys, k.input_fee_ppk));
                }
                LockTerms {
                    mint_url: url(&t.sat_mint)?,
                    unit: CurrencyUnit::Sat,
                    keysets,
                    hash: t.hash.clone(),
                    locktime: t.times.sats_locktime,
                    receiver: key(&t.seller().pubkey)?,
                    maker: key(&t.buyer().pubkey)?,
                    amount: t.sats,
                }
            }
        })
    }

    /// Verify a lock token if the trade still waits for it; record it, fail the trade, or keep
    /// it for a retry if a mint cannot be reached. The mints are asked without the state lock.
    async fn verify(&self, id: &str, which: Which, token: String) -> Result<()> {
        let from_seller = which == Which::Ehash;
        let due = |live: &Live| match which {
            Which::Ehash => live.trade.state == TradeState::Matched && live.trade.ehash_lock == LockStatus::None,
            Which::Sats => live.trade.state == TradeState::EhashLocked && live.trade.sats_lock == LockStatus::None,
        };
        let (live, keyset) = {
            let st = self.state.lock().await;
            let Some(live) = st.trades.get(id).cloned() else { return Ok(()) };
            let keyset = st.epochs.get(&live.trade.market).map(|e| e.announcement.keyset.clone());
            (live, keyset)
        };
        if !due(&live) {
            return Ok(());
        }
        let url = if from_seller { live.trade.mint_url.clone() } else { live.trade.sat_mint.clone() };
        let outcome = match bounded(&url, self.terms(keyset.as_ref(), &live, which)).await {
            // a mint that may not be asked is one that cannot be: no early return, so the
            // deadline round still judges the trade
            Ok(Ok(terms)) => match self.mints.get(&url).await {
                Ok(client) => bounded(&url, htlc::observe_lock(&token, &terms, client.as_ref())).await.unwrap_or_else(|e| Err(LockError::Unreachable(e))),
                Err(e) => Err(LockError::Unreachable(e.to_string())),
            },
            Ok(Err(e)) => Err(LockError::Unreachable(e.to_string())),
            Err(e) => Err(LockError::Unreachable(e)),
        };
        let mut st = self.state.lock().await;
        let st = &mut *st;
        // the trade may have moved on while the mint was asked (a deadline passed, an abort)
        let Some(mut live) = st.trades.get(id).cloned().filter(|l| due(l)) else { return Ok(()) };
        live.s.unverified.retain(|(s, _)| *s != from_seller);
        match outcome {
            Ok((lock, spend)) => {
                tracing::info!(trade = %id, lock = ?which, total = lock.total, ?spend, "lock verified");
                let status = match spend {
                    Spend::Unspent => LockStatus::Locked,
                    Spend::Claimed(p) => {
                        live.trade.preimage = Some(p);
                        LockStatus::Claimed
                    }
                    Spend::Refunded => LockStatus::Refunded,
                };
                match which {
                    Which::Ehash => {
                        live.s.seller_lock = Some(proofs_json(&lock.proofs)?);
                        live.trade.hash = Some(lock.hash);
                        live.trade.ehash_lock = status;
                        live.trade.state = TradeState::EhashLocked;
                    }
                    Which::Sats => {
                        live.s.buyer_lock = Some(proofs_json(&lock.proofs)?);
                        live.trade.sats_lock = status;
                        live.trade.state = TradeState::SatsLocked;
                    }
                }
                // the lock the exchange judged goes to the other party too: a sender who gave it
                // a different lock (or none) cannot make it miss its deadline and take the blame
                let other = if from_seller { live.trade.buyer().pubkey } else { live.trade.seller().pubkey };
                let copy = Message::new(id.to_owned(), Body::Lock { token })
                    .to_event(&self.keys, &other, live.trade.times.ehash_locktime + 86_400)
                    .map_err(|e| Error::Remote(e.to_string()))?;
                self.outbox.queue(&copy).await?;
                self.publish(&mut live).await?;
                st.trades.insert(id.to_owned(), live);
                Ok(())
            }
            Err(e) if e.is_fault() => {
                let who = if from_seller { "seller" } else { "buyer" };
                let blame = if from_seller { Blame::Seller } else { Blame::Buyer };
                self.store.save_settlement(id, &live.s).await?;
                st.trades.insert(id.to_owned(), live);
                self.fail(st, id, blame, format!("the {who}'s lock: {e}")).await
            }
            Err(e) => {
                tracing::warn!(trade = %id, error = %e, "cannot verify a lock now; will retry");
                live.s.unverified.push((from_seller, token));
                self.store.save_settlement(id, &live.s).await?;
                st.trades.insert(id.to_owned(), live);
                Ok(())
            }
        }
    }

    /// One round over the trades still being settled.
    /// Every trade at once: one whose mint stalls does not hold up the others.
    pub(crate) async fn watch_settlements(&self) {
        let ids: Vec<String> = self.state.lock().await.trades.values().filter(|l| !l.s.done).map(|l| l.trade.id.clone()).collect();
        futures::future::join_all(ids.iter().map(|id| async move {
            if let Err(e) = self.watch_one(id).await {
                tracing::warn!(trade = %id, error = %e, "watching a settlement");
            }
        }))
        .await;
    }

    async fn watch_one(&self, id: &str) -> Result<()> {
        let unverified = match self.state.lock().await.trades.get(id) {
            Some(live) => live.s.unverified.clone(),
            None => return Ok(()),
        };
        for (from_seller, token) in unverified {
            self.verify(id, if from_seller { Which::Ehash } else { Which::Sats }, token).await?;
        }
        // how the locks were spent (NUT-07), asked without the state lock
        let Some(seen) = self.state.lock().await.trades.get(id).cloned() else { return Ok(()) };
        let mut spends = Vec::new();
        for which in [Which::Ehash, Which::Sats] {
            let (status, proofs, url) = match which {
                Which::Ehash => (seen.trade.ehash_lock, &seen.s.seller_lock, seen.trade.mint_url.clone()),
                Which::Sats => (seen.trade.sats_lock, &seen.s.buyer_lock, seen.trade.sat_mint.clone()),
            };
            let (LockStatus::Locked, Some(proofs), Some(hash)) = (status, proofs, seen.trade.hash.clone()) else { continue };
            let proofs: Proofs = serde_json::from_str(proofs).map_err(|e| Error::Database(e.to_string()))?;
            let client = match self.mints.get(&url).await {
                Ok(c) => c,
                Err(e) => {
                    // the deadlines below are judged all the same
                    tracing::warn!(trade = %id, mint = %url, error = %e, "cannot ask the mint about a lock");
                    continue;
                }
            };
            match bounded(&url, htlc::check_states(client.as_ref(), &proofs)).await.and_then(|r| r) {
                Ok(states) => spends.push((which, htlc::spend_of(&states, &hash))),
                Err(e) => tracing::debug!(trade = %id, mint = %url, error = %e, "NUT-07 check failed; will retry"),
            }
        }
        let mut st = self.state.lock().await;
        let Some(mut live) = st.trades.get(id).cloned() else { return Ok(()) };
        if live.trade != seen.trade || live.s != seen.s {
            // changed while the mints were asked: the next round looks again
            return Ok(());
        }
        let t0 = live.clone();
        let n = now();
        let grace = self.config.grace_secs;
        let unverified = |seller: bool| live.s.unverified.iter().any(|(s, _)| *s == seller);
        // deadlines, judged only while the relays are read: a lock sent while the exchange
        // could not read them may be waiting there
        let judge = self.reading().caught_up();
        match live.trade.state {
            TradeState::Matched | TradeState::EhashLocked if !judge => {}
            // a lock received in time is given the time its check may take before the trade ends
            // without blame
            TradeState::Matched if n > live.trade.times.seller_lock_by + grace => {
                return if !unverified(true) {
                    self.fail(&mut st, id, Blame::Seller, "the seller did not lock by the deadline".into()).await
                } else if n > live.trade.times.seller_lock_by + grace + VERIFY_SECS {
                    self.fail(&mut st, id, Blame::None, "the seller's lock could not be verified by its deadline (the pool mint was unreachable)".into()).await
                } else {
                    Ok(())
                };
            }
            TradeState::EhashLocked if n > live.trade.times.buyer_lock_by + grace => {
                return if !unverified(false) {
                    self.fail(&mut st, id, Blame::Buyer, "the buyer did not lock by the deadline".into()).await
                } else if n > live.trade.times.buyer_lock_by + grace + VERIFY_SECS {
                    self.fail(&mut st, id, Blame::None, "the buyer's lock could not be verified by its deadline (the sat mint was unreachable)".into()).await
                } else {
                    Ok(())
                };
            }
            _ => {}
        }
        // how the locks were spent
        let sats_read = spends.iter().any(|(which, _)| *which == Which::Sats);
        for (which, spend) in spends {
            let new = match spend {
                Spend::Unspent => continue,
                Spend::Claimed(p) => {
                    live.trade.preimage = Some(p);
                    LockStatus::Claimed
                }
                Spend::Refunded => LockStatus::Refunded,
            };
            match which {
                Which::Ehash => live.trade.ehash_lock = new,
                Which::Sats => live.trade.sats_lock = new,
            }
        }
        let t = &mut live.trade;
        if t.sats_lock == LockStatus::Claimed && t.state == TradeState::SatsLocked {
            t.state = TradeState::SatsClaimed;
        }
        if t.ehash_lock == LockStatus::Claimed && t.sats_lock == LockStatus::Claimed {
            t.state = TradeState::Settled;
        }
        let mut failure = None;
        if t.state == TradeState::SatsLocked && n > t.times.sats_locktime + grace && t.sats_lock != LockStatus::Claimed {
            // blamed only on a reading of the sat mint taken now: a claim it could not be asked
            // about may have happened
            let read_now = sats_read || t.sats_lock != LockStatus::Locked;
            if read_now {
                failure = Some((Blame::Seller, "the seller did not claim the sats before their locktime".to_owned()));
            } else if n > t.times.sats_locktime + grace + VERIFY_SECS {
                failure = Some((Blame::None, "whether the seller claimed the sats could not be read (the sat mint did not answer)".to_owned()));
            }
        }
        if t.state == TradeState::SatsClaimed && t.ehash_lock == LockStatus::Refunded {
            failure = Some((Blame::Buyer, "the buyer did not claim the ehash before its locktime".to_owned()));
        }
        let made = |s: LockStatus| s != LockStatus::None;
        if t.state == TradeState::Failed
            && (made(t.ehash_lock) || made(t.sats_lock))
            && !matches!(t.ehash_lock, LockStatus::Locked | LockStatus::Claimed)
            && !matches!(t.sats_lock, LockStatus::Locked | LockStatus::Claimed)
        {
            t.state = TradeState::Refunded;
        }
        let still_locked = t.ehash_lock == LockStatus::Locked || t.sats_lock == LockStatus::Locked;
        if t.state.is_final() || (t.state == TradeState::Failed && !still_locked) {
            live.s.done = true;
        }
        if live.trade != t0.trade || live.s != t0.s {
            self.publish(&mut live).await?;
            st.trades.insert(id.to_owned(), live);
        }
        if let Some((blame, reason)) = failure {
            self.fail(&mut st, id, blame, reason).await?;
        }
        Ok(())
    }
}

fn proofs_json(p: &Proofs) -> Result<String> {
    serde_json::to_string(p).map_err(|e| Error::Database(e.to_string()))
}
