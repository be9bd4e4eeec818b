//! Paying the mint what the ledger credited: aggregated, idempotent payments to ehash quotes.
//!
//! The ledger keeps each quote's running credit (every recorded share adds to it). The mint
//! learns of it in one payment per sync: inside one cdk transaction, which locks the quote, the
//! quote's amount paid is read, and the difference to the ledger's credit is paid with the
//! payment id `ehash:<quote>:<credit>`. The mint's amount paid is the record of what was paid,
//! so a sync interrupted at any point is finished by the next one, and two syncs cannot both pay
//! the same credit. A sync runs when a wallet asks about or mints a quote (so it sees every share
//! acknowledged before it asked), and every `credit_sync_secs` for quotes nobody asked about.
//! Its cost grows with the quote's payments, not with its shares.

use cdk::cdk_payment::{PaymentIdentifier, WaitPaymentResponse};
use cdk::mint::Mint;

use crate::error::{Error, Result};
use crate::ledger::Ledger;

/// Quotes paid per round of the periodic sync.
const SYNC_BATCH: u32 = 500;

/// Why a quote could not be paid.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The ledger credits a quote the mint does not have (e.g. a mint database restored from an
    /// older backup than the ledger): nothing is paid, and the credit waits.
    #[error("quote {0} is credited in the ledger but unknown to the mint; its credit is kept until the mint has it")]
    UnknownQuote(String),
    /// The mint has paid more than the ledger credited (the ledger is older than the mint).
    #[error("quote {quote}: the mint has paid {paid}, more than the {credited} the ledger credits; check which database was restored")]
    Overpaid {
        /// The quote.
        quote: String,
        /// Paid by the mint.
        paid: u64,
        /// Credited by the ledger.
        credited: u64,
    },
    /// The mint or the ledger failed.
    #[error(transparent)]
    Storage(#[from] Error),
}

impl From<cdk::cdk_database::Error> for SyncError {
    fn from(e: cdk::cdk_database::Error) -> Self {
        Self::Storage(e.into())
    }
}

impl From<cdk::Error> for SyncError {
    fn from(e: cdk::Error) -> Self {
        Self::Storage(e.into())
    }
}

/// Pay `quote_id` at `mint` up to its credit in `ledger`. Returns what was paid now.
pub async fn sync_quote(mint: &Mint, ledger: &Ledger, quote_id: &str) -> Result<u64, SyncError> {
    let Some(credit) = ledger.quote_credit(quote_id).await? else { return Ok(0) };
    if credit.credited <= credit.synced {
        // the mint was paid all of it (asking again costs it no write)
        return Ok(0);
    }
    let lookup = PaymentIdentifier::CustomId(quote_id.to_owned());
    let mut tx = mint.localstore().begin_transaction().await?;
    let Some(mut quote) = tx.get_mint_quote_by_request_lookup_id(&lookup).await? else {
        tx.rollback().await?;
        return Err(SyncError::UnknownQuote(quote_id.to_owned()));
    };
    let paid = quote.amount_paid().value();
    if paid >= credit.credited {
        tx.rollback().await?;
        ledger.mark_synced(quote_id, credit.credited).await?;
        if paid > credit.credited {
            return Err(SyncError::Overpaid { quote: quote_id.to_owned(), paid, credited: credit.credited });
        }
        return Ok(0);
    }
    let amount = credit.credited - paid;
    let payment = WaitPaymentResponse {
        payment_identifier: lookup,
        payment_amount: cdk::Amount::new(amount, quote.unit.clone()),
        payment_id: format!("ehash:{quote_id}:{}", credit.credited),
    };
    let notify = mint.pay_mint_quote(&mut tx, &mut quote, payment).await?;
    tx.commit().await?;
    if notify {
        mint.pubsub_manager().mint_quote_payment(&quote, quote.amount_paid());
    }
    ledger.mark_synced(quote_id, credit.credited).await?;
    Ok(amount)
}

/// Pay every quote whose credit grew since it was last paid. A quote that cannot be paid is
/// reported and skipped; the others are paid. Returns how many quotes were paid and the
/// failures.
pub async fn sync_all(mint: &Mint, ledger: &Ledger) -> Result<(usize, Vec<SyncError>)> {
    let mut paid = 0;
    let mut failed = vec![];
    let mut after = String::new();
    loop {
        let batch = ledger.unsynced_quotes(&after, SYNC_BATCH).await?;
        for (quote, _) in &batch {
            match sync_quote(mint, ledger, quote).await {
                Ok(_) => paid += 1,
                Err(e) => failed.push(e),
            }
        }
        match batch.last() {
            Some((last, _)) if batch.len() == SYNC_BATCH as usize => after = last.clone(),
            _ => return Ok((paid, failed)),
        }
    }
}
