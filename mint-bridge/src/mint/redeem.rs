//! Redemption of a redeemable epoch's ehash for sat ecash at the pool's own mint, through
//! standard Cashu flows (protocol §2, "Redemption"; design notes in docs/design/redemption.md):
//!
//! 1. the holder creates a NUT-04 mint quote in unit `sat` with the custom method
//!    `ehash-redeem` (NUT-20 locked); nothing but a redemption ever pays it;
//! 2. they ask for a NUT-05 melt quote in the epoch's unit, method `ehash-redeem`, whose
//!    `request` is that sat quote's request and whose `extra` names the ehash amount
//!    (`{"ehash_amount": E}`); the quote states the sats it pays,
//!    `floor(E × payout / issued)`;
//! 3. they melt E ehash: cdk's melt saga marks the inputs pending, this processor credits the
//!    sat quote (payment id = the melt quote id) and only then are the inputs spent; a refusal
//!    releases them, and a crash in between is resolved at start by cdk finding (or not) the
//!    melt's payment on the sat quote. Either both sides happen or neither;
//! 4. they mint the sats from their quote (NUT-20 signature).

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use async_trait::async_trait;
use cdk::cdk_payment::{
    self, CreateIncomingPaymentResponse, Event, IncomingPaymentOptions, MakePaymentResponse, MintPayment,
    OutgoingPaymentOptions, PaymentIdentifier, PaymentQuoteResponse, SettingsResponse, WaitPaymentResponse,
};
use cdk::mint::Mint;
use cdk::nuts::{CurrencyUnit, MeltQuoteState};
use cdk_common::QuoteId;
use ehash_protocol::epoch::{EpochState, redeem_sats};
use futures::Stream;
use serde_json::json;

use crate::ledger::Ledger;

pub use ehash_protocol::epoch::REDEEM_METHOD;

/// The mint the processors credit, set once it is built.
pub type MintCell = Arc<OnceLock<Weak<Mint>>>;

fn err(msg: impl Into<String>) -> cdk_payment::Error {
    cdk_payment::Error::Custom(msg.into())
}

fn settings(unit: &CurrencyUnit) -> SettingsResponse {
    SettingsResponse {
        unit: unit.to_string(),
        bolt11: None,
        bolt12: None,
        onchain: None,
        custom: HashMap::from([(REDEEM_METHOD.to_string(), "{}".to_string())]),
    }
}

/// The sat side: quotes that only a redemption pays.
#[derive(Debug, Clone, Default)]
pub struct SatRedeemProcessor;

#[async_trait]
impl MintPayment for SatRedeemProcessor {
    type Err = cdk_payment::Error;

    async fn get_settings(&self) -> Result<SettingsResponse, Self::Err> {
        Ok(settings(&CurrencyUnit::Sat))
    }

    async fn create_incoming_payment_request(&self, options: IncomingPaymentOptions) -> Result<CreateIncomingPaymentResponse, Self::Err> {
        let IncomingPaymentOptions::Custom(opts) = options else { return Err(cdk_payment::Error::UnsupportedPaymentOption) };
        if opts.pubkey.is_none() {
            return Err(err("redemption quotes must be NUT-20 locked: include a pubkey"));
        }
        let id = opts.quote_id.to_string();
        Ok(CreateIncomingPaymentResponse {
            request_lookup_id: PaymentIdentifier::CustomId(id.clone()),
            request: format!("{REDEEM_METHOD}:{id}"),
            expiry: None,
            extra_json: None,
        })
    }

    async fn get_payment_quote(&self, _unit: &CurrencyUnit, _options: OutgoingPaymentOptions) -> Result<PaymentQuoteResponse, Self::Err> {
        Err(cdk_payment::Error::UnsupportedPaymentOption)
    }

    async fn make_payment(&self, _unit: &CurrencyUnit, _options: OutgoingPaymentOptions) -> Result<MakePaymentResponse, Self::Err> {
        Err(cdk_payment::Error::UnsupportedPaymentOption)
    }

    async fn wait_payment_event(&self) -> Result<Pin<Box<dyn Stream<Item = Event> + Send>>, Self::Err> {
        Ok(Box::pin(futures::stream::pending()))
    }

    fn is_payment_event_stream_active(&self) -> bool {
        true
    }

    fn cancel_payment_event_stream(&self) {}

    async fn check_incoming_payment_status(&self, _id: &PaymentIdentifier) -> Result<Vec<WaitPaymentResponse>, Self::Err> {
        Ok(vec![])
    }

    async fn check_outgoing_payment(&self, _id: &PaymentIdentifier) -> Result<MakePaymentResponse, Self::Err> {
        Err(cdk_payment::Error::UnsupportedPaymentOption)
    }
}

/// The ehash side of one epoch unit: melts that pay a sat redemption quote.
#[derive(Debug, Clone)]
pub struct RedeemProcessor {
    unit: CurrencyUnit,
    epoch: u32,
    ledger: Ledger,
    mint: MintCell,
    in_flight: Arc<Mutex<HashSet<String>>>,
}

/// What a melt quote of a redemption records (its `extra_json`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Terms {
    sat_quote: String,
    ehash_amount: u64,
    sat_amount: u64,
    epoch: u32,
    payout: u64,
    issued: u64,
}

impl RedeemProcessor {
    /// The processor of `unit` (epoch `epoch`), reading the epoch's state from `ledger`.
    pub fn new(unit: CurrencyUnit, epoch: u32, ledger: Ledger, mint: MintCell, in_flight: Arc<Mutex<HashSet<String>>>) -> Self {
        Self { unit, epoch, ledger, mint, in_flight }
    }

    fn mint(&self) -> Result<Arc<Mint>, cdk_payment::Error> {
        self.mint.get().and_then(Weak::upgrade).ok_or_else(|| err("the mint is restarting; try again"))
    }

    /// (payout, issued) of the epoch if it is redeemable, else why not.
    async fn redeemable(&self) -> Result<(u64, u64), cdk_payment::Error> {
        let e = self
            .ledger
            .epochs()
            .await
            .map_err(|e| err(format!("reading epoch {}: {e}", self.epoch)))?
            .into_iter()
            .find(|e| e.epoch == self.epoch)
            .ok_or_else(|| err(format!("no epoch {}", self.epoch)))?;
        match (e.state, e.payout, e.issued) {
            (EpochState::Redeemable, Some(payout), Some(issued)) if issued > 0 => Ok((payout, issued)),
            (EpochState::Expired, ..) => Err(err(format!("epoch {} expired at {}: its ehash no longer redeems", e.epoch, e.expires_at.unwrap_or(0)))),
            (EpochState::Redeemable, ..) => Err(err(format!("epoch {} pays nothing", e.epoch))),
            (EpochState::Orphaned, ..) => Err(err(format!("epoch {} is orphaned: its block left the chain before it matured, and it pays nothing", e.epoch))),
            (state, ..) => Err(err(format!(
                "epoch {} is {state}: only redeemable epochs redeem ({})",
                e.epoch,
                if e.payout.is_some() { "its block has not matured yet" } else { "it closed without a block and pays nothing" }
            ))),
        }
    }
}

#[async_trait]
impl MintPayment for RedeemProcessor {
    type Err = cdk_payment::Error;

    async fn get_settings(&self) -> Result<SettingsResponse, Self::Err> {
        Ok(settings(&self.unit))
    }

    async fn create_incoming_payment_request(&self, _options: IncomingPaymentOptions) -> Result<CreateIncomingPaymentResponse, Self::Err> {
        Err(cdk_payment::Error::UnsupportedPaymentOption)
    }

    async fn get_payment_quote(&self, _unit: &CurrencyUnit, options: OutgoingPaymentOptions) -> Result<PaymentQuoteResponse, Self::Err> {
        let OutgoingPaymentOptions::Custom(opts) = options else { return Err(cdk_payment::Error::UnsupportedPaymentOption) };
        let (payout, issued) = self.redeemable().await?;
        let sat_quote = opts
            .request
            .strip_prefix(&format!("{REDEEM_METHOD}:"))
            .ok_or_else(|| err(format!("the request must be a sat `{REDEEM_METHOD}` quote's request ({REDEEM_METHOD}:<quote id>)")))?
            .to_owned();
        let id = QuoteId::from_str(&sat_quote).map_err(|e| err(format!("{sat_quote:?} is not a quote id: {e}")))?;
        let quote = self
            .mint()?
            .localstore()
            .get_mint_quote(&id)
            .await
            .map_err(|e| err(format!("reading quote {sat_quote}: {e}")))?
            .ok_or_else(|| err(format!("no sat quote {sat_quote} at this mint: create one with method {REDEEM_METHOD} first")))?;
        if quote.unit != CurrencyUnit::Sat || quote.payment_method != cdk::nuts::PaymentMethod::Custom(REDEEM_METHOD.to_string()) {
            return Err(err(format!("quote {sat_quote} is not a sat {REDEEM_METHOD} quote")));
        }
        let extra: serde_json::Value = opts.extra_json.as_deref().map(serde_json::from_str).transpose().map_err(|e| err(format!("extra: {e}")))?.unwrap_or_default();
        let ehash_amount = extra
            .get("ehash_amount")
            .and_then(serde_json::Value::as_u64)
            .or_else(|| opts.amount.as_ref().map(|a| a.value()))
            .filter(|a| *a > 0)
            .ok_or_else(|| err("name the ehash to redeem: extra {\"ehash_amount\": N}"))?;
        let sat_amount = redeem_sats(ehash_amount, payout, issued);
        if sat_amount == 0 {
            let min = issued.div_ceil(payout.max(1));
            return Err(err(format!("{ehash_amount} ehash of epoch {} is dust: it redeems for 0 sats; redeem at least {min}", self.epoch)));
        }
        let terms = Terms { sat_quote, ehash_amount, sat_amount, epoch: self.epoch, payout, issued };
        Ok(PaymentQuoteResponse {
            request_lookup_id: Some(PaymentIdentifier::QuoteId(opts.quote_id.clone())),
            amount: cdk::Amount::new(ehash_amount, self.unit.clone()),
            fee: cdk::Amount::new(0, self.unit.clone()),
            state: MeltQuoteState::Unpaid,
            extra_json: Some(json!(terms)),
            estimated_blocks: None,
            fee_options: Default::default(),
        })
    }

    async fn make_payment(&self, _unit: &CurrencyUnit, options: OutgoingPaymentOptions) -> Result<MakePaymentResponse, Self::Err> {
        let OutgoingPaymentOptions::Custom(opts) = options else { return Err(cdk_payment::Error::UnsupportedPaymentOption) };
        let melt = opts.quote_id.to_string();
        let unpaid = |status| MakePaymentResponse {
            payment_lookup_id: PaymentIdentifier::QuoteId(opts.quote_id.clone()),
            payment_proof: None,
            status,
            total_spent: cdk::Amount::new(0, self.unit.clone()),
        };
        let terms: Terms = opts
            .extra_json
            .as_deref()
            .and_then(|j| serde_json::from_str(j).ok())
            .ok_or_else(|| err("the melt quote lost its redemption terms"))?;
        // the epoch may have expired since the quote: then nothing is paid and the ehash stays
        let Ok((payout, issued)) = self.redeemable().await else { return Ok(unpaid(MeltQuoteState::Failed)) };
        if redeem_sats(terms.ehash_amount, payout, issued) != terms.sat_amount || terms.epoch != self.epoch {
            return Ok(unpaid(MeltQuoteState::Failed));
        }
        if let Ok(mut f) = self.in_flight.lock() {
            f.insert(melt.clone());
        }
        let mint = self.mint()?;
        let paid = mint
            .pay_mint_quote_for_request_id(WaitPaymentResponse {
                payment_identifier: PaymentIdentifier::CustomId(terms.sat_quote.clone()),
                payment_amount: cdk::Amount::new(terms.sat_amount, CurrencyUnit::Sat),
                payment_id: melt.clone(),
            })
            .await;
        // did the credit land? (cdk ignores a payment id it has seen, and a quote it cannot find)
        let id = QuoteId::from_str(&terms.sat_quote).map_err(|e| err(e.to_string()))?;
        let credited = mint
            .localstore()
            .get_mint_quote(&id)
            .await
            .map_err(|e| err(e.to_string()))?
            .is_some_and(|q| q.payments.iter().any(|p| p.payment_id == melt));
        if let Ok(mut f) = self.in_flight.lock() {
            f.remove(&melt);
        }
        match (credited, paid) {
            (true, _) => Ok(MakePaymentResponse {
                payment_lookup_id: PaymentIdentifier::QuoteId(opts.quote_id.clone()),
                payment_proof: None,
                status: MeltQuoteState::Paid,
                total_spent: cdk::Amount::new(terms.ehash_amount, self.unit.clone()),
            }),
            (false, Ok(())) => Ok(unpaid(MeltQuoteState::Failed)),
            (false, Err(e)) => Err(err(format!("crediting the sat quote: {e}"))),
        }
    }

    async fn wait_payment_event(&self) -> Result<Pin<Box<dyn Stream<Item = Event> + Send>>, Self::Err> {
        Ok(Box::pin(futures::stream::pending()))
    }

    fn is_payment_event_stream_active(&self) -> bool {
        true
    }

    fn cancel_payment_event_stream(&self) {}

    async fn check_incoming_payment_status(&self, _id: &PaymentIdentifier) -> Result<Vec<WaitPaymentResponse>, Self::Err> {
        Ok(vec![])
    }

    async fn check_outgoing_payment(&self, id: &PaymentIdentifier) -> Result<MakePaymentResponse, Self::Err> {
        // cdk first looks for the melt's payment on the sat quote itself (same request string);
        // a redemption still being credited here is pending, anything else never paid
        let pending = self.in_flight.lock().map(|f| f.contains(&id.to_string())).unwrap_or(true);
        Ok(MakePaymentResponse {
            payment_lookup_id: id.clone(),
            payment_proof: None,
            status: if pending { MeltQuoteState::Pending } else { MeltQuoteState::Unpaid },
            total_spent: cdk::Amount::new(0, self.unit.clone()),
        })
    }
}
