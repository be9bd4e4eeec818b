//! The `ehash` custom payment method: quotes start unpaid and only the pool credits them.
//!
//! The processor never reports a payment by itself (its event stream is empty and polling finds
//! nothing): ehash is issued only when the pool pays a quote what its recorded shares earned
//! (`crate::credit`). Quotes must be NUT-20 locked, and only the active epoch's processor
//! accepts new quotes.

use std::collections::HashMap;
use std::pin::Pin;

use async_trait::async_trait;
use cdk::cdk_payment::{
    self, CreateIncomingPaymentResponse, Event, IncomingPaymentOptions, MakePaymentResponse, MintPayment,
    OutgoingPaymentOptions, PaymentIdentifier, PaymentQuoteResponse, SettingsResponse, WaitPaymentResponse,
};
use cdk::nuts::CurrencyUnit;
use futures::Stream;

/// The custom payment method name (`/v1/mint/quote/ehash`, `/v1/mint/ehash`).
pub const EHASH_METHOD: &str = "ehash";

/// Payment processor for one epoch unit.
#[derive(Debug, Clone)]
pub struct EhashProcessor {
    unit: CurrencyUnit,
    epoch: u32,
    open: bool,
}

impl EhashProcessor {
    /// A processor for `unit` of `epoch`, accepting new quotes while `open` is true.
    pub fn new(unit: CurrencyUnit, epoch: u32, open: bool) -> Self {
        Self { unit, epoch, open }
    }
}

#[async_trait]
impl MintPayment for EhashProcessor {
    type Err = cdk_payment::Error;

    async fn get_settings(&self) -> Result<SettingsResponse, Self::Err> {
        Ok(SettingsResponse {
            unit: self.unit.to_string(),
            bolt11: None,
            bolt12: None,
            onchain: None,
            custom: HashMap::from([(EHASH_METHOD.to_string(), "{}".to_string())]),
        })
    }

    async fn create_incoming_payment_request(
        &self,
        options: IncomingPaymentOptions,
    ) -> Result<CreateIncomingPaymentResponse, Self::Err> {
        let IncomingPaymentOptions::Custom(opts) = options else {
            return Err(cdk_payment::Error::UnsupportedPaymentOption);
        };
        if opts.pubkey.is_none() {
            return Err(cdk_payment::Error::Custom("ehash quotes must be NUT-20 locked: include a pubkey".into()));
        }
        if !self.open {
            return Err(cdk_payment::Error::Custom(format!("epoch {} ({}) is closed", self.epoch, self.unit)));
        }
        let id = opts.quote_id.to_string();
        Ok(CreateIncomingPaymentResponse {
            request_lookup_id: PaymentIdentifier::CustomId(id.clone()),
            request: format!("ehash:{id}"),
            // Quotes of an epoch accumulate credits until the miner mints; they never expire.
            expiry: None,
            extra_json: None,
        })
    }

    async fn get_payment_quote(
        &self,
        _unit: &CurrencyUnit,
        _options: OutgoingPaymentOptions,
    ) -> Result<PaymentQuoteResponse, Self::Err> {
        Err(cdk_payment::Error::UnsupportedPaymentOption)
    }

    async fn make_payment(
        &self,
        _unit: &CurrencyUnit,
        _options: OutgoingPaymentOptions,
    ) -> Result<MakePaymentResponse, Self::Err> {
        Err(cdk_payment::Error::UnsupportedPaymentOption)
    }

    async fn wait_payment_event(&self) -> Result<Pin<Box<dyn Stream<Item = Event> + Send>>, Self::Err> {
        Ok(Box::pin(futures::stream::pending()))
    }

    fn is_payment_event_stream_active(&self) -> bool {
        true
    }

    fn cancel_payment_event_stream(&self) {}

    async fn check_incoming_payment_status(
        &self,
        _payment_identifier: &PaymentIdentifier,
    ) -> Result<Vec<WaitPaymentResponse>, Self::Err> {
        Ok(vec![])
    }

    async fn check_outgoing_payment(
        &self,
        _payment_identifier: &PaymentIdentifier,
    ) -> Result<MakePaymentResponse, Self::Err> {
        Err(cdk_payment::Error::UnsupportedPaymentOption)
    }
}
