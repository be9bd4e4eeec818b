//! A resilient nostr subscription: live events from every relay, deduplicated, with a periodic
//! catch-up fetch (so an event a relay dropped from a live subscription, or sent while the
//! connection was down, still arrives) and filters that can change while it runs.
//!
//! Events are passed on as received; verifying signatures and schemas is the consumer's job.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use nostr_sdk::prelude::*;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// How far back a catch-up fetch looks.
pub const CATCH_UP_WINDOW: Duration = Duration::from_secs(600);
/// Event ids remembered for deduplication.
const SEEN_CAPACITY: usize = 100_000;

/// Handle of a running watcher.
#[derive(Debug, Clone)]
pub struct Watcher {
    filters: watch::Sender<Vec<Filter>>,
    caught_up: watch::Receiver<bool>,
}

impl Watcher {
    /// Replace the filters (the subscription is renewed and the new filters fetched in full).
    pub fn set_filters(&self, filters: Vec<Filter>) {
        self.filters.send_replace(filters);
    }

    /// Wait until the relays' stored events for the filters have been fetched from a connected
    /// relay and passed on (while no relay can be reached, this waits: an event not seen yet
    /// may still be there). `false` if the watcher stopped first.
    pub async fn caught_up(&self) -> bool {
        let mut rx = self.caught_up.clone();
        rx.wait_for(|done| *done).await.is_ok()
    }

    /// Whether the watcher is caught up now, as it changes: `true` once the stored events have
    /// been fetched and passed on, `false` again while no relay is connected (events sent
    /// meanwhile are not here yet) until they are fetched again after the reconnection.
    pub fn caught_up_changes(&self) -> watch::Receiver<bool> {
        self.caught_up.clone()
    }
}

/// How often the relays' connections are looked at (to know when the watcher fell behind).
const STATUS_EVERY: Duration = Duration::from_secs(1);

/// Whether any of the client's relays is connected.
async fn connected(client: &Client) -> bool {
    client.relays().await.values().any(|r| r.status() == RelayStatus::Connected)
}

struct Seen {
    set: HashSet<EventId>,
    order: VecDeque<EventId>,
}

impl Seen {
    fn insert(&mut self, id: EventId) -> bool {
        if !self.set.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > SEEN_CAPACITY
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }
}

/// Start watching `relays` for `filters`; every matching event arrives once on the returned
/// channel. Every `catch_up` the filters are fetched again for the last [`CATCH_UP_WINDOW`].
pub fn watch(relays: Vec<String>, filters: Vec<Filter>, catch_up: Duration, cancel: CancellationToken) -> (Watcher, mpsc::Receiver<Event>) {
    let (ftx, mut frx) = watch::channel(filters);
    let (caught_up_tx, caught_up) = watch::channel(false);
    let (tx, rx) = mpsc::channel(4096);
    tokio::spawn(async move {
        let client = Client::default();
        for r in &relays {
            if let Err(e) = client.add_relay(r.as_str()).await {
                tracing::warn!(relay = %r, error = %e, "cannot add relay");
            }
        }
        client.connect().and_wait(Duration::from_secs(5)).await;
        let mut seen = Seen { set: HashSet::new(), order: VecDeque::new() };
        let mut notes = client.notifications();
        let mut tick = tokio::time::interval(catch_up);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut subs: Vec<SubscriptionId> = Vec::new();
        let mut full_fetch = true;
        let mut status = tokio::time::interval(STATUS_EVERY);
        status.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // no relay connected since the last time it was caught up
        let mut lost = false;
        'outer: loop {
            // (re)subscribe to the current filters: the new subscriptions first, so nothing
            // live is missed in between (duplicates are dropped)
            let old: Vec<SubscriptionId> = std::mem::take(&mut subs);
            let current = frx.borrow_and_update().clone();
            for f in &current {
                match client.subscribe(f.clone()).await {
                    Ok(out) => subs.push(out.value),
                    Err(e) => tracing::debug!(error = %e, "subscribe failed; the catch-up fetch covers it"),
                }
            }
            for id in old {
                let _ = client.unsubscribe(&id).await;
            }
            let since = if full_fetch { None } else { Some(Timestamp::now() - CATCH_UP_WINDOW) };
            full_fetch = false;
            match fetch(&client, &current, since, &mut seen, &tx).await {
                Err(()) => break,
                Ok(true) => {
                    caught_up_tx.send_replace(true);
                }
                // nothing reached: the next catch-up fetches everything again
                Ok(false) => full_fetch = true,
            }
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break 'outer,
                    changed = frx.changed() => {
                        if changed.is_err() { break 'outer; }
                        full_fetch = true;
                        continue 'outer;
                    }
                    _ = status.tick() => {
                        let up = connected(&client).await;
                        if !up && !lost {
                            lost = true;
                            caught_up_tx.send_replace(false);
                        } else if up && lost {
                            // fetch what was sent while away (and renew the subscriptions)
                            lost = false;
                            full_fetch = true;
                            continue 'outer;
                        }
                    }
                    _ = tick.tick() => {
                        let current = frx.borrow().clone();
                        let since = if *caught_up_tx.borrow() { Some(Timestamp::now() - CATCH_UP_WINDOW) } else { None };
                        match fetch(&client, &current, since, &mut seen, &tx).await {
                            Err(()) => break 'outer,
                            Ok(true) => {
                                caught_up_tx.send_replace(true);
                            }
                            Ok(false) => {}
                        }
                    }
                    note = notes.next() => match note {
                        Some(ClientNotification::Event { event, .. }) => {
                            if seen.insert(event.id) && tx.send(*event).await.is_err() {
                                break 'outer;
                            }
                        }
                        Some(ClientNotification::Message { message, .. }) => {
                            if let RelayMessage::Closed { .. } = message.as_ref() {
                                continue 'outer; // a relay closed a subscription: renew them
                            }
                        }
                        Some(ClientNotification::Shutdown) | None => break 'outer,
                    }
                }
            }
        }
        client.shutdown().await;
    });
    (Watcher { filters: ftx, caught_up }, rx)
}

/// Fetch `filters` (from `since`) and pass on unseen events: `Ok(true)` if every filter was
/// fetched with a relay connected, `Err` when the receiver is gone.
async fn fetch(client: &Client, filters: &[Filter], since: Option<Timestamp>, seen: &mut Seen, tx: &mpsc::Sender<Event>) -> Result<bool, ()> {
    let mut complete = client.relays().await.values().any(|r| r.status().is_connected());
    for f in filters {
        let f = match since {
            Some(s) if f.since.is_none_or(|fs| fs < s) => f.clone().since(s),
            _ => f.clone(),
        };
        match client.fetch_events(f).timeout(Duration::from_secs(10)).await {
            Ok(events) => {
                for e in events {
                    if seen.insert(e.id) && tx.send(e).await.is_err() {
                        return Err(());
                    }
                }
            }
            Err(e) => {
                complete = false;
                tracing::debug!(error = %e, "catch-up fetch failed; retrying at the next tick");
            }
        }
    }
    Ok(complete)
}
