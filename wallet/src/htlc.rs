//! NUT-14 hash time-locked ecash for the market's atomic swaps: the lock conditions, the full
//! check of a counterparty's lock before anything is locked in return, the claim and refund
//! witnesses, and reading a revealed preimage from NUT-07.
//!
//! A lock pays `pubkeys = [receiver]` against the preimage of `hash` and, after `locktime`, can
//! be taken back by `refund = [maker]`; it is always `SIG_INPUTS` with one signature on each path.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use bitcoin::hashes::{Hash, sha256};
use cdk::mint_url::MintUrl;
use cdk::nuts::nut10::Kind as SecretKind;
use cdk::nuts::{
    CheckStateRequest, Conditions, CurrencyUnit, HTLCWitness, Id, KeySetInfo, Keys, Proof, Proofs, ProofsMethods, PublicKey, SecretKey, SigFlag,
    SpendingConditions, State, Token, Witness,
};
use cdk::wallet::MintConnector;

/// Why a lock is not acceptable. Each variant names the part that is wrong; [`LockError::is_fault`]
/// tells a counterparty's fault from a mint that could not be asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockError {
    /// The token does not parse.
    #[error("token: {0}")]
    Token(String),
    /// The token is from another mint.
    #[error("mint: the lock is at {got}, the trade's mint is {want}")]
    Mint {
        /// The token's mint.
        got: String,
        /// The trade's.
        want: String,
    },
    /// The token is in another unit.
    #[error("unit: the lock is in {got}, the trade is in {want}")]
    Unit {
        /// The token's unit.
        got: String,
        /// The trade's.
        want: String,
    },
    /// A proof from a keyset the trade does not allow.
    #[error("keyset: proof of keyset {0} is not of the trade's market")]
    Keyset(String),
    /// A proof whose secret is not a lock every mint reads the same way (see [`read_lock_secret`]).
    #[error("secret: {0}")]
    NotHtlc(String),
    /// A wrong payment hash.
    #[error("hash: the lock pays against {got}, the trade's hash is {want}")]
    Hash {
        /// The lock's.
        got: String,
        /// The trade's.
        want: String,
    },
    /// Not locked to the receiver alone.
    #[error("pubkeys: the lock must be claimable by exactly the receiver's key {want}; it names {got}")]
    Receiver {
        /// What the lock names.
        got: String,
        /// The receiver key.
        want: String,
    },
    /// Refundable to someone other than its maker.
    #[error("refund: the lock must be refundable to exactly its maker's key {want}; it names {got}")]
    Refund {
        /// What the lock names.
        got: String,
        /// The maker key.
        want: String,
    },
    /// A locktime other than the trade's.
    #[error("locktime: the lock expires at {got:?}, the trade says {want}")]
    Locktime {
        /// The lock's.
        got: Option<u64>,
        /// The trade's.
        want: u64,
    },
    /// Other conditions (signature counts, SIG_ALL).
    #[error("conditions: {0}")]
    Conditions(String),
    /// A missing or invalid DLEQ proof.
    #[error("dleq: proof of {amount} in keyset {keyset}: {reason}")]
    Dleq {
        /// Keyset.
        keyset: String,
        /// Amount.
        amount: u64,
        /// Why.
        reason: String,
    },
    /// The same proof twice.
    #[error("proofs: the token repeats a proof")]
    Duplicate,
    /// A proof the mint reports as spent or pending.
    #[error("state: a locked proof is {0} at the mint")]
    Spent(String),
    /// Less than agreed once the receiver's redemption fee is taken.
    #[error("amount: the lock is worth {net} after the mint's fee of {fee}; the trade needs {want}")]
    Amount {
        /// Value after fee.
        net: u64,
        /// The fee.
        fee: u64,
        /// Agreed amount.
        want: u64,
    },
    /// The mint could not be asked (not the counterparty's fault; try again).
    #[error("mint unreachable: {0}")]
    Unreachable(String),
}

impl LockError {
    /// Whether the lock itself is bad (as opposed to a mint that could not be reached).
    pub fn is_fault(&self) -> bool {
        !matches!(self, Self::Unreachable(_))
    }
}

/// What a lock must be.
#[derive(Debug, Clone)]
pub struct LockTerms {
    /// The mint the lock must be at.
    pub mint_url: MintUrl,
    /// Its unit.
    pub unit: CurrencyUnit,
    /// Keysets allowed, with the keys their DLEQ proofs are checked against (for ehash: the
    /// pool's announced keyset) and their input fee (ppk).
    pub keysets: HashMap<Id, (Keys, u64)>,
    /// The payment hash (hex) the lock must use; `None` to accept the first proof's (then the
    /// same in every proof).
    pub hash: Option<String>,
    /// The exact locktime.
    pub locktime: u64,
    /// The only key that may claim it.
    pub receiver: PublicKey,
    /// The only key that may refund it.
    pub maker: PublicKey,
    /// The least the receiver must net after the mint's input fee.
    pub amount: u64,
}

/// A lock that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedLock {
    /// Its proofs.
    pub proofs: Proofs,
    /// The payment hash (hex).
    pub hash: String,
    /// Face value.
    pub total: u64,
    /// The input fee the receiver pays to claim it.
    pub fee: u64,
}

/// The spending conditions of a lock.
pub fn conditions(hash: &str, locktime: u64, receiver: PublicKey, maker: PublicKey) -> Result<SpendingConditions, cdk::Error> {
    let c = Conditions::new(Some(locktime), Some(vec![receiver]), Some(vec![maker]), Some(1), Some(SigFlag::SigInputs), Some(1))?;
    Ok(SpendingConditions::new_htlc_hash(hash, Some(c))?)
}

/// `sha256(preimage)` in hex; the preimage must be 32 bytes of hex.
pub fn hash_of(preimage: &str) -> Result<String, String> {
    let bytes = hex::decode(preimage).map_err(|e| format!("preimage is not hex: {e}"))?;
    if bytes.len() != 32 {
        return Err(format!("preimage is {} bytes, not 32", bytes.len()));
    }
    Ok(sha256::Hash::hash(&bytes).to_string())
}

/// A fresh random preimage (32 bytes, hex).
pub fn new_preimage() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// The NUT-02 input fee of inputs whose keysets' `input_fee_ppk` add up to `total_ppk`:
/// `ceil(total_ppk / 1000)` (cdk `fees::calculate_fee`).
pub fn fee_for_ppk(total_ppk: u64) -> u64 {
    total_ppk.div_ceil(1000)
}

/// The NUT-02 input fee of `count` proofs at `ppk`: `ceil(count × ppk / 1000)`.
pub fn input_fee(count: u64, ppk: u64) -> u64 {
    fee_for_ppk(count.saturating_mul(ppk))
}

/// The conditions of a NUT-14 lock secret, read by [`read_lock_secret`]. Hex is in lowercase;
/// a tag the secret leaves out is `None` (or an empty key list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockSecret {
    /// The payment hash (`data`).
    pub data: String,
    /// `locktime`.
    pub locktime: Option<u64>,
    /// `pubkeys`: the keys that may claim it with the preimage.
    pub pubkeys: Vec<String>,
    /// `refund`: the keys that may take it back after the locktime.
    pub refund: Vec<String>,
    /// `n_sigs`.
    pub n_sigs: Option<u64>,
    /// `n_sigs_refund`.
    pub n_sigs_refund: Option<u64>,
    /// `sigflag`.
    pub sigflag: Option<String>,
}

/// The largest integer a tag may carry: 2^53 − 1, the largest a JavaScript reader reads exactly.
const MAX_TAG_INTEGER: u64 = (1 << 53) - 1;

/// The keys of a JSON object in the order written, repeats kept (serde_json keeps the last copy).
struct ObjectKeys(Vec<String>);

impl<'de> serde::Deserialize<'de> for ObjectKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Keys;
        impl<'de> serde::de::Visitor<'de> for Keys {
            type Value = ObjectKeys;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<ObjectKeys, A::Error> {
                let mut keys = vec![];
                while let Some(k) = map.next_key::<String>()? {
                    map.next_value::<serde::de::IgnoredAny>()?;
                    keys.push(k);
                }
                Ok(ObjectKeys(keys))
            }
        }
        d.deserialize_map(Keys)
    }
}

/// Read a counterparty's lock secret strictly (protocol §10, "Reading a lock secret"): exactly
/// `["HTLC", {nonce, data, tags}]` where every mint reads the same conditions. Refused: text
/// that is not JSON to every parser, a key repeated in the body, unknown fields, unknown tags, a
/// tag given twice (cdk and nutshell read the first copy, nutshell joins repeated key lists), a
/// tag value that is not in its one canonical form, and conditions cdk would not parse (then no
/// path spends the lock) — checked last against cdk's own reading.
pub fn read_lock_secret(secret: &str) -> Result<LockSecret, LockError> {
    let bad = |why: String| LockError::NotHtlc(why);
    let json: serde_json::Value = serde_json::from_str(secret).map_err(|e| bad(format!("not JSON ({e})")))?;
    let body = match json.as_array().map(Vec::as_slice) {
        Some([kind, body]) if kind == "HTLC" => body.as_object().ok_or_else(|| bad("the body must be an object".into()))?,
        _ => return Err(bad(r#"not a NUT-14 HTLC: the secret must be ["HTLC", {nonce, data, tags}]"#.into())),
    };
    let (_, ObjectKeys(keys)) = serde_json::from_str::<(serde::de::IgnoredAny, ObjectKeys)>(secret).map_err(|e| bad(format!("not JSON ({e})")))?;
    let mut seen = HashSet::new();
    for k in &keys {
        if !seen.insert(k.as_str()) {
            return Err(bad(format!("an object repeats a key ({k})")));
        }
        if !["nonce", "data", "tags"].contains(&k.as_str()) {
            return Err(bad(format!("unknown field {k}")));
        }
    }
    if body.get("nonce").and_then(serde_json::Value::as_str).is_none_or(str::is_empty) {
        return Err(bad("the nonce must be a non-empty string".into()));
    }
    let data = body.get("data").and_then(serde_json::Value::as_str).filter(|d| d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit()));
    let data = data.ok_or_else(|| bad("data must be a 32-byte hash in hex".into()))?.to_ascii_lowercase();
    let tags = match body.get("tags") {
        None => &[][..],
        Some(serde_json::Value::Array(t)) => t.as_slice(),
        Some(_) => return Err(bad("tags must be an array".into())),
    };
    let mut out = LockSecret { data, locktime: None, pubkeys: vec![], refund: vec![], n_sigs: None, n_sigs_refund: None, sigflag: None };
    let mut names = HashSet::new();
    for tag in tags {
        let tag: Vec<&str> = tag.as_array().map(|t| t.iter().map(serde_json::Value::as_str).collect::<Option<_>>()).unwrap_or_default().unwrap_or_default();
        let [name, values @ ..] = tag.as_slice() else {
            return Err(bad("each tag must be a name and at least one value, all strings".into()));
        };
        if values.is_empty() {
            return Err(bad("each tag must be a name and at least one value, all strings".into()));
        }
        if !["locktime", "pubkeys", "refund", "n_sigs", "n_sigs_refund", "sigflag"].contains(name) {
            return Err(bad(format!("unknown tag {name}")));
        }
        if !names.insert(*name) {
            return Err(bad(format!("the tag {name} appears twice")));
        }
        let one = || match values {
            [v] => Ok(*v),
            _ => Err(bad(format!("{name} must have exactly one value"))),
        };
        let integer = |least: u64| {
            let v = one()?;
            let canonical = v == "0" || (!v.starts_with('0') && !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()));
            match v.parse::<u64>() {
                Ok(n) if canonical && n <= MAX_TAG_INTEGER && n >= least => Ok(n),
                _ => Err(bad(format!("{name} must be a decimal integer from {least} to 2^53 - 1 (digits only, no leading zero), not {v:?}"))),
            }
        };
        let keys = || {
            let mut out: Vec<String> = vec![];
            for v in values {
                let compressed = v.len() == 66 && (v.starts_with("02") || v.starts_with("03"));
                if !compressed || PublicKey::from_hex(v).is_err() {
                    return Err(bad(format!("{name}: {v} is not a compressed public key")));
                }
                let v = v.to_ascii_lowercase();
                if out.contains(&v) {
                    return Err(bad(format!("{name} repeats a key")));
                }
                out.push(v);
            }
            Ok(out)
        };
        match *name {
            "locktime" => out.locktime = Some(integer(0)?),
            "n_sigs" => out.n_sigs = Some(integer(1)?),
            "n_sigs_refund" => out.n_sigs_refund = Some(integer(1)?),
            "pubkeys" => out.pubkeys = keys()?,
            "refund" => out.refund = keys()?,
            _ => match one() {
                Ok(f @ ("SIG_INPUTS" | "SIG_ALL")) => out.sigflag = Some(f.to_owned()),
                _ => return Err(bad("sigflag must be one value, SIG_INPUTS or SIG_ALL".into())),
            },
        }
    }
    if out.n_sigs_refund.is_some_and(|n| n > out.refund.len() as u64) {
        return Err(bad("n_sigs_refund needs that many refund keys".into()));
    }
    if !cdk_reads_the_same(secret, &out) {
        return Err(bad("cdk reads other conditions in it".into()));
    }
    Ok(out)
}

/// Whether cdk (as a cdk mint) reads `secret` as an HTLC with exactly the conditions `read`.
fn cdk_reads_the_same(secret: &str, read: &LockSecret) -> bool {
    let Ok(SpendingConditions::HTLCConditions { data, conditions }) = cdk::secret::Secret::from_str(secret).map_err(|_| ()).and_then(|s| SpendingConditions::try_from(&s).map_err(|_| ()))
    else {
        return false;
    };
    let c = conditions.unwrap_or_default();
    let hexes = |k: Option<Vec<PublicKey>>| k.unwrap_or_default().iter().map(PublicKey::to_hex).collect::<Vec<_>>();
    data.to_string() == read.data
        && c.locktime == read.locktime
        && hexes(c.pubkeys) == read.pubkeys
        && hexes(c.refund_keys) == read.refund
        && c.num_sigs == read.n_sigs
        && c.num_sigs_refund == read.n_sigs_refund
        && c.sig_flag.to_string() == read.sigflag.as_deref().unwrap_or("SIG_INPUTS")
}

/// Check a lock secret's conditions against a trade's, naming the first field that differs:
/// the payment hash (when `hash` is given), `pubkeys` exactly `[receiver]`, `refund` exactly
/// `[maker]`, `locktime` exactly the trade's, one signature on each path, `SIG_INPUTS`.
pub fn check_conditions(s: &LockSecret, hash: Option<&str>, locktime: u64, receiver: &PublicKey, maker: &PublicKey) -> Result<(), LockError> {
    if let Some(want) = hash
        && !want.eq_ignore_ascii_case(&s.data)
    {
        return Err(LockError::Hash { got: s.data.clone(), want: want.to_owned() });
    }
    if s.pubkeys != [receiver.to_hex()] {
        return Err(LockError::Receiver { got: s.pubkeys.join(","), want: receiver.to_hex() });
    }
    if s.refund != [maker.to_hex()] {
        return Err(LockError::Refund { got: s.refund.join(","), want: maker.to_hex() });
    }
    if s.locktime != Some(locktime) {
        return Err(LockError::Locktime { got: s.locktime, want: locktime });
    }
    if s.n_sigs.unwrap_or(1) != 1 || s.n_sigs_refund.unwrap_or(1) != 1 {
        return Err(LockError::Conditions("each path must need exactly one signature".into()));
    }
    if s.sigflag.as_deref().unwrap_or("SIG_INPUTS") != "SIG_INPUTS" {
        return Err(LockError::Conditions("the lock must be SIG_INPUTS".into()));
    }
    Ok(())
}

/// Check `proofs` (already taken from the token) against `terms`, without asking the mint.
pub fn check_proofs(proofs: &Proofs, terms: &LockTerms) -> Result<VerifiedLock, LockError> {
    if proofs.is_empty() {
        return Err(LockError::Token("the token has no proofs".into()));
    }
    let mut seen = HashSet::new();
    let mut hash: Option<String> = terms.hash.clone();
    let mut total = 0u64;
    let mut fee_ppk = 0u64;
    for p in proofs {
        if !seen.insert(p.secret.clone()) {
            return Err(LockError::Duplicate);
        }
        let (keys, ppk) = terms.keysets.get(&p.keyset_id).ok_or_else(|| LockError::Keyset(p.keyset_id.to_string()))?;
        let secret = read_lock_secret(&p.secret.to_string())?;
        check_conditions(&secret, hash.as_deref(), terms.locktime, &terms.receiver, &terms.maker)?;
        hash.get_or_insert(secret.data);
        let dleq_err = |reason: String| LockError::Dleq { keyset: p.keyset_id.to_string(), amount: p.amount.to_u64(), reason };
        let key = keys.amount_key(p.amount).ok_or_else(|| dleq_err("the keyset has no key for this amount".into()))?;
        if p.dleq.is_none() {
            return Err(dleq_err("no DLEQ proof".into()));
        }
        p.verify_dleq(key).map_err(|e| dleq_err(e.to_string()))?;
        total = total.checked_add(p.amount.to_u64()).ok_or_else(|| LockError::Token("amounts overflow".into()))?;
        fee_ppk = fee_ppk.saturating_add(*ppk);
    }
    let fee = fee_for_ppk(fee_ppk);
    let net = total.saturating_sub(fee);
    if net < terms.amount {
        return Err(LockError::Amount { net, fee, want: terms.amount });
    }
    let hash = hash.ok_or_else(|| LockError::Token("no hash".into()))?;
    Ok(VerifiedLock { proofs: proofs.clone(), hash, total, fee })
}

/// Parse a lock token and check it completely: every offline check of [`check_proofs`], then
/// NUT-07 at the mint: every proof must be unspent.
pub async fn verify_lock(token: &str, terms: &LockTerms, mint: &(dyn MintConnector + Send + Sync)) -> Result<VerifiedLock, LockError> {
    let lock = parse_lock(token, terms, mint).await?;
    let states = check_states(mint, &lock.proofs).await.map_err(LockError::Unreachable)?;
    if let Some(s) = states.iter().find(|s| s.state != State::Unspent) {
        return Err(LockError::Spent(s.state.to_string()));
    }
    Ok(lock)
}

/// For an observer that may see a lock late (the exchange): every check of [`verify_lock`] but
/// the state, which is returned instead. A lock its receiver already claimed, or its maker
/// refunded after the locktime, was still a good lock; one being spent right now (`PENDING`)
/// counts as unspent until the mint says how it was spent.
pub async fn observe_lock(token: &str, terms: &LockTerms, mint: &(dyn MintConnector + Send + Sync)) -> Result<(VerifiedLock, Spend), LockError> {
    let lock = parse_lock(token, terms, mint).await?;
    let states = check_states(mint, &lock.proofs).await.map_err(LockError::Unreachable)?;
    let spend = spend_of(&states, &lock.hash);
    Ok((lock, spend))
}

/// Parse a lock token and run the offline checks (mint, unit, then [`check_proofs`]).
async fn parse_lock(token: &str, terms: &LockTerms, mint: &(dyn MintConnector + Send + Sync)) -> Result<VerifiedLock, LockError> {
    let t = Token::from_str(token.trim()).map_err(|e| LockError::Token(e.to_string()))?;
    let url = t.mint_url().map_err(|e| LockError::Token(e.to_string()))?;
    if url != terms.mint_url {
        return Err(LockError::Mint { got: url.to_string(), want: terms.mint_url.to_string() });
    }
    let unit = t.unit().ok_or_else(|| LockError::Token("the token names no unit".into()))?;
    if unit != terms.unit {
        return Err(LockError::Unit { got: unit.to_string(), want: terms.unit.to_string() });
    }
    // the allowed keysets resolve the token's keyset ids without asking the mint; a token of
    // other keysets is resolved with the mint's list, and then refused by keyset
    let known: Vec<KeySetInfo> = terms
        .keysets
        .iter()
        .map(|(id, (_, ppk))| KeySetInfo { id: *id, unit: terms.unit.clone(), active: true, input_fee_ppk: *ppk, final_expiry: None })
        .collect();
    let proofs = match t.proofs(&known) {
        Ok(p) => p,
        Err(_) => {
            let infos = mint.get_mint_keysets().await.map_err(|e| LockError::Unreachable(e.to_string()))?.keysets;
            t.proofs(&infos).map_err(|e| LockError::Token(e.to_string()))?
        }
    };
    check_proofs(&proofs, terms)
}

/// NUT-07 states of `proofs`, in order.
pub async fn check_states(mint: &(dyn MintConnector + Send + Sync), proofs: &Proofs) -> Result<Vec<cdk::nuts::ProofState>, String> {
    let ys = proofs.ys().map_err(|e| e.to_string())?;
    let resp = mint.post_check_state(CheckStateRequest { ys: ys.clone() }).await.map_err(|e| e.to_string())?;
    if resp.states.len() != ys.len() || resp.states.iter().zip(&ys).any(|(s, y)| s.y != *y) {
        return Err("the mint answered NUT-07 for other proofs".into());
    }
    Ok(resp.states)
}

/// How a lock was spent, as NUT-07 reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spend {
    /// Not spent (or pending).
    Unspent,
    /// Claimed by its receiver, revealing this preimage (checked against the hash).
    Claimed(String),
    /// Taken back over the refund path.
    Refunded,
}

/// Read how a lock was spent: the witness of a spent proof carries the preimage if its receiver
/// claimed it, or an empty preimage if its maker refunded it.
pub fn spend_of(states: &[cdk::nuts::ProofState], hash: &str) -> Spend {
    let mut refunded = false;
    for s in states {
        if s.state != State::Spent {
            continue;
        }
        match s.witness.as_ref().and_then(Witness::preimage) {
            Some(p) if hash_of(&p).is_ok_and(|h| h.eq_ignore_ascii_case(hash)) => return Spend::Claimed(p.to_ascii_lowercase()),
            _ => refunded = true,
        }
    }
    if refunded { Spend::Refunded } else { Spend::Unspent }
}

/// The proofs with the receiver's witness: the preimage and the receiver's signature.
pub fn claim_witness(proofs: &Proofs, preimage: &str, receiver: &SecretKey) -> Result<Proofs, cdk::Error> {
    let mut out = proofs.clone();
    for p in &mut out {
        p.dleq = None;
        p.witness = None;
        p.add_preimage(preimage.to_owned());
        p.sign_p2pk(receiver.clone())?;
    }
    Ok(out)
}

/// The proofs with the maker's refund witness: the refund key's signature and an empty preimage,
/// or with `dummy_preimage` 32 zero bytes (for mints that refuse an empty one; any preimage that
/// does not match the hash selects the refund path in NUT-14).
pub fn refund_witness(proofs: &Proofs, maker: &SecretKey, dummy_preimage: bool) -> Result<Proofs, cdk::Error> {
    let preimage = if dummy_preimage { "00".repeat(32) } else { String::new() };
    let mut out: Proofs = proofs.clone();
    for p in &mut out {
        p.dleq = None;
        p.witness = Some(Witness::HTLCWitness(HTLCWitness { preimage: preimage.clone(), signatures: None }));
        p.sign_p2pk(maker.clone())?;
    }
    Ok(out)
}

/// Whether a proof is an HTLC (so a wallet never treats it as spendable balance).
pub fn is_htlc(p: &Proof) -> bool {
    cdk::nuts::nut10::Secret::try_from(&p.secret).is_ok_and(|s| s.kind() == SecretKind::HTLC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fees_round_up() {
        assert_eq!(input_fee(0, 100), 0);
        assert_eq!(input_fee(1, 100), 1);
        assert_eq!(input_fee(10, 100), 1);
        assert_eq!(input_fee(11, 100), 2);
        assert_eq!(input_fee(3, 0), 0);
        assert_eq!(input_fee(1, 1000), 1);
    }

    #[test]
    fn preimages_hash_like_nut14() {
        let p = new_preimage();
        assert_eq!(p.len(), 64);
        let h = hash_of(&p).unwrap();
        let c = conditions(&h, 4_000_000_000, SecretKey::generate().public_key(), SecretKey::generate().public_key()).unwrap();
        let SpendingConditions::HTLCConditions { data, .. } = c else { panic!() };
        assert_eq!(data.to_string(), h);
        assert!(hash_of("00").is_err());
        assert!(hash_of("zz").is_err());
    }
}
