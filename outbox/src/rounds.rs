//! Periodic work that stops with its service: [`every`] runs a round at a fixed period until
//! cancelled, dropping a round in progress (every round must be safe to cut short, as after a
//! crash).

use std::future::Future;
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// Run `round` every `period`, the first at `start`, until `cancel`. A slow round delays the
/// next instead of piling rounds up.
pub async fn every<F, Fut>(start: Instant, period: Duration, cancel: CancellationToken, mut round: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut tick = tokio::time::interval_at(start, period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tokio::select! {
        _ = cancel.cancelled() => {}
        _ = async {
            loop {
                tick.tick().await;
                round().await;
            }
        } => {}
    }
}
