//! The pool mint's Lightning backend, shared by every mint instance.
//!
//! A new epoch rebuilds the cdk `Mint` (see the module above), but the Lightning backend lives as
//! long as the pool: it holds the state of payments in flight. Each mint instance opens the
//! backend's payment event stream when it starts and cancels it when it stops, and a backend's
//! stream is not made for that: `cdk-fake-wallet` hands its stream out once (every later mint
//! instance was refused, "No channel receiver", and cdk retried and warned every few hundred
//! milliseconds), and cancelling LND's stream ends it for good. So the backend's stream is
//! opened once, by [`SharedLightning`], and fanned out: each mint instance gets its own
//! processor ([`SharedLightning::instance`]) whose stream carries every event from the moment the
//! instance was made, and whose cancellation ends that stream alone.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use cdk::cdk_payment::{
    self, CreateIncomingPaymentResponse, Event, IncomingPaymentOptions, MakePaymentResponse, MintPayment, OutgoingPaymentOptions, PaymentIdentifier,
    PaymentQuoteResponse, SettingsResponse, WaitPaymentResponse,
};
use cdk::nuts::CurrencyUnit;
use futures::{Stream, StreamExt};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// Events a mint instance may fall behind by before it misses some.
const EVENT_BUFFER: usize = 256;
/// The wait before reopening the backend's stream, doubled up to [`MAX_REOPEN_WAIT`].
const REOPEN_WAIT: Duration = Duration::from_millis(250);
const MAX_REOPEN_WAIT: Duration = Duration::from_secs(30);

/// The pool's Lightning backend with its payment event stream opened once and fanned out to
/// every mint instance.
pub struct SharedLightning {
    backend: ehash_lightning::Processor,
    events: broadcast::Sender<Event>,
    /// Reads the backend's stream into `events`; started by the first instance that listens.
    pump: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    stop: CancellationToken,
}

impl std::fmt::Debug for SharedLightning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLightning").finish_non_exhaustive()
    }
}

impl SharedLightning {
    /// Share `backend` between mint instances.
    pub fn new(backend: ehash_lightning::Processor) -> Arc<Self> {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        Arc::new(Self { backend, events, pump: std::sync::Mutex::new(None), stop: CancellationToken::new() })
    }

    /// The processor for one mint instance: its event stream carries every backend event from
    /// now on, and cancelling it (as a stopping mint does) leaves the backend's stream open for
    /// the next instance.
    pub fn instance(self: &Arc<Self>) -> ehash_lightning::Processor {
        Arc::new(Instance {
            shared: self.clone(),
            first: std::sync::Mutex::new(Some(self.events.subscribe())),
            cancel: CancellationToken::new(),
            active: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Start the backend (once, for every mint instance).
    pub async fn start(&self) -> Result<(), cdk_payment::Error> {
        self.backend.start().await
    }

    /// Close the backend's event stream and stop the backend (when the pool stops).
    pub async fn stop(&self) -> Result<(), cdk_payment::Error> {
        self.stop.cancel();
        self.backend.cancel_payment_event_stream();
        self.backend.stop().await
    }

    fn ensure_pump(&self) {
        let mut pump = match self.pump.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if pump.is_none() && !self.stop.is_cancelled() {
            *pump = Some(tokio::spawn(pump_events(self.backend.clone(), self.events.clone(), self.stop.clone())));
        }
    }
}

impl Drop for SharedLightning {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Read the backend's event stream into `events` until `stop`, reopening it when it ends.
async fn pump_events(backend: ehash_lightning::Processor, events: broadcast::Sender<Event>, stop: CancellationToken) {
    let mut wait = REOPEN_WAIT;
    let mut warned = false;
    loop {
        let opened = tokio::select! {
            _ = stop.cancelled() => return,
            r = backend.wait_payment_event() => r,
        };
        match opened {
            Ok(mut stream) => {
                (wait, warned) = (REOPEN_WAIT, false);
                loop {
                    let next = tokio::select! {
                        _ = stop.cancelled() => return,
                        next = stream.next() => next,
                    };
                    match next {
                        // no instance listening (between two) is no loss: each instance
                        // subscribes when it is made, before the previous one stops
                        Some(event) => drop(events.send(event)),
                        None => break,
                    }
                }
            }
            Err(e) => {
                if !warned {
                    tracing::warn!(error = %e, "the pool mint's Lightning backend does not report payments; retrying (check mint_bridge.lightning)");
                    warned = true;
                }
                wait = (wait * 2).min(MAX_REOPEN_WAIT);
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// One mint instance's view of the [`SharedLightning`] backend.
struct Instance {
    shared: Arc<SharedLightning>,
    /// The subscription taken when the instance was made, for its first stream.
    first: std::sync::Mutex<Option<broadcast::Receiver<Event>>>,
    cancel: CancellationToken,
    active: Arc<AtomicBool>,
}

/// Marks an instance's stream active while it lives.
struct Active(Arc<AtomicBool>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

#[async_trait]
impl MintPayment for Instance {
    type Err = cdk_payment::Error;

    async fn get_settings(&self) -> Result<SettingsResponse, Self::Err> {
        self.shared.backend.get_settings().await
    }

    async fn create_incoming_payment_request(&self, options: IncomingPaymentOptions) -> Result<CreateIncomingPaymentResponse, Self::Err> {
        self.shared.backend.create_incoming_payment_request(options).await
    }

    async fn get_payment_quote(&self, unit: &CurrencyUnit, options: OutgoingPaymentOptions) -> Result<PaymentQuoteResponse, Self::Err> {
        self.shared.backend.get_payment_quote(unit, options).await
    }

    async fn make_payment(&self, unit: &CurrencyUnit, options: OutgoingPaymentOptions) -> Result<MakePaymentResponse, Self::Err> {
        self.shared.backend.make_payment(unit, options).await
    }

    async fn wait_payment_event(&self) -> Result<Pin<Box<dyn Stream<Item = Event> + Send>>, Self::Err> {
        let first = match self.first.lock() {
            Ok(mut g) => g.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        let rx = first.unwrap_or_else(|| self.shared.events.subscribe());
        self.shared.ensure_pump();
        self.active.store(true, Ordering::SeqCst);
        let state = (rx, self.cancel.clone(), Active(self.active.clone()));
        Ok(Box::pin(futures::stream::unfold(state, |(mut rx, cancel, active)| async move {
            loop {
                let got = tokio::select! {
                    _ = cancel.cancelled() => return None,
                    got = rx.recv() => got,
                };
                match got {
                    Ok(event) => return Some((event, (rx, cancel, active))),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(
                            missed,
                            "the pool mint fell behind its Lightning backend's payment events; it finds their payments when their quotes are checked"
                        );
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })))
    }

    fn is_payment_event_stream_active(&self) -> bool {
        self.active.load(Ordering::SeqCst)
    }

    fn cancel_payment_event_stream(&self) {
        self.cancel.cancel();
    }

    async fn check_incoming_payment_status(&self, payment_identifier: &PaymentIdentifier) -> Result<Vec<WaitPaymentResponse>, Self::Err> {
        self.shared.backend.check_incoming_payment_status(payment_identifier).await
    }

    async fn check_outgoing_payment(&self, payment_identifier: &PaymentIdentifier) -> Result<MakePaymentResponse, Self::Err> {
        self.shared.backend.check_outgoing_payment(payment_identifier).await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use cdk::cdk_payment::{Bolt11IncomingPaymentOptions, IncomingPaymentOptions};
    use cdk::types::FeeReserve;

    use super::*;

    fn fake() -> ehash_lightning::Processor {
        let fee_reserve = FeeReserve { min_fee_reserve: 1.into(), percent_fee_reserve: 0.01 };
        Arc::new(cdk_fake_wallet::FakeWallet::new(fee_reserve, HashMap::default(), HashSet::default(), 0, CurrencyUnit::Sat))
    }

    async fn invoice(p: &ehash_lightning::Processor) -> CreateIncomingPaymentResponse {
        let options = Bolt11IncomingPaymentOptions { description: None, amount: cdk_common::Amount::new(10, CurrencyUnit::Sat), unix_expiry: None };
        p.create_incoming_payment_request(IncomingPaymentOptions::Bolt11(options)).await.unwrap()
    }

    async fn next_event(stream: &mut Pin<Box<dyn Stream<Item = Event> + Send>>) -> Event {
        tokio::time::timeout(Duration::from_secs(5), stream.next()).await.expect("an event within 5 s").expect("the stream is open")
    }

    /// The fake backend hands its stream out once: a second mint instance on the backend itself
    /// is refused (what cdk warned about after every epoch change). Shared, each instance
    /// (one after another, as a rebuild stops the old one) gets the payments.
    #[tokio::test]
    async fn every_mint_instance_gets_its_own_stream_of_the_backends_payments() {
        let backend = fake();
        let _taken = backend.wait_payment_event().await.unwrap();
        assert!(backend.wait_payment_event().await.is_err(), "the fake backend's stream opens once");

        let shared = SharedLightning::new(fake());
        let old = shared.instance();
        let mut old_stream = old.wait_payment_event().await.unwrap();
        assert!(old.is_payment_event_stream_active());
        let paid = invoice(&old).await;
        let Event::PaymentReceived(got) = next_event(&mut old_stream).await else { panic!("a payment event") };
        assert_eq!(got.payment_identifier, paid.request_lookup_id);

        // a rebuild: the new instance is made, then the old one stops (cdk drops the stream,
        // then cancels it)
        let new = shared.instance();
        drop(old_stream);
        old.cancel_payment_event_stream();
        assert!(!old.is_payment_event_stream_active());
        let paid = invoice(&new).await; // paid before the new instance listens: not lost
        let mut new_stream = new.wait_payment_event().await.unwrap();
        let Event::PaymentReceived(got) = next_event(&mut new_stream).await else { panic!("a payment event") };
        assert_eq!(got.payment_identifier, paid.request_lookup_id);

        // cancelling an instance ends its stream alone
        new.cancel_payment_event_stream();
        assert!(tokio::time::timeout(Duration::from_secs(5), new_stream.next()).await.unwrap().is_none());
        let third = shared.instance();
        let mut third_stream = third.wait_payment_event().await.unwrap();
        let paid = invoice(&third).await;
        let Event::PaymentReceived(got) = next_event(&mut third_stream).await else { panic!("a payment event") };
        assert_eq!(got.payment_identifier, paid.request_lookup_id);
        shared.stop().await.unwrap();
    }
}
