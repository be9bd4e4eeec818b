//! # ehash-lightning
//!
//! The Lightning backend of a mint in unit `sat` (the sat mint's deposits and withdrawals, the
//! pool mint's withdrawals of redeemed sats), chosen in configuration:
//!
//! - `"fake"`: `cdk-fake-wallet`, **every invoice is paid at once** and every payment
//!   succeeds; for local markets and tests, never for real money;
//! - `{ fake_slow = { payment_secs } }`: the same, but each payment takes `payment_secs`
//!   (to see what a slow Lightning payment does);
//! - `{ lnd = { address, cert_file, macaroon_file } }`: an LND node over gRPC (`cdk-lnd`), the
//!   one production backend supported.
//!
//! ```toml
//! lightning = "fake"
//! # or
//! [lightning.lnd]
//! address = "https://127.0.0.1:10009"
//! cert_file = "/home/lnd/.lnd/tls.cert"
//! macaroon_file = "/home/lnd/.lnd/data/chain/bitcoin/mainnet/admin.macaroon"
//! ```

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use cdk::cdk_payment::{self, MintPayment};
use cdk::nuts::CurrencyUnit;
use cdk::types::FeeReserve;
use serde::{Deserialize, Serialize};

/// A mint's payment processor over Lightning.
pub type Processor = Arc<dyn MintPayment<Err = cdk_payment::Error> + Send + Sync>;

/// A Lightning backend (see the crate docs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Lightning {
    /// Development only: every invoice is paid at once, every payment succeeds.
    #[default]
    Fake,
    /// Development only: like [`Lightning::Fake`], but each outgoing payment takes this long.
    FakeSlow {
        /// Seconds each payment takes.
        payment_secs: u64,
    },
    /// An LND node over gRPC.
    Lnd {
        /// gRPC address, e.g. `https://127.0.0.1:10009`.
        address: String,
        /// LND's TLS certificate (`tls.cert`).
        cert_file: PathBuf,
        /// A macaroon allowing invoices and payments (e.g. `admin.macaroon`).
        macaroon_file: PathBuf,
    },
}

/// A backend could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("Lightning backend ({backend}): {reason}")]
pub struct Error {
    /// Which backend.
    pub backend: &'static str,
    /// Why.
    pub reason: String,
}

impl Lightning {
    /// The backend's name: `fake` or `lnd`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Fake | Self::FakeSlow { .. } => "fake",
            Self::Lnd { .. } => "lnd",
        }
    }

    /// Whether invoices are really paid (false for `fake`).
    pub fn is_real(&self) -> bool {
        !matches!(self, Self::Fake | Self::FakeSlow { .. })
    }

    /// The payment processor for a mint in unit `sat`. `kv` is the mint's key-value store
    /// (LND keeps its invoice stream position there). LND's files are read now; the node is
    /// reached when the first invoice or payment needs it.
    pub async fn processor(&self, kv: cdk_common::database::DynKVStore) -> Result<Processor, Error> {
        // 1 sat or 1% of the amount held back for routing fees; what is not spent comes back
        // as NUT-08 change
        let fee_reserve = FeeReserve { min_fee_reserve: 1.into(), percent_fee_reserve: 0.01 };
        Ok(match self {
            Self::Fake => Arc::new(cdk_fake_wallet::FakeWallet::new(fee_reserve, HashMap::default(), HashSet::default(), 0, CurrencyUnit::Sat)),
            Self::FakeSlow { payment_secs } => {
                Arc::new(cdk_fake_wallet::FakeWallet::new(fee_reserve, HashMap::default(), HashSet::default(), *payment_secs, CurrencyUnit::Sat))
            }
            Self::Lnd { address, cert_file, macaroon_file } => Arc::new(
                cdk_lnd::Lnd::new(address.clone(), cert_file.clone(), macaroon_file.clone(), fee_reserve, kv)
                    .await
                    .map_err(|e| Error { backend: "lnd", reason: e.to_string() })?,
            ),
        })
    }
}
