//! One trade's settlement, one step at a time (protocol §10). [`Agent::step`] moves a trade as
//! far as it can now; every state is written to the store before the network action it leads
//! to, so after a crash the same call resumes it (a swap in flight is sent again, which is safe:
//! see [`crate::durable`]).

use std::collections::HashMap;
use std::str::FromStr;

use cdk::mint_url::MintUrl;
use cdk::nuts::{CurrencyUnit, Token};
use cdk::wallet::Wallet;
use ehash_protocol::events::settlement::Body;
use ehash_protocol::market::{Side, lock_key, signing_key};

use super::record::{Lock, Step, TradeRecord};
use super::{Agent, now};
use crate::durable::{self, PendingSwap, SwapError};
use crate::htlc::{self, LockTerms, Spend};
use crate::{Error, Result};

/// The longest one trade's step waits on its mints before it is tried again later.
pub const STEP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What to do after a transition.
enum Next {
    /// Go on with the next state.
    Continue,
    /// Nothing more can happen now.
    Wait,
}

impl Agent {
    /// The wallet my lock is made in (seller: ehash; buyer: sats).
    async fn my_wallet(&self, t: &TradeRecord) -> Result<Wallet> {
        match t.role {
            Side::Sell => self.inner.wallet.wallet_at(&t.terms.mint_url, &t.terms.unit).await,
            Side::Buy => self.inner.wallet.wallet_at(&t.terms.sat_mint, "sat").await,
        }
    }

    /// The wallet their lock is claimed into.
    async fn their_wallet(&self, t: &TradeRecord) -> Result<Wallet> {
        match t.role {
            Side::Sell => self.inner.wallet.wallet_at(&t.terms.sat_mint, "sat").await,
            Side::Buy => self.inner.wallet.wallet_at(&t.terms.mint_url, &t.terms.unit).await,
        }
    }

    /// The terms the counterparty's lock must meet.
    async fn their_terms(&self, t: &TradeRecord) -> Result<LockTerms> {
        self.their_terms_with(t, cdk_common::wallet::KeysetLoadPolicy::CacheThenNetwork).await
    }

    /// Verify the counterparty's lock; for the sats lock, a keyset unknown to the cached list is
    /// looked up at the mint once before the lock is refused.
    async fn verify_theirs(&self, t: &TradeRecord, token: &str) -> Result<std::result::Result<htlc::VerifiedLock, htlc::LockError>> {
        let w = self.their_wallet(t).await?;
        let terms = self.their_terms(t).await?;
        let r = htlc::verify_lock(token, &terms, w.mint_connector().as_ref()).await;
        if t.role == Side::Sell && matches!(r, Err(htlc::LockError::Keyset(_))) {
            let terms = self.their_terms_with(t, cdk_common::wallet::KeysetLoadPolicy::Refresh).await?;
            return Ok(htlc::verify_lock(token, &terms, w.mint_connector().as_ref()).await);
        }
        Ok(r)
    }

    async fn their_terms_with(&self, t: &TradeRecord, policy: cdk_common::wallet::KeysetLoadPolicy) -> Result<LockTerms> {
        let offer = self.inner.store.offer(&t.offer_d).await?.ok_or_else(|| Error::Database(format!("trade {} names an unknown offer", t.id)))?;
        let me = self.offer_keys(&offer.pubkey).await?;
        let them = ehash_protocol::market::lock_key(&nostr_sdk::prelude::PublicKey::parse(&t.terms.counterparty).map_err(|e| Error::Nostr(e.to_string()))?)
            .map_err(|e| Error::Nostr(e.to_string()))?;
        let mine = lock_key(&me.public_key()).map_err(|e| Error::Nostr(e.to_string()))?;
        Ok(match t.role {
            // the buyer's sats lock: any sat keyset of the trade's sat mint
            Side::Sell => {
                let w = self.inner.wallet.wallet_at(&t.terms.sat_mint, "sat").await?;
                let keysets = w.keysets(policy).await?;
                LockTerms {
                    mint_url: MintUrl::from_str(&t.terms.sat_mint).map_err(|e| Error::InvalidToken(e.to_string()))?,
                    unit: CurrencyUnit::Sat,
                    keysets: keysets.into_iter().map(|k| (k.id, (k.keys, k.input_fee_ppk))).collect(),
                    hash: t.hash.clone(),
                    locktime: t.terms.times.sats_locktime,
                    receiver: mine,
                    maker: them,
                    amount: t.terms.sats,
                }
            }
            // the seller's ehash lock: the pool's announced keyset of the market
            Side::Buy => LockTerms {
                mint_url: MintUrl::from_str(&t.terms.mint_url).map_err(|e| Error::InvalidToken(e.to_string()))?,
                unit: CurrencyUnit::custom(&t.terms.unit),
                keysets: HashMap::from([(offer.keyset.id, (offer.keyset.keys.clone(), offer.keyset.input_fee_ppk))]),
                hash: None,
                locktime: t.terms.times.ehash_locktime,
                receiver: mine,
                maker: them,
                amount: t.terms.amount,
            },
        })
    }

    /// My offer key's Cashu signing key for a trade.
    async fn my_signing_key(&self, t: &TradeRecord) -> Result<cdk::nuts::SecretKey> {
        let offer = self.inner.store.offer(&t.offer_d).await?.ok_or_else(|| Error::Database(format!("trade {} names an unknown offer", t.id)))?;
        let keys = self.offer_keys(&offer.pubkey).await?;
        signing_key(keys.secret_key()).map_err(|e| Error::Nostr(e.to_string()))
    }

    /// My offer key's Cashu lock key (`02 ‖ x-only`, the form every lock names).
    async fn my_lock_key(&self, t: &TradeRecord) -> Result<cdk::nuts::PublicKey> {
        let offer = self.inner.store.offer(&t.offer_d).await?.ok_or_else(|| Error::Database(format!("trade {} names an unknown offer", t.id)))?;
        let keys = self.offer_keys(&offer.pubkey).await?;
        lock_key(&keys.public_key()).map_err(|e| Error::Nostr(e.to_string()))
    }

    async fn save(&self, t: &mut TradeRecord) -> Result<()> {
        t.updated_at = now();
        self.inner.store.save_trade(t).await
    }

    /// End the trade with nothing locked (or nothing left to do), telling the counterparty and
    /// the exchange why when `tell` is set.
    async fn fail(&self, t: &mut TradeRecord, why: String, tell: bool) -> Result<Next> {
        tracing::info!(trade = %t.id, reason = %why, "trade failed");
        // queued before the step is saved: a crash in between sends it again (at least once)
        if tell {
            self.send(t, Body::Abort { reason: why.chars().take(ehash_protocol::events::settlement::MAX_ABORT_REASON).collect() }).await?;
        }
        t.step = Step::Failed;
        t.note = Some(why.clone());
        t.pending = None;
        self.save(t).await?;
        Ok(Next::Continue)
    }

    /// Give up on the trade; my lock comes back after its locktime.
    async fn give_up(&self, t: &mut TradeRecord, why: String, tell: bool) -> Result<Next> {
        tracing::info!(trade = %t.id, reason = %why, "giving up; refunding after the locktime");
        // queued before the step is saved: a crash in between sends it again (at least once)
        if tell {
            self.send(t, Body::Abort { reason: why.chars().take(ehash_protocol::events::settlement::MAX_ABORT_REASON).collect() }).await?;
        }
        t.step = Step::AwaitRefund;
        t.note = Some(why.clone());
        t.pending = None;
        self.save(t).await?;
        Ok(Next::Continue)
    }

    /// Prepare my lock (its inputs reserved in the wallet) and write it into the trade as
    /// `Locking` (with the seller's `secret`: preimage and hash), in a task of its own: a step
    /// given up in between must not leave inputs reserved that no trade names.
    async fn prepare_and_record(
        &self,
        t: &mut TradeRecord,
        w: Wallet,
        net: u64,
        cond: cdk::nuts::SpendingConditions,
        secret: Option<(String, String)>,
    ) -> Result<std::result::Result<(), SwapError>> {
        let (agent, mut rec, seed) = (self.clone(), t.clone(), *self.inner.wallet.seed());
        let task = tokio::spawn(async move {
            match durable::prepare_lock(&w, &seed, net, &cond).await {
                Ok(swap) => {
                    if let Some((preimage, hash)) = secret {
                        rec.preimage = Some(preimage);
                        rec.hash = Some(hash);
                    }
                    rec.pending = Some(swap);
                    rec.step = Step::Locking;
                    agent.save(&mut rec).await.map(|()| Ok(rec))
                }
                Err(e) => Ok(Err(e)),
            }
        });
        match task.await.map_err(|e| Error::Database(format!("preparing a lock: {e}")))?? {
            Ok(rec) => {
                *t = rec;
                Ok(Ok(()))
            }
            Err(e) => Ok(Err(e)),
        }
    }

    /// The counterparty's lock does not verify: remember why and drop it, so the lock the
    /// exchange verified (sent by the exchange) can take its place; the deadline decides.
    async fn bad_lock(&self, t: &mut TradeRecord, why: String) -> Result<Next> {
        tracing::warn!(trade = %t.id, reason = %why, "the counterparty's lock is not acceptable; waiting for the exchange's copy until the deadline");
        t.bad_lock = Some(why.clone());
        t.note = Some(format!("the counterparty's lock is not acceptable: {why}"));
        t.their_token = None;
        self.save(t).await?;
        Ok(Next::Wait)
    }

    /// A mint gave no definite answer (unreachable, rate-limited, a server error): try again
    /// after a wait that grows with each failure.
    fn later(&self, t: &TradeRecord, what: &str, e: &dyn std::fmt::Display) -> Next {
        let wait = self.inner.pace.failed(&t.id);
        tracing::warn!(trade = %t.id, error = %e, retry_in_secs = wait.as_secs(), "{what}; will retry");
        Next::Wait
    }

    /// Move `t` as far as it can go now, giving up this round after [`STEP_TIMEOUT`] (a mint
    /// that never answers): every state is written before the call that depends on it, so the
    /// next round resumes where this one stopped, as after a crash.
    pub(crate) async fn step(&self, t: &mut TradeRecord) -> Result<()> {
        let id = t.id.clone();
        match tokio::time::timeout(STEP_TIMEOUT, self.step_now(t)).await {
            Ok(r) => r,
            Err(_) => {
                let wait = self.inner.pace.failed(&id);
                tracing::warn!(trade = %id, retry_in_secs = wait.as_secs(), "a mint did not answer within {} s; will retry", STEP_TIMEOUT.as_secs());
                Ok(())
            }
        }
    }

    async fn step_now(&self, t: &mut TradeRecord) -> Result<()> {
        for _ in 0..16 {
            let next = match (t.role, t.step.clone()) {
                (_, s) if s.is_final() => Next::Wait,
                (Side::Sell, Step::Matched) => self.seller_lock(t).await?,
                (Side::Buy, Step::Matched) => self.buyer_lock(t).await?,
                (_, Step::Locking) => self.finish_lock(t).await?,
                (Side::Sell, Step::Locked) => self.seller_claim(t).await?,
                (Side::Buy, Step::Locked) => self.buyer_wait(t).await?,
                (_, Step::Claiming) => self.finish_claim(t).await?,
                (_, Step::AwaitRefund) => self.refund(t).await?,
                (_, Step::Refunding) => self.finish_refund(t).await?,
                _ => Next::Wait,
            };
            if let Next::Wait = next {
                break;
            }
        }
        Ok(())
    }

    async fn seller_lock(&self, t: &mut TradeRecord) -> Result<Next> {
        if let Some(r) = &t.their_abort {
            return self.fail(t, format!("the buyer aborted before anything was locked: {r}"), false).await;
        }
        if now() + self.inner.config.lock_guard_secs >= t.terms.times.seller_lock_by {
            return self.fail(t, "too late to lock before the seller's deadline".into(), true).await;
        }
        let preimage = htlc::new_preimage();
        let hash = htlc::hash_of(&preimage).map_err(Error::InvalidToken)?;
        let them = self.counterparty_lock_key(t)?;
        let me = self.my_lock_key(t).await?;
        let cond = htlc::conditions(&hash, t.terms.times.ehash_locktime, them, me)?;
        let w = self.my_wallet(t).await?;
        match self.prepare_and_record(t, w, t.terms.amount, cond, Some((preimage, hash))).await? {
            Ok(()) => Ok(Next::Continue),
            Err(SwapError::Refused(why)) if self.change_due(t).await => Ok(self.later(t, "the ehash is tied up in another swap of this wallet", &why)),
            Err(SwapError::Refused(why)) => {
                self.unbacked(t, &why).await;
                self.fail(t, format!("cannot lock the ehash: {why}"), true).await
            }
            Err(e) => Ok(self.later(t, "preparing the ehash lock", &e)),
        }
    }

    async fn buyer_lock(&self, t: &mut TradeRecord) -> Result<Next> {
        if let Some(r) = &t.their_abort {
            return self.fail(t, format!("the seller aborted before anything was locked: {r}"), false).await;
        }
        let Some(token) = t.their_token.clone() else {
            // judged only once the relays' stored messages are read (after a restart the lock may
            // be there), or once no lock could help any more
            let n = now();
            if n > t.terms.times.seller_lock_by + self.inner.config.grace_secs && (self.caught_up() || n + self.inner.config.lock_guard_secs >= t.terms.times.buyer_lock_by) {
                return match t.bad_lock.clone() {
                    Some(why) => self.fail(t, format!("the seller's lock is not acceptable: {why}"), true).await,
                    None => self.fail(t, "the seller did not lock by its deadline".into(), false).await,
                };
            }
            return Ok(Next::Wait);
        };
        if now() + self.inner.config.lock_guard_secs >= t.terms.times.buyer_lock_by {
            return self.fail(t, "the seller's lock came too late for the buyer to lock before its deadline".into(), true).await;
        }
        // lock only against the lock the exchange judged (its trade event names the hash): one
        // the seller showed only us would leave our lock unmatched there, and the blame with us
        let Some(judged) = t.judged_hash.clone() else { return Ok(Next::Wait) };
        let lock = match self.verify_theirs(t, &token).await? {
            Ok(l) => l,
            Err(e) if e.is_fault() => return self.bad_lock(t, e.to_string()).await,
            Err(e) => return Ok(self.later(t, "cannot check the seller's lock yet", &e)),
        };
        if !judged.eq_ignore_ascii_case(&lock.hash) {
            return self.bad_lock(t, "hash: not the lock the exchange verified".into()).await;
        }
        let them = self.counterparty_lock_key(t)?;
        let me = self.my_lock_key(t).await?;
        let cond = htlc::conditions(&lock.hash, t.terms.times.sats_locktime, them, me)?;
        t.hash = Some(lock.hash.clone());
        t.their_lock = Some(Lock { token, proofs: lock.proofs });
        let mine = self.my_wallet(t).await?;
        match self.prepare_and_record(t, mine, t.terms.sats, cond, None).await? {
            Ok(()) => Ok(Next::Continue),
            Err(SwapError::Refused(why)) if self.change_due(t).await => {
                self.save(t).await?;
                Ok(self.later(t, "the sats are tied up in another swap of this wallet", &why))
            }
            Err(SwapError::Refused(why)) => {
                self.unbacked(t, &why).await;
                self.fail(t, format!("cannot lock the sats: {why}"), true).await
            }
            Err(e) => {
                self.save(t).await?;
                Ok(self.later(t, "preparing the sats lock", &e))
            }
        }
    }

    async fn finish_lock(&self, t: &mut TradeRecord) -> Result<Next> {
        let Some(swap) = t.pending.clone() else { return self.fail(t, "lost the lock swap".into(), false).await };
        let w = self.my_wallet(t).await?;
        match durable::execute(&w, &swap).await {
            Ok(proofs) => {
                let locked = durable::finish(&w, &swap, proofs).await.map_err(|e| Error::Database(e.to_string()))?;
                let token = Token::new(w.mint_url.clone(), locked.clone(), None, w.unit.clone()).to_string();
                // the message is queued before the step is saved: after a crash in between the
                // swap is repeated (same proofs, NUT-09) and the lock sent again; receivers keep
                // the first copy
                self.send(t, Body::Lock { token: token.clone() }).await?;
                t.my_lock = Some(Lock { token, proofs: locked });
                t.pending = None;
                t.step = Step::Locked;
                self.save(t).await?;
                tracing::info!(trade = %t.id, role = %t.role, "locked");
                Ok(Next::Continue)
            }
            Err(SwapError::Refused(why)) => self.lock_refused(t, &w, &swap, why).await,
            Err(SwapError::Conflict) => self.lock_refused(t, &w, &swap, "its inputs were spent elsewhere".into()).await,
            Err(e) => Ok(self.later(t, "lock swap not confirmed", &e)),
        }
    }

    async fn lock_refused(&self, t: &mut TradeRecord, w: &Wallet, swap: &PendingSwap, why: String) -> Result<Next> {
        durable::release(w, swap).await.map_err(|e| Error::Database(e.to_string()))?;
        // the same funds would fail the next match too (most often they were spent elsewhere)
        self.unbacked(t, &why).await;
        self.fail(t, format!("the mint refused the lock: {why}"), true).await
    }

    async fn seller_claim(&self, t: &mut TradeRecord) -> Result<Next> {
        if let Some(r) = t.their_abort.clone() {
            return self.give_up(t, format!("the buyer aborted: {r}"), false).await;
        }
        let Some(token) = t.their_token.clone() else {
            // judged only once the relays' stored messages are read (after a restart the lock may
            // be there), or once it is too late to claim anyway
            let n = now();
            if n > t.terms.times.buyer_lock_by + self.inner.config.grace_secs && (self.caught_up() || n + self.inner.config.claim_guard_secs >= t.terms.times.sats_locktime) {
                return match t.bad_lock.clone() {
                    Some(why) => self.give_up(t, format!("the buyer's lock is not acceptable: {why}"), true).await,
                    None => self.give_up(t, "the buyer did not lock by its deadline".into(), false).await,
                };
            }
            return Ok(Next::Wait);
        };
        if now() + self.inner.config.claim_guard_secs >= t.terms.times.sats_locktime {
            return self.give_up(t, "too late to check and claim the buyer's lock safely before its locktime".into(), true).await;
        }
        let w = self.their_wallet(t).await?;
        let lock = match self.verify_theirs(t, &token).await? {
            Ok(l) => l,
            Err(e) if e.is_fault() => return self.bad_lock(t, e.to_string()).await,
            Err(e) => return Ok(self.later(t, "cannot check the buyer's lock yet", &e)),
        };
        let preimage = t.preimage.clone().ok_or_else(|| Error::Database(format!("trade {}: the seller lost its preimage", t.id)))?;
        let sk = self.my_signing_key(t).await?;
        let inputs = htlc::claim_witness(&lock.proofs, &preimage, &sk)?;
        t.their_lock = Some(Lock { token, proofs: lock.proofs });
        self.start_claim(t, &w, inputs).await
    }

    /// Write down the claim swap of the counterparty's lock (then [`Self::finish_claim`] sends it).
    async fn start_claim(&self, t: &mut TradeRecord, w: &Wallet, inputs: cdk::nuts::Proofs) -> Result<Next> {
        match durable::prepare_redeem(w, self.inner.wallet.seed(), inputs).await {
            Ok(swap) => {
                t.pending = Some(swap);
                t.step = Step::Claiming;
                self.save(t).await?;
                Ok(Next::Continue)
            }
            Err(e) => {
                self.save(t).await?;
                Ok(self.later(t, "preparing the claim", &e))
            }
        }
    }

    async fn buyer_wait(&self, t: &mut TradeRecord) -> Result<Next> {
        let hash = t.hash.clone().unwrap_or_default();
        if let Some(p) = t.preimage_hint.clone() {
            if htlc::hash_of(&p).is_ok_and(|h| h.eq_ignore_ascii_case(&hash)) {
                return self.buyer_claim(t, p).await;
            }
            t.preimage_hint = None;
        }
        // ask the sat mint how my lock stands (at most every POLL_SECS)
        let past_locktime = now() > t.terms.times.sats_locktime + 1;
        if !past_locktime && !self.inner.pace.ready(&t.id) {
            return Ok(Next::Wait);
        }
        self.inner.pace.polled(&t.id);
        let Some(mine) = t.my_lock.clone() else { return self.fail(t, "lost my lock".into(), false).await };
        let w = self.my_wallet(t).await?;
        match htlc::check_states(w.mint_connector().as_ref(), &mine.proofs).await {
            Ok(states) => match htlc::spend_of(&states, &hash) {
                Spend::Claimed(p) => self.buyer_claim(t, p).await,
                Spend::Refunded => {
                    t.step = Step::Refunded;
                    self.save(t).await?;
                    Ok(Next::Continue)
                }
                Spend::Unspent if past_locktime => self.start_refund(t).await,
                Spend::Unspent => Ok(Next::Wait),
            },
            Err(e) => Ok(self.later(t, "cannot ask the sat mint about my lock", &e)),
        }
    }

    async fn buyer_claim(&self, t: &mut TradeRecord, preimage: String) -> Result<Next> {
        let Some(theirs) = t.their_lock.clone() else { return self.fail(t, "lost the seller's lock".into(), false).await };
        let sk = self.my_signing_key(t).await?;
        let inputs = htlc::claim_witness(&theirs.proofs, &preimage, &sk)?;
        let w = self.their_wallet(t).await?;
        t.preimage = Some(preimage);
        self.start_claim(t, &w, inputs).await
    }

    async fn finish_claim(&self, t: &mut TradeRecord) -> Result<Next> {
        let Some(swap) = t.pending.clone() else { return self.fail(t, "lost the claim swap".into(), false).await };
        let w = self.their_wallet(t).await?;
        match durable::execute(&w, &swap).await {
            Ok(proofs) => {
                durable::finish(&w, &swap, proofs).await.map_err(|e| Error::Database(e.to_string()))?;
                if t.role == Side::Sell
                    && let Some(p) = t.preimage.clone()
                {
                    self.send(t, Body::Preimage { preimage: p }).await?;
                }
                t.pending = None;
                t.step = Step::Settled;
                t.note = None;
                self.save(t).await?;
                tracing::info!(trade = %t.id, role = %t.role, "settled");
                Ok(Next::Continue)
            }
            Err(e @ (SwapError::Refused(_) | SwapError::Conflict)) => match t.role {
                // the buyer refunded its sats: my ehash lock comes back after T1
                Side::Sell => self.give_up(t, format!("could not claim the sats: {e}"), false).await,
                Side::Buy => {
                    if now() > t.terms.times.ehash_locktime {
                        self.fail(t, format!("could not claim the ehash before its locktime: {e}"), false).await
                    } else {
                        t.note = Some(format!("the pool's mint refused the claim: {e}; retrying until the locktime"));
                        self.save(t).await?;
                        Ok(self.later(t, "claim refused", &e))
                    }
                }
            },
            Err(e) => Ok(self.later(t, "claim not confirmed", &e)),
        }
    }

    async fn refund(&self, t: &mut TradeRecord) -> Result<Next> {
        let Some(mine) = t.my_lock.clone() else { return self.fail(t, t.note.clone().unwrap_or_else(|| "nothing was locked".into()), false).await };
        let locktime = match t.role {
            Side::Sell => t.terms.times.ehash_locktime,
            Side::Buy => t.terms.times.sats_locktime,
        };
        if now() <= locktime + 1 {
            return Ok(Next::Wait);
        }
        let w = self.my_wallet(t).await?;
        let hash = t.hash.clone().unwrap_or_default();
        match htlc::check_states(w.mint_connector().as_ref(), &mine.proofs).await {
            Ok(states) => match htlc::spend_of(&states, &hash) {
                Spend::Unspent => self.start_refund(t).await,
                Spend::Refunded => {
                    t.step = Step::Refunded;
                    self.save(t).await?;
                    Ok(Next::Continue)
                }
                Spend::Claimed(p) if t.role == Side::Buy => self.buyer_claim(t, p).await,
                Spend::Claimed(_) => self.fail(t, "the buyer claimed the ehash lock after the seller gave up".into(), false).await,
            },
            Err(e) => Ok(self.later(t, "cannot ask the mint about my lock", &e)),
        }
    }

    async fn start_refund(&self, t: &mut TradeRecord) -> Result<Next> {
        let Some(mine) = t.my_lock.clone() else { return self.fail(t, "nothing to refund".into(), false).await };
        let sk = self.my_signing_key(t).await?;
        let inputs = htlc::refund_witness(&mine.proofs, &sk, t.refund_preimage)?;
        let w = self.my_wallet(t).await?;
        match durable::prepare_redeem(&w, self.inner.wallet.seed(), inputs).await {
            Ok(swap) => {
                t.pending = Some(swap);
                t.step = Step::Refunding;
                self.save(t).await?;
                Ok(Next::Continue)
            }
            Err(e) => Ok(self.later(t, "preparing the refund", &e)),
        }
    }

    async fn finish_refund(&self, t: &mut TradeRecord) -> Result<Next> {
        let Some(swap) = t.pending.clone() else { return self.fail(t, "lost the refund swap".into(), false).await };
        let w = self.my_wallet(t).await?;
        match durable::execute(&w, &swap).await {
            Ok(proofs) => {
                durable::finish(&w, &swap, proofs).await.map_err(|e| Error::Database(e.to_string()))?;
                t.pending = None;
                t.step = Step::Refunded;
                self.save(t).await?;
                tracing::info!(trade = %t.id, role = %t.role, "refunded");
                Ok(Next::Continue)
            }
            Err(SwapError::Refused(why)) => {
                // the inputs are unspent and the mint said no: say why, and try the other witness
                // form (mints before NUT-14's refund path allowed an empty preimage want one)
                let next = if t.refund_preimage { "an empty preimage" } else { "a dummy preimage" };
                tracing::warn!(trade = %t.id, reason = %why, "the mint refused my refund; retrying with {next} in the witness");
                t.note = Some(format!("the mint refused the refund: {why}; retrying with {next} in the witness"));
                t.refund_preimage = !t.refund_preimage;
                t.step = Step::AwaitRefund;
                t.pending = None;
                self.save(t).await?;
                self.inner.pace.failed(&t.id);
                Ok(Next::Wait)
            }
            Err(SwapError::Conflict) => {
                // spent already (claimed by the other side at the last moment, or refunded)
                t.step = Step::AwaitRefund;
                t.pending = None;
                self.save(t).await?;
                Ok(Next::Wait)
            }
            Err(e) => Ok(self.later(t, "refund not confirmed", &e)),
        }
    }

    fn counterparty_lock_key(&self, t: &TradeRecord) -> Result<cdk::nuts::PublicKey> {
        let pk = nostr_sdk::prelude::PublicKey::parse(&t.terms.counterparty).map_err(|e| Error::Nostr(e.to_string()))?;
        lock_key(&pk).map_err(|e| Error::Nostr(e.to_string()))
    }
}
