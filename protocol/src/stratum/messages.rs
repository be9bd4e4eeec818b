//! Stratum V1 messages: newline-delimited JSON-RPC 1.0 objects.
//!
//! Requests keep the client's `id` exactly as sent (numbers, strings, repeated ids are all
//! seen in the wild) and responses echo it. Params are checked field by field, and a bad one is
//! refused with a message naming it; `mining.notify` is serialized with `sv1_api`.

use serde_json::{Value, json};
use sv1_api::utils::{HexBytes, HexU32Be, MerkleNode, PrevHash};

use super::share::{JobTemplate, prev_hash_to_stratum};
use crate::error::RequestError;
use crate::work::DifficultyExp;

/// Longest request line a server accepts, in bytes. Real miners send lines of a few hundred bytes.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// The `mining.configure` extension (BIP310 style) by which a client declares each share's
/// difficulty in the first byte of its extranonce2 (protocol §4).
pub const SHARE_DIFFICULTY_EXTENSION: &str = "ehash-share-difficulty";

/// The BIP310 version-rolling mask a server offers by default (BIP320 general-purpose bits).
pub const DEFAULT_VERSION_MASK: u32 = 0x1fff_e000;

/// Stratum V1 error codes (`"error": [code, message, null]`).
///
/// 20–25 are the codes every SV1 pool and miner uses; 26 and up are ehash extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 20: anything else (malformed requests, unknown methods, bad params, ntime, extranonce2).
    Other,
    /// 21: job not found, or stale.
    JobNotFound,
    /// 22: duplicate share.
    DuplicateShare,
    /// 23: share above target.
    LowDifficulty,
    /// 24: worker not authorized, unknown or foreign quote.
    Unauthorized,
    /// 25: not subscribed.
    NotSubscribed,
    /// 26 (ehash): the quote belongs to an epoch that has closed; create a quote for the current
    /// epoch's unit and authorize with it.
    EpochClosed,
    /// 27 (ehash): the pool could not record the share (storage failure); nothing was credited,
    /// resubmitting is safe.
    Unavailable,
}

impl ErrorCode {
    /// The numeric code.
    pub fn code(self) -> i64 {
        match self {
            Self::Other => 20,
            Self::JobNotFound => 21,
            Self::DuplicateShare => 22,
            Self::LowDifficulty => 23,
            Self::Unauthorized => 24,
            Self::NotSubscribed => 25,
            Self::EpochClosed => 26,
            Self::Unavailable => 27,
        }
    }

    /// The code for a number, if known.
    pub fn from_code(code: i64) -> Option<Self> {
        Some(match code {
            20 => Self::Other,
            21 => Self::JobNotFound,
            22 => Self::DuplicateShare,
            23 => Self::LowDifficulty,
            24 => Self::Unauthorized,
            25 => Self::NotSubscribed,
            26 => Self::EpochClosed,
            27 => Self::Unavailable,
            _ => return None,
        })
    }
}

/// A request line split into id, method and params.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The id as sent (`null` for notifications).
    pub id: Value,
    /// The method name.
    pub method: String,
    /// The params (an array for every method we serve).
    pub params: Value,
}

/// A decoded client-to-server message.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    /// `mining.subscribe [user_agent, session_id]`.
    Subscribe {
        /// The miner's user agent.
        user_agent: Option<String>,
        /// The session to resume (a previous extranonce1/subscription id, hex).
        session_id: Option<String>,
    },
    /// `mining.authorize [username, password]`.
    Authorize {
        /// The username.
        username: String,
    },
    /// `mining.configure [extensions, params]` (BIP310).
    Configure(Configure),
    /// `mining.submit [worker, job_id, extranonce2, ntime, nonce, (version_bits)]`.
    Submit(Submit),
    /// `mining.extranonce.subscribe []`.
    ExtranonceSubscribe,
    /// `mining.suggest_difficulty [difficulty]`.
    SuggestDifficulty(f64),
}

/// BIP310 `mining.configure` request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Configure {
    /// Extension names the miner asked for, in order.
    pub extensions: Vec<String>,
    /// `version-rolling.mask`, if version rolling was asked for.
    pub version_rolling_mask: Option<u32>,
    /// `minimum-difficulty.value`, if asked for.
    pub minimum_difficulty: Option<f64>,
}

/// A `mining.submit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submit {
    /// The worker name.
    pub username: String,
    /// The job id.
    pub job_id: String,
    /// Extranonce2 bytes.
    pub extranonce2: Vec<u8>,
    /// ntime.
    pub ntime: u32,
    /// nonce.
    pub nonce: u32,
    /// BIP310 version bits.
    pub version_bits: Option<u32>,
}

/// Split a line into a [`Request`]. On error, returns the id if one could be read.
pub fn parse_request(line: &str) -> Result<Request, (Value, RequestError)> {
    let value: Value = serde_json::from_str(line)
        .map_err(|e| (Value::Null, RequestError::MalformedJson(e.to_string())))?;
    let Value::Object(mut obj) = value else {
        return Err((Value::Null, RequestError::MalformedJson("not a JSON object".into())));
    };
    let id = obj.remove("id").unwrap_or(Value::Null);
    let method = match obj.remove("method") {
        Some(Value::String(m)) => m,
        _ => return Err((id, RequestError::MissingMethod)),
    };
    let params = obj.remove("params").unwrap_or(Value::Array(vec![]));
    Ok(Request { id, method, params })
}

impl Request {
    /// Decode the params of a known method.
    pub fn decode(&self) -> Result<ClientMessage, RequestError> {
        let bad = |detail: String| RequestError::InvalidParams {
            method: self.method.clone(),
            detail,
        };
        let empty = Vec::new();
        let params = match &self.params {
            Value::Array(a) => a,
            Value::Null => &empty,
            other => return Err(bad(format!("params must be an array, got {other}"))),
        };
        match self.method.as_str() {
            "mining.subscribe" => {
                let user_agent = params.first().and_then(|v| v.as_str()).map(str::to_owned);
                let session_id = params.get(1).and_then(|v| v.as_str()).map(str::to_owned);
                Ok(ClientMessage::Subscribe { user_agent, session_id })
            }
            "mining.authorize" => {
                let username = params
                    .first()
                    .and_then(|v| v.as_str())
                    .ok_or_else(|| bad("expected [username, password]".into()))?;
                Ok(ClientMessage::Authorize { username: username.to_owned() })
            }
            "mining.configure" => parse_configure(params).map(ClientMessage::Configure).map_err(bad),
            "mining.submit" => parse_submit(params).map(ClientMessage::Submit).map_err(bad),
            "mining.extranonce.subscribe" => Ok(ClientMessage::ExtranonceSubscribe),
            "mining.suggest_difficulty" => {
                let d = params
                    .first()
                    .and_then(Value::as_f64)
                    .ok_or_else(|| bad("expected [difficulty]".into()))?;
                Ok(ClientMessage::SuggestDifficulty(d))
            }
            other => Err(RequestError::UnknownMethod(other.to_owned())),
        }
    }
}

/// `mining.submit [worker, job_id, extranonce2, ntime, nonce, (version_bits)]`, every field
/// checked with a message that names it.
fn parse_submit(params: &[Value]) -> Result<Submit, String> {
    if params.len() < 5 || params.len() > 6 {
        return Err(format!("expected [worker, job_id, extranonce2, ntime, nonce] and optional version bits, got {} params", params.len()));
    }
    let text = |i: usize, what: &str| -> Result<String, String> {
        params[i].as_str().map(str::to_owned).ok_or_else(|| format!("{what} must be a string, got {}", params[i]))
    };
    let word = |i: usize, what: &str| -> Result<u32, String> {
        let s = params[i].as_str().ok_or_else(|| format!("{what} must be a hex string, got {}", params[i]))?;
        if s.is_empty() || s.len() > 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("{what} must be 1 to 8 hex digits, got {s:?}"));
        }
        u32::from_str_radix(s, 16).map_err(|_| format!("{what} must be 1 to 8 hex digits, got {s:?}"))
    };
    let extranonce2 = params[2]
        .as_str()
        .and_then(|s| hex::decode(s).ok())
        .ok_or_else(|| format!("extranonce2 must be an even number of hex digits, got {}", params[2]))?;
    Ok(Submit {
        username: text(0, "the worker name")?,
        job_id: text(1, "the job id")?,
        extranonce2,
        ntime: word(3, "ntime")?,
        nonce: word(4, "nonce")?,
        version_bits: if params.len() == 6 { Some(word(5, "version bits")?) } else { None },
    })
}

fn parse_configure(params: &[Value]) -> Result<Configure, String> {
    let names = params
        .first()
        .and_then(Value::as_array)
        .ok_or("expected [[extension names], {extension params}]")?;
    let ext_params = params.get(1).and_then(Value::as_object);
    let mut cfg = Configure::default();
    for name in names {
        let name = name.as_str().ok_or("extension names must be strings")?;
        cfg.extensions.push(name.to_owned());
        match name {
            "version-rolling" => {
                let mask = ext_params
                    .and_then(|p| p.get("version-rolling.mask"))
                    .and_then(Value::as_str)
                    .unwrap_or("ffffffff");
                let mask = u32::from_str_radix(mask, 16).map_err(|_| format!("version-rolling.mask {mask:?} is not hex"))?;
                cfg.version_rolling_mask = Some(mask);
            }
            "minimum-difficulty" => {
                cfg.minimum_difficulty = ext_params
                    .and_then(|p| p.get("minimum-difficulty.value"))
                    .and_then(Value::as_f64);
            }
            _ => {}
        }
    }
    Ok(cfg)
}

/// A successful response line (without the trailing newline).
pub fn response(id: &Value, result: Value) -> String {
    json!({ "id": id, "result": result, "error": null }).to_string()
}

/// An error response line: `"error": [code, message, null]`.
pub fn error_response(id: &Value, code: ErrorCode, message: &str) -> String {
    json!({ "id": id, "result": null, "error": [code.code(), message, null] }).to_string()
}

/// The `mining.subscribe` result: subscriptions, extranonce1, extranonce2 size.
pub fn subscribe_result(subscription_id: &str, extranonce1: &[u8], extranonce2_size: usize) -> Value {
    json!([
        [["mining.set_difficulty", subscription_id], ["mining.notify", subscription_id]],
        hex::encode(extranonce1),
        extranonce2_size
    ])
}

/// What a `mining.configure` settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Negotiated {
    /// The version-rolling mask, if version rolling was agreed.
    pub version_mask: Option<u32>,
    /// Whether the client declares share difficulties ([`SHARE_DIFFICULTY_EXTENSION`]).
    pub share_difficulty: bool,
}

/// The BIP310 `mining.configure` result for a request, given the server's mask and whether it
/// offers [`SHARE_DIFFICULTY_EXTENSION`].
pub fn configure_result(request: &Configure, server_mask: Option<u32>, share_difficulty: bool) -> (Value, Negotiated) {
    let mut out = serde_json::Map::new();
    let mut negotiated = Negotiated::default();
    for name in &request.extensions {
        match name.as_str() {
            "version-rolling" => match (server_mask, request.version_rolling_mask) {
                (Some(server), Some(miner)) if server & miner != 0 => {
                    let mask = server & miner;
                    negotiated.version_mask = Some(mask);
                    out.insert("version-rolling".into(), Value::Bool(true));
                    out.insert("version-rolling.mask".into(), Value::String(format!("{mask:08x}")));
                }
                _ => {
                    out.insert("version-rolling".into(), Value::Bool(false));
                }
            },
            "minimum-difficulty" => {
                out.insert("minimum-difficulty".into(), Value::Bool(true));
            }
            SHARE_DIFFICULTY_EXTENSION => {
                negotiated.share_difficulty = share_difficulty;
                out.insert(SHARE_DIFFICULTY_EXTENSION.into(), Value::Bool(share_difficulty));
            }
            other => {
                out.insert(other.to_owned(), Value::Bool(false));
            }
        }
    }
    (Value::Object(out), negotiated)
}

/// A `mining.notify` notification line for a job.
pub fn notify(job_id: &str, job: &JobTemplate, clean_jobs: bool) -> String {
    let stratum_prev = hex::encode(prev_hash_to_stratum(&job.prev_hash));
    let (Ok(prev_hash), Ok(merkle_branch)) = (
        PrevHash::try_from(stratum_prev.as_str()),
        job.merkle_branch
            .iter()
            .map(|n| MerkleNode::try_from(n.to_vec()))
            .collect::<Result<Vec<_>, _>>(),
    ) else {
        // 32-byte inputs always convert; keep the wire format even if sv1_api changes.
        unreachable!("32-byte hashes convert to sv1_api types")
    };
    let n = sv1_api::server_to_client::Notify {
        job_id: job_id.to_owned(),
        prev_hash,
        coin_base1: HexBytes::from(job.coinb1.clone()),
        coin_base2: HexBytes::from(job.coinb2.clone()),
        merkle_branch,
        version: HexU32Be(job.version),
        bits: HexU32Be(job.nbits),
        time: HexU32Be(job.ntime),
        clean_jobs,
    };
    with_null_id(serde_json::to_value(sv1_api::json_rpc::Message::from(n)).unwrap_or(Value::Null))
}

/// A `mining.set_difficulty` notification line.
pub fn set_difficulty(difficulty: DifficultyExp) -> String {
    json!({ "id": null, "method": "mining.set_difficulty", "params": [difficulty.as_f64()] }).to_string()
}

/// A `client.show_message` notification line.
pub fn show_message(text: &str) -> String {
    json!({ "id": null, "method": "client.show_message", "params": [text] }).to_string()
}

fn with_null_id(mut v: Value) -> String {
    if let Value::Object(obj) = &mut v {
        obj.insert("id".into(), Value::Null);
    }
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_echoed_as_sent() {
        for line in [
            r#"{"id":4,"method":"mining.submit","params":[]}"#,
            r#"{"id":"s","method":"mining.submit","params":[]}"#,
        ] {
            let r = parse_request(line).unwrap();
            let out: Value = serde_json::from_str(&error_response(&r.id, ErrorCode::Other, "x")).unwrap();
            assert_eq!(out["id"], r.id);
            assert_eq!(out["error"], json!([20, "x", null]));
        }
    }

    #[test]
    fn malformed_lines_are_refused_with_reasons() {
        assert!(matches!(parse_request("{nope").unwrap_err().1, RequestError::MalformedJson(_)));
        assert!(matches!(parse_request("[1,2]").unwrap_err().1, RequestError::MalformedJson(_)));
        let (id, e) = parse_request(r#"{"id":7,"params":[]}"#).unwrap_err();
        assert_eq!((id, e), (json!(7), RequestError::MissingMethod));
        let r = parse_request(r#"{"id":1,"method":"mining.frobnicate","params":[]}"#).unwrap();
        assert_eq!(r.decode().unwrap_err(), RequestError::UnknownMethod("mining.frobnicate".into()));
        let r = parse_request(r#"{"id":1,"method":"mining.submit","params":["w","j"]}"#).unwrap();
        assert!(matches!(r.decode().unwrap_err(), RequestError::InvalidParams { .. }));
    }

    #[test]
    fn submit_with_and_without_version_bits() {
        let r = parse_request(r#"{"method":"mining.submit","params":["q.w","job1","00000000","4dd7f5c7","f95a4a00"],"id":4}"#).unwrap();
        assert_eq!(
            r.decode().unwrap(),
            ClientMessage::Submit(Submit {
                username: "q.w".into(),
                job_id: "job1".into(),
                extranonce2: vec![0; 4],
                ntime: 0x4dd7f5c7,
                nonce: 0xf95a4a00,
                version_bits: None
            })
        );
        let r = parse_request(r#"{"method":"mining.submit","params":["q.w","j","01000000","4dd7f5c7","f95a4a00","00002000"],"id":5}"#).unwrap();
        let ClientMessage::Submit(s) = r.decode().unwrap() else { panic!() };
        assert_eq!((s.extranonce2, s.version_bits), (vec![1, 0, 0, 0], Some(0x2000)));
    }

    #[test]
    fn configure_negotiates_the_mask_intersection() {
        let r = parse_request(r#"{"id":1,"method":"mining.configure","params":[["version-rolling","info"],{"version-rolling.mask":"1fffe000","version-rolling.min-bit-count":2}]}"#).unwrap();
        let ClientMessage::Configure(c) = r.decode().unwrap() else { panic!() };
        let (res, n) = configure_result(&c, Some(0x00ffff00), true);
        assert_eq!(n, Negotiated { version_mask: Some(0x00ffe000), share_difficulty: false });
        assert_eq!(res, json!({"version-rolling": true, "version-rolling.mask": "00ffe000", "info": false}));
        let (res, n) = configure_result(&c, None, true);
        assert_eq!((res["version-rolling"].clone(), n.version_mask), (json!(false), None));
        let r = parse_request(r#"{"id":2,"method":"mining.configure","params":[["ehash-share-difficulty"],{}]}"#).unwrap();
        let ClientMessage::Configure(c) = r.decode().unwrap() else { panic!() };
        assert_eq!(configure_result(&c, None, true), (json!({"ehash-share-difficulty": true}), Negotiated { version_mask: None, share_difficulty: true }));
        assert_eq!(configure_result(&c, None, false), (json!({"ehash-share-difficulty": false}), Negotiated::default()));
    }

    #[test]
    fn notify_uses_stratum_prevhash_and_null_id() {
        let job = JobTemplate {
            prev_hash: super::super::share::prev_hash_from_stratum(
                &hex::decode("ab02cd818b9e567ee21793cddef299feb29ad444a41b85b8000008a300000000").unwrap().try_into().unwrap(),
            ),
            coinb1: vec![1, 2],
            coinb2: vec![3],
            merkle_branch: vec![[0x3b; 32]],
            version: 0x20000000,
            nbits: 0x1a44b9f2,
            ntime: 0x4dd7f5c7,
        };
        let v: Value = serde_json::from_str(&notify("j1", &job, true)).unwrap();
        assert_eq!(v["id"], Value::Null);
        assert_eq!(v["method"], "mining.notify");
        assert_eq!(
            v["params"],
            json!(["j1", "ab02cd818b9e567ee21793cddef299feb29ad444a41b85b8000008a300000000", "0102", "03",
                   ["3b".repeat(32)], "20000000", "1a44b9f2", "4dd7f5c7", true])
        );
        let v: Value = serde_json::from_str(&set_difficulty(DifficultyExp::new(-10).unwrap())).unwrap();
        assert_eq!(v["params"], json!([0.0009765625]));
    }
}
