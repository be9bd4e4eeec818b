//! A `getblocktemplate` answer made into Stratum work: our coinbase (BIP34 height, the pool's
//! tag, the extranonce space, the payout output paying `coinbasevalue`, the BIP141 witness
//! commitment), the merkle branch from the template's txids, version, bits and time.

use std::sync::Arc;

use bitcoin::consensus::encode::deserialize;
use bitcoin::hashes::Hash;
use bitcoin::script::{Builder, PushBytesBuf};
use bitcoin::{BlockHash, ScriptBuf, Transaction, Txid};
use ehash_protocol::stratum::share::{JobTemplate, merkle_branch};
use ehash_stratum::{Template, WITNESS_COMMITMENT_PREFIX};
use serde::Deserialize;

/// The longest coinbase scriptSig consensus allows.
const MAX_SCRIPT_SIG: usize = 100;

/// The parts of a `getblocktemplate` answer the pool uses (BIP22/23/141/9).
#[derive(Debug, Clone, Deserialize)]
pub struct Gbt {
    /// Block version (with the node's BIP9 signalling bits).
    pub version: u32,
    /// The tip the template builds on (display hex).
    pub previousblockhash: String,
    /// The transactions after the coinbase.
    pub transactions: Vec<GbtTransaction>,
    /// What the coinbase may pay: subsidy plus fees (sats).
    pub coinbasevalue: u64,
    /// Compact target, hex.
    pub bits: String,
    /// The node's time for the block.
    pub curtime: u32,
    /// The least time the block may carry.
    pub mintime: u32,
    /// The block's height.
    pub height: u32,
    /// The BIP141 commitment output script, hex (present once segwit is active).
    #[serde(default)]
    pub default_witness_commitment: Option<String>,
    /// The long-poll id: asking with it waits until the template would change.
    #[serde(default)]
    pub longpollid: Option<String>,
}

/// One template transaction.
#[derive(Debug, Clone, Deserialize)]
pub struct GbtTransaction {
    /// The transaction, hex (with witness).
    pub data: String,
    /// Its txid, display hex.
    pub txid: String,
    /// Its fee (sats).
    #[serde(default)]
    pub fee: u64,
}

/// How the pool's coinbase is built.
#[derive(Debug, Clone)]
pub struct CoinbaseSpec {
    /// Where `coinbasevalue` goes.
    pub payout: ScriptBuf,
    /// Bytes pushed after the extranonce in the scriptSig (e.g. `/ehash/`).
    pub tag: Vec<u8>,
    /// The extranonce space: difficulty tag + extranonce1 + extranonce2.
    pub extranonce_len: usize,
}

impl CoinbaseSpec {
    /// Check that a coinbase for any height fits the consensus limit of 100 scriptSig bytes.
    pub fn check(&self) -> Result<(), String> {
        // BIP34 height push: at most 5 bytes for any u32 height
        let len = 5 + 1 + self.extranonce_len + 2 + self.tag.len();
        if self.extranonce_len == 0 || self.extranonce_len > 75 {
            return Err(format!("an extranonce space of {} bytes (1..=75)", self.extranonce_len));
        }
        if len > MAX_SCRIPT_SIG {
            return Err(format!("the coinbase tag of {} bytes makes the scriptSig longer than {MAX_SCRIPT_SIG} bytes; shorten mint_bridge.bitcoind.coinbase_tag", self.tag.len()));
        }
        Ok(())
    }
}

/// A template ready for miners, with what it was made of.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The work.
    pub template: Template,
    /// The tip it builds on.
    pub prev: BlockHash,
    /// Its long-poll id.
    pub longpollid: Option<String>,
    /// Fees of its transactions (sats): `coinbasevalue − fees` is the subsidy.
    pub fees: u64,
}

/// Make Stratum work of a template. `id` names it; `clean` says the tip changed.
pub fn prepare(gbt: &Gbt, spec: &CoinbaseSpec, id: u64, clean: bool) -> Result<Prepared, String> {
    let prev: BlockHash = gbt.previousblockhash.parse().map_err(|_| format!("previousblockhash {:?} is not a block hash", gbt.previousblockhash))?;
    let nbits = u32::from_str_radix(&gbt.bits, 16).map_err(|_| format!("bits {:?} is not hex", gbt.bits))?;
    let mut transactions = Vec::with_capacity(gbt.transactions.len());
    let mut txids = Vec::with_capacity(gbt.transactions.len());
    let mut fees = 0u64;
    for t in &gbt.transactions {
        let raw = hex::decode(&t.data).map_err(|_| format!("transaction {} is not hex", t.txid))?;
        let tx: Transaction = deserialize(&raw).map_err(|e| format!("transaction {} does not parse: {e}", t.txid))?;
        let txid: Txid = t.txid.parse().map_err(|_| format!("txid {:?} is not a txid", t.txid))?;
        if tx.compute_txid() != txid {
            return Err(format!("transaction {} hashes to {}", t.txid, tx.compute_txid()));
        }
        txids.push(txid.to_byte_array());
        transactions.push(tx);
        fees = fees.saturating_add(t.fee);
    }
    let commitment = match &gbt.default_witness_commitment {
        Some(h) => {
            let script = ScriptBuf::from_bytes(hex::decode(h).map_err(|_| "default_witness_commitment is not hex".to_string())?);
            if !script.as_bytes().starts_with(&WITNESS_COMMITMENT_PREFIX) {
                return Err("default_witness_commitment is not a BIP141 commitment".into());
            }
            Some(script)
        }
        None => None,
    };
    let (coinb1, coinb2) = coinbase_parts(gbt.height, spec, gbt.coinbasevalue, commitment.as_ref());
    let template = Template {
        id,
        source_job_id: format!("{id:x}"),
        height: gbt.height,
        job: JobTemplate {
            prev_hash: prev.to_byte_array(),
            coinb1,
            coinb2,
            merkle_branch: merkle_branch(&txids),
            version: gbt.version,
            nbits,
            ntime: gbt.curtime.max(gbt.mintime),
        },
        clean,
        difficulty_range: None,
        transactions: Arc::from(transactions),
        coinbase_value: gbt.coinbasevalue,
    };
    Ok(Prepared { template, prev, longpollid: gbt.longpollid.clone(), fees })
}

/// Split the coinbase (legacy serialization) around its extranonce space.
///
/// `coinb1 = version ‖ 1 input ‖ null outpoint ‖ scriptSig length ‖ BIP34 height ‖ push(extranonce_len)`,
/// `coinb2 = push(tag) ‖ sequence ‖ outputs (value → payout, then the witness commitment) ‖ locktime`.
pub fn coinbase_parts(height: u32, spec: &CoinbaseSpec, value: u64, commitment: Option<&ScriptBuf>) -> (Vec<u8>, Vec<u8>) {
    let height_push = Builder::new().push_int(i64::from(height)).into_script();
    let tag = PushBytesBuf::try_from(spec.tag.clone()).unwrap_or_default();
    let tag_push = Builder::new().push_slice(tag).into_script();
    let script_sig_len = height_push.len() + 1 + spec.extranonce_len + tag_push.len();
    let mut coinb1 = Vec::new();
    coinb1.extend_from_slice(&2u32.to_le_bytes());
    coinb1.push(1);
    coinb1.extend_from_slice(&[0u8; 32]);
    coinb1.extend_from_slice(&u32::MAX.to_le_bytes());
    coinb1.push(script_sig_len as u8); // at most 100 (CoinbaseSpec::check): one byte
    coinb1.extend_from_slice(height_push.as_bytes());
    coinb1.push(spec.extranonce_len as u8); // a direct push (1..=75)
    let mut coinb2 = Vec::new();
    coinb2.extend_from_slice(tag_push.as_bytes());
    coinb2.extend_from_slice(&u32::MAX.to_le_bytes());
    let outputs: Vec<(u64, &ScriptBuf)> = std::iter::once((value, &spec.payout)).chain(commitment.map(|c| (0, c))).collect();
    coinb2.push(outputs.len() as u8);
    for (value, script) in outputs {
        coinb2.extend_from_slice(&value.to_le_bytes());
        push_compact_size(&mut coinb2, script.len());
        coinb2.extend_from_slice(script.as_bytes());
    }
    coinb2.extend_from_slice(&0u32.to_le_bytes());
    (coinb1, coinb2)
}

fn push_compact_size(out: &mut Vec<u8>, n: usize) {
    match n {
        0..=0xfc => out.push(n as u8),
        0xfd..=0xffff => {
            out.push(0xfd);
            out.extend_from_slice(&(n as u16).to_le_bytes());
        }
        _ => {
            out.push(0xfe);
            out.extend_from_slice(&(n as u32).to_le_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::{Address, Network};
    use std::str::FromStr;

    fn spec() -> CoinbaseSpec {
        let addr = Address::from_str("bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080").unwrap().require_network(Network::Regtest).unwrap();
        CoinbaseSpec { payout: addr.script_pubkey(), tag: b"/ehash/".to_vec(), extranonce_len: 13 }
    }

    #[test]
    fn coinbase_pays_the_value_and_commits_to_witnesses() {
        let commitment = ScriptBuf::from_bytes(hex::decode("6a24aa21a9ede2f61c3f71d1defd3fa999dfa36953755c690689799962b48bebd836974e8cf9").unwrap());
        let s = spec();
        let (c1, c2) = coinbase_parts(1_000_000, &s, 312_500_000, Some(&commitment));
        let mut full = c1;
        full.extend_from_slice(&[7; 13]);
        full.extend_from_slice(&c2);
        let tx: Transaction = deserialize(&full).unwrap();
        assert!(tx.is_coinbase());
        assert_eq!(tx.output[0].value.to_sat(), 312_500_000);
        assert_eq!(tx.output[0].script_pubkey, s.payout);
        assert_eq!(tx.output[1].value.to_sat(), 0);
        assert_eq!(tx.output[1].script_pubkey, commitment);
        // BIP34: the height, minimally pushed, first
        assert_eq!(&tx.input[0].script_sig.as_bytes()[..4], &[0x03, 0x40, 0x42, 0x0f]);
        assert!(tx.input[0].script_sig.as_bytes().windows(7).any(|w| w == b"/ehash/"));
        assert_eq!(tx.lock_time.to_consensus_u32(), 0);
    }

    #[test]
    fn a_tag_too_long_for_the_script_sig_is_refused() {
        let mut s = spec();
        s.tag = vec![b'x'; 80];
        assert!(s.check().unwrap_err().contains("coinbase_tag"));
        assert!(spec().check().is_ok());
    }

    #[test]
    fn a_transaction_whose_txid_lies_is_refused() {
        let gbt = Gbt {
            version: 0x2000_0000,
            previousblockhash: "0000000000000000000000000000000000000000000000000000000000000001".into(),
            transactions: vec![GbtTransaction {
                // a coinbase-shaped transaction; its txid is not all zeros
                data: "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff0100ffffffff0100000000000000000000000000".into(),
                txid: "0000000000000000000000000000000000000000000000000000000000000000".into(),
                fee: 0,
            }],
            coinbasevalue: 5_000_000_000,
            bits: "207fffff".into(),
            curtime: 1_700_000_000,
            mintime: 1_699_999_000,
            height: 1,
            default_witness_commitment: None,
            longpollid: None,
        };
        assert!(prepare(&gbt, &spec(), 1, true).unwrap_err().contains("hashes to"));
    }
}
