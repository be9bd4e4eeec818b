//! Offers stay backed by the funds they offer. The wallet refuses to spend what open offers
//! hold ([`crate::MinerWallet::ensure_free`]); this module catches funds that vanish anyway
//! (another device with the same seed spent them): the agent asks the mints about the proofs
//! behind its open offers every [`BACKING_SECS`] and withdraws the offers they no longer back,
//! before the exchange can match them to someone.

use std::collections::BTreeMap;
use std::time::Duration;

use ehash_protocol::market::Side;

use super::Agent;
use super::record::TradeRecord;
use crate::Result;

/// How often the funds behind open offers are checked with their mints.
pub const BACKING_SECS: u64 = 30;

/// Longest wait for a mint's NUT-07 answer.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

impl Agent {
    /// Check with the mints (NUT-07) that the funds behind every open offer are still unspent,
    /// and withdraw (cancel on nostr) the newest offers of each mint and unit until what stays
    /// open is backed. Returns the ids of the offers withdrawn. A mint that does not answer
    /// leaves its offers as they are until the next round.
    pub async fn check_backing(&self) -> Result<Vec<String>> {
        let mut groups: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        // newest first (the store's order): those are withdrawn first
        for s in self.inner.store.offer_states().await? {
            if !s.open {
                continue;
            }
            let key = match s.offer.side {
                Side::Sell => (s.offer.mint_url.clone(), s.offer.unit.clone()),
                Side::Buy => match s.offer.sat_mints.first() {
                    Some(m) => (m.clone(), "sat".to_owned()),
                    None => continue,
                },
            };
            groups.entry(key).or_default().push(s.offer.d.clone());
        }
        let mut withdrawn = vec![];
        for ((mint, unit), offers) in groups {
            match tokio::time::timeout(CHECK_TIMEOUT, self.refresh_unspent(&mint, &unit)).await {
                // nothing spent elsewhere: a shortfall is change of my own swaps still in flight
                Ok(Ok(0)) => continue,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::debug!(%mint, %unit, error = %e, "cannot check the funds behind offers now");
                    continue;
                }
                Err(_) => {
                    tracing::debug!(%mint, %unit, "the mint did not answer a state check");
                    continue;
                }
            }
            for d in offers {
                let have = self.inner.wallet.balance_at(&mint, &unit).await?;
                let (reserved, _) = self.inner.wallet.reserved_at(&mint, &unit).await?;
                if reserved <= have {
                    break;
                }
                let why = format!("the {unit} at {mint} behind it was spent elsewhere (held {have}, offers and trades need {reserved})");
                self.withdraw_offer(&d, &why).await?;
                withdrawn.push(d);
            }
        }
        Ok(withdrawn)
    }

    /// Drop from the wallet the proofs of `unit` at `mint` that the mint says are spent; returns
    /// how many there were.
    async fn refresh_unspent(&self, mint: &str, unit: &str) -> Result<usize> {
        let w = self.inner.wallet.wallet_at(mint, unit).await?;
        let proofs = w.get_unspent_proofs().await?;
        if proofs.is_empty() {
            return Ok(0);
        }
        let states = w.check_proofs_spent(proofs).await?;
        Ok(states.iter().filter(|s| s.state == cdk::nuts::State::Spent).count())
    }

    /// Whether my lock of `t` may have failed for want of funds only because another swap of
    /// this wallet has them set aside (its change is still to come).
    pub(crate) async fn change_due(&self, t: &TradeRecord) -> bool {
        let (mint, unit) = match t.role {
            Side::Sell => (t.terms.mint_url.as_str(), t.terms.unit.as_str()),
            Side::Buy => (t.terms.sat_mint.as_str(), "sat"),
        };
        self.inner.wallet.in_flight(mint, unit).await.is_ok_and(|n| n > 0)
    }

    /// Cancel offer `d` unless it is cancelled or expired already (also while its trades take
    /// all of it: a trade that fails gives its amount back), saying why in the logs.
    pub(crate) async fn withdraw_offer(&self, d: &str, why: &str) -> Result<()> {
        let live = self.inner.store.offer(d).await?.is_some_and(|o| !o.canceled && o.expiration > super::now());
        if live {
            self.cancel_offer(d).await?;
            tracing::warn!(offer = %d, reason = %why, "offer withdrawn");
        }
        Ok(())
    }

    /// My lock of trade `t` cannot be made for lack of funds: withdraw its offer, so that it is
    /// not matched again.
    pub(crate) async fn unbacked(&self, t: &TradeRecord, why: &str) {
        if let Err(e) = self.withdraw_offer(&t.offer_d, why).await {
            tracing::warn!(offer = %t.offer_d, error = %e, "cannot withdraw an offer whose funds are gone");
        }
    }
}
