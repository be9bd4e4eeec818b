//! Swaps that survive a crash at any point.
//!
//! A [`PendingSwap`] is the complete NUT-03 request plus every output's secret and blinding
//! factor. The caller writes it to its own database **before** [`execute`] sends it. Executing
//! the same pending swap again is always safe: if the mint already did it (the inputs are spent
//! or the outputs already signed), the signatures are fetched with NUT-09 restore and the same
//! proofs come out. Outputs that are not HTLC locks are derived from the wallet seed (NUT-13), so
//! even a lost database can be restored from the seed words.
//!
//! Three swaps are built here: a **lock** (wallet proofs in, HTLC outputs for the counterparty
//! plus change out; the inputs are reserved in the cdk wallet database under the swap's id so no
//! other operation spends them), a **claim** and a **refund** (HTLC proofs with their witness in,
//! fresh wallet proofs out). [`finish`] records the result in the cdk wallet; [`release`] gives
//! the reserved inputs back when the mint refused the swap for good.

use cdk::Amount;
use cdk::amount::SplitTarget;
use cdk::dhke::construct_proofs;
use cdk::nuts::{
    BlindedMessage, CheckStateRequest, Id, Keys, PreMintSecrets, Proof, Proofs, ProofsMethods, PublicKey, RestoreRequest, SecretKey, SpendingConditions,
    State, SwapRequest,
};
use cdk::secret::Secret;
use cdk::wallet::{MintConnector, Wallet};
use cdk_common::wallet::ProofInfo;
use serde::{Deserialize, Serialize};

use crate::htlc::{input_fee, is_htlc};

/// One output of a pending swap, with what is needed to unblind its signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    /// Amount.
    pub amount: u64,
    /// The secret (for an HTLC output, the NUT-10 JSON).
    pub secret: String,
    /// Blinding factor `r`, hex.
    pub r: String,
}

/// A swap written down before it is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingSwap {
    /// Unique id (also the cdk reservation id of the inputs).
    pub id: String,
    /// The mint.
    pub mint_url: String,
    /// The unit.
    pub unit: String,
    /// The request exactly as sent.
    pub request: SwapRequest,
    /// Every output, in request order.
    pub outputs: Vec<Output>,
    /// Ys of wallet proofs reserved as inputs (a lock), to mark spent or release.
    pub reserved: Vec<PublicKey>,
}

/// Why a swap did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SwapError {
    /// The mint refused the request for good (bad witness, locktime not reached, unknown keyset…).
    #[error("the mint refused the swap: {0}")]
    Refused(String),
    /// The inputs were spent by another request (not this one: its outputs are not signed).
    #[error("the inputs were already spent by someone else")]
    Conflict,
    /// The outcome is unknown (network, timeout, server error); execute it again later.
    #[error("mint unreachable or answer unknown: {0}")]
    Unreachable(String),
    /// The wallet could not build or record the swap.
    #[error("wallet: {0}")]
    Wallet(String),
}

fn wallet_err(e: impl std::fmt::Display) -> SwapError {
    SwapError::Wallet(e.to_string())
}

impl PendingSwap {
    fn new(wallet: &Wallet, inputs: Proofs, outputs: PreMintSecrets, reserved: Vec<PublicKey>) -> Self {
        let mut secrets = outputs.secrets;
        secrets.sort_by_key(|s| s.amount);
        let request = SwapRequest::new(inputs, secrets.iter().map(|s| s.blinded_message.clone()).collect());
        let outputs = secrets.iter().map(|s| Output { amount: s.amount.to_u64(), secret: s.secret.to_string(), r: s.r.to_secret_hex() }).collect();
        Self { id: uuid::Uuid::new_v4().to_string(), mint_url: wallet.mint_url.to_string(), unit: wallet.unit.to_string(), request, outputs, reserved }
    }

    fn premints(&self) -> Result<(Vec<SecretKey>, Vec<Secret>), SwapError> {
        let mut rs = Vec::new();
        let mut secrets = Vec::new();
        for o in &self.outputs {
            rs.push(SecretKey::from_hex(&o.r).map_err(wallet_err)?);
            secrets.push(o.secret.parse::<Secret>().map_err(wallet_err)?);
        }
        Ok((rs, secrets))
    }
}

/// Split `amount` as the wallet does.
fn split(wallet_amounts: &cdk_common::amount::FeeAndAmounts, amount: u64) -> Result<Vec<Amount>, SwapError> {
    Amount::from(amount).split_targeted(&SplitTarget::default(), wallet_amounts).map_err(wallet_err)
}

/// Seed-derived outputs for `amount` in the wallet's active keyset, reserving their NUT-13
/// counters.
async fn seed_outputs(wallet: &Wallet, seed: &[u8; 64], keyset: Id, amount: u64) -> Result<PreMintSecrets, SwapError> {
    let fees = wallet.get_keyset_fees_and_amounts_by_id(keyset).await.map_err(wallet_err)?;
    let n = split(&fees, amount)?.len() as u32;
    if n == 0 {
        return Ok(PreMintSecrets::new(keyset));
    }
    let end = wallet.localstore.increment_keyset_counter(&keyset, n).await.map_err(wallet_err)?;
    let mut out = PreMintSecrets::from_seed(keyset, end - n, seed, Amount::from(amount), &SplitTarget::default(), &fees).map_err(wallet_err)?;
    // keep the derivation index so the proofs are recorded as seed-derived
    for (i, s) in out.secrets.iter_mut().enumerate() {
        s.derivation_index = Some(end - n + i as u32);
    }
    Ok(out)
}

/// The face value of an HTLC lock that nets its receiver `net` after the receiver's input fee
/// at `ppk` (the fee depends on how many proofs the lock is split into).
pub fn lock_face_value(fees: &cdk_common::amount::FeeAndAmounts, net: u64, ppk: u64) -> Result<u64, SwapError> {
    let mut face = net;
    for _ in 0..16 {
        let n = split(fees, face)?.len() as u64;
        let next = net.checked_add(input_fee(n, ppk)).ok_or_else(|| wallet_err("amount overflow"))?;
        if next == face {
            return Ok(face);
        }
        face = next;
    }
    Err(wallet_err("the lock's fee does not converge"))
}

/// Build a lock: reserve wallet proofs worth `net` for the receiver plus the receiver's
/// redemption fee plus this swap's own input fee, with HTLC outputs under `conditions` and
/// seed-derived change. Nothing is sent.
pub async fn prepare_lock(wallet: &Wallet, seed: &[u8; 64], net: u64, conditions: &SpendingConditions) -> Result<PendingSwap, SwapError> {
    let keyset = wallet.active_keyset().await.map_err(wallet_err)?;
    let fees = wallet.get_keyset_fees_and_amounts().await.map_err(wallet_err)?;
    let active = fees.get(&keyset.id).cloned().ok_or_else(|| wallet_err("no fees for the active keyset"))?;
    let face = lock_face_value(&active, net, keyset.input_fee_ppk)?;
    let unspent: Proofs = wallet.get_unspent_proofs().await.map_err(wallet_err)?.into_iter().filter(|p| !is_htlc(p)).collect();
    let have = unspent.total_amount().map_err(wallet_err)?.to_u64();
    let inputs = Wallet::select_proofs(Amount::from(face), unspent, &vec![keyset.id], &fees, true).map_err(|e| match e {
        cdk::Error::InsufficientFunds => SwapError::Refused(format!("insufficient balance in {}: have {have}, the lock needs {face} plus fees", wallet.unit)),
        e => wallet_err(e),
    })?;
    let input_total = inputs.total_amount().map_err(wallet_err)?.to_u64();
    let fee = wallet.get_proofs_fee(&inputs).await.map_err(wallet_err)?.total.to_u64();
    let change = input_total
        .checked_sub(fee)
        .and_then(|v| v.checked_sub(face))
        .ok_or_else(|| SwapError::Refused(format!("insufficient balance in {}: the lock needs {face} plus {fee} fee", wallet.unit)))?;
    let mut outputs = PreMintSecrets::with_conditions(keyset.id, Amount::from(face), &SplitTarget::default(), conditions, &active).map_err(wallet_err)?;
    outputs.combine(seed_outputs(wallet, seed, keyset.id, change).await?);
    let ys = inputs.ys().map_err(wallet_err)?;
    let swap = PendingSwap::new(wallet, inputs, outputs, ys.clone());
    let op = uuid::Uuid::parse_str(&swap.id).map_err(wallet_err)?;
    wallet.localstore.reserve_proofs(ys, &op).await.map_err(|e| SwapError::Wallet(format!("reserving the lock's inputs: {e}")))?;
    Ok(swap)
}

/// Build a claim or refund: `inputs` (HTLC proofs carrying their witness) into seed-derived
/// wallet proofs worth their value minus the input fee. Nothing is sent.
pub async fn prepare_redeem(wallet: &Wallet, seed: &[u8; 64], inputs: Proofs) -> Result<PendingSwap, SwapError> {
    let keyset = wallet.active_keyset().await.map_err(wallet_err)?;
    let total = inputs.total_amount().map_err(wallet_err)?.to_u64();
    let fee = wallet.get_proofs_fee(&inputs).await.map_err(wallet_err)?.total.to_u64();
    let value = total.checked_sub(fee).ok_or_else(|| SwapError::Refused(format!("the proofs ({total}) do not cover the mint's fee ({fee})")))?;
    let outputs = seed_outputs(wallet, seed, keyset.id, value).await?;
    Ok(PendingSwap::new(wallet, inputs, outputs, vec![]))
}

/// Send (or send again) a pending swap through `wallet`'s mint and return its proofs, in output
/// order. Safe to repeat.
pub async fn execute(wallet: &Wallet, swap: &PendingSwap) -> Result<Proofs, SwapError> {
    let keyset = swap.request.outputs().first().map(|o| o.keyset_id).ok_or_else(|| wallet_err("a swap without outputs"))?;
    let keys = wallet.keyset(keyset).await.map_err(|e| SwapError::Unreachable(format!("keys of keyset {keyset}: {e}")))?.keys;
    execute_at(wallet.mint_connector().as_ref(), &keys, swap).await
}

/// [`execute`] against an explicit mint connection and keyset keys.
pub async fn execute_at(mint: &(dyn MintConnector + Send + Sync), keys: &Keys, swap: &PendingSwap) -> Result<Proofs, SwapError> {
    let signatures = match mint.post_swap(swap.request.clone()).await {
        Ok(r) => r.signatures,
        Err(cdk::Error::TokenAlreadySpent | cdk::Error::BlindedMessageAlreadySigned) => restore(mint, swap).await?,
        Err(e) => {
            // Did the mint do it anyway? Its inputs say: all unspent means it did not.
            let ys = swap.request.inputs().ys().map_err(wallet_err)?;
            let states = mint
                .post_check_state(CheckStateRequest { ys })
                .await
                .map_err(|c| SwapError::Unreachable(format!("{e}; and the mint could not be asked about the inputs: {c}")))?;
            if states.states.iter().all(|s| s.state == State::Unspent) {
                return Err(if answered(&e) { SwapError::Refused(e.to_string()) } else { SwapError::Unreachable(e.to_string()) });
            }
            if states.states.iter().any(|s| s.state == State::Pending) {
                return Err(SwapError::Unreachable(format!("{e}; an input is pending at the mint")));
            }
            restore(mint, swap).await?
        }
    };
    if signatures.len() != swap.outputs.len() {
        return Err(SwapError::Unreachable(format!("the mint returned {} signatures for {} outputs", signatures.len(), swap.outputs.len())));
    }
    let (rs, secrets) = swap.premints()?;
    let proofs = construct_proofs(signatures, rs, secrets, keys).map_err(wallet_err)?;
    for p in &proofs {
        if p.dleq.is_some() {
            let key = keys.amount_key(p.amount).ok_or_else(|| wallet_err("no key for a returned amount"))?;
            p.verify_dleq(key).map_err(|e| SwapError::Wallet(format!("the mint's signature does not verify: {e}")))?;
        }
    }
    Ok(proofs)
}

/// Whether an error is the mint's definite refusal (the request reached it and was refused), as
/// opposed to a transport failure, a server error, a rate limit or a timeout (408, 425, 429:
/// "later", not "no"), whose request may be sent again.
fn answered(e: &cdk::Error) -> bool {
    match e {
        cdk::Error::HttpError(Some(status), _) => (400..500).contains(status) && !matches!(status, 408 | 425 | 429),
        cdk::Error::HttpError(None, _)
        | cdk::Error::Timeout
        | cdk::Error::SendError(_)
        | cdk::Error::RecvError(_)
        | cdk::Error::TokenPending
        | cdk::Error::Internal
        | cdk::Error::CouldNotGetMintInfo => false,
        _ => true,
    }
}

/// The signatures of a swap the mint already did, from NUT-09 restore.
async fn restore(mint: &(dyn MintConnector + Send + Sync), swap: &PendingSwap) -> Result<Vec<cdk::nuts::BlindSignature>, SwapError> {
    let outputs: Vec<BlindedMessage> = swap.request.outputs().clone();
    let resp = mint
        .post_restore(RestoreRequest { outputs: outputs.clone() })
        .await
        .map_err(|e| SwapError::Unreachable(format!("restoring the outputs: {e}")))?;
    let mut out = Vec::with_capacity(outputs.len());
    for o in &outputs {
        let Some(i) = resp.outputs.iter().position(|r| r.blinded_secret == o.blinded_secret) else {
            return Err(SwapError::Conflict);
        };
        let sig = resp.signatures.get(i).cloned().ok_or_else(|| SwapError::Unreachable("restore answered without a signature".into()))?;
        out.push(sig);
    }
    Ok(out)
}

/// Record a completed swap in the cdk wallet: its non-HTLC proofs become spendable and its
/// reserved inputs spent. Returns the HTLC proofs (a lock's outputs). Safe to repeat.
pub async fn finish(wallet: &Wallet, swap: &PendingSwap, proofs: Proofs) -> Result<Proofs, SwapError> {
    let (locked, mine): (Vec<Proof>, Vec<Proof>) = proofs.into_iter().partition(is_htlc);
    // a repeated finish must not resurrect proofs spent since the first one
    let ys = mine.ys().map_err(wallet_err)?;
    let known: std::collections::HashSet<PublicKey> = if ys.is_empty() {
        Default::default()
    } else {
        wallet.localstore.get_proofs_by_ys(ys).await.map_err(wallet_err)?.into_iter().map(|i| i.y).collect()
    };
    let infos = mine
        .into_iter()
        .filter(|p| p.y().is_ok_and(|y| !known.contains(&y)))
        .map(|p| ProofInfo::new(p, wallet.mint_url.clone(), State::Unspent, wallet.unit.clone()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(wallet_err)?;
    wallet.localstore.update_proofs(infos, vec![]).await.map_err(wallet_err)?;
    if !swap.reserved.is_empty() {
        wallet.localstore.update_proofs_state(swap.reserved.clone(), State::Spent).await.map_err(wallet_err)?;
    }
    Ok(locked)
}

/// Give a refused lock's reserved inputs back to the wallet.
pub async fn release(wallet: &Wallet, swap: &PendingSwap) -> Result<(), SwapError> {
    let op = uuid::Uuid::parse_str(&swap.id).map_err(wallet_err)?;
    wallet.localstore.release_proofs(&op).await.map_err(wallet_err)
}
