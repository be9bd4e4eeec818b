//! Selling by policy: the proxy's auto-sell (and `ehash up`'s simulated miner) offer the ehash a
//! wallet earns, in whole lots, at a set price.

use std::time::Duration;

use ehash_protocol::market::{Side, whole_lots};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::record::OfferRecord;
use super::{Agent, OfferRequest};
use crate::Result;

/// What to sell and at what price (`[proxy.auto_sell]`).
///
/// | key | default | meaning |
/// |-----|---------|---------|
/// | `sats_per_lot` | `0` (off) | the asking price, sats per lot of the exchange |
/// | `keep` | `0` | ehash of each epoch never offered |
/// | `interval_secs` | `60` | how often unoffered ehash is offered |
/// | `ttl_secs` | `3600` | each offer's lifetime (what is left is offered again after it) |
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SellPolicy {
    /// Asking price per lot; 0 disables selling.
    pub sats_per_lot: u64,
    /// Ehash per epoch unit kept back.
    pub keep: u64,
    /// Seconds between rounds.
    pub interval_secs: u64,
    /// Offer lifetime.
    pub ttl_secs: u64,
}

impl Default for SellPolicy {
    fn default() -> Self {
        Self { sats_per_lot: 0, keep: 0, interval_secs: 60, ttl_secs: 3600 }
    }
}

impl Agent {
    /// One round of the policy: offer every whole lot of each epoch's ehash not kept back or
    /// already offered. Units whose epoch cannot be traded (expired, unannounced) are skipped.
    pub async fn sell_once(&self, policy: &SellPolicy) -> Result<Vec<OfferRecord>> {
        let mut placed = vec![];
        if policy.sats_per_lot == 0 {
            return Ok(placed);
        }
        let lot = self.inner.exchange.lot;
        let mint = self.inner.wallet.mint_url();
        for unit in self.inner.wallet.known_units().await? {
            let balance = self.inner.wallet.balance_at(&mint, &unit).await?;
            let free = balance.saturating_sub(policy.keep).saturating_sub(self.inner.wallet.reserved_at(&mint, &unit).await?.0);
            let amount = whole_lots(free, lot);
            if amount == 0 {
                continue;
            }
            let req = OfferRequest {
                side: Side::Sell,
                unit: unit.clone(),
                amount,
                min: None,
                sats_per_lot: policy.sats_per_lot,
                sat_mints: vec![],
                ttl_secs: Some(policy.ttl_secs),
            };
            match self.place_offer(req).await {
                Ok(o) => {
                    tracing::info!(%unit, amount, price = policy.sats_per_lot, offer = %o.d, "auto-sell offer");
                    placed.push(o);
                }
                Err(e) => tracing::debug!(%unit, error = %e, "auto-sell: not offering this unit now"),
            }
        }
        Ok(placed)
    }

    /// Run [`Agent::sell_once`] every `interval_secs` until `cancel`.
    pub fn auto_sell(&self, policy: SellPolicy, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
        let agent = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(policy.interval_secs.max(1)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tick.tick() => {
                        if let Err(e) = agent.sell_once(&policy).await {
                            tracing::warn!(error = %e, "auto-sell round");
                        }
                    }
                }
            }
        })
    }
}
