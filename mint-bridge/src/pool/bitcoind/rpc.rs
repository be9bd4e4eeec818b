//! A small Bitcoin Core JSON-RPC client: one HTTP POST per call, a timeout and a size cap on
//! every answer, the cookie file read again at every call (a restarted node writes a new one).

use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// The largest answer read from the node (a mainnet `getblocktemplate` is about 8 MB of hex).
const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;

/// How the node authenticates RPC clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RpcAuth {
    /// The `.cookie` file the node writes in its data directory.
    Cookie(PathBuf),
    /// `rpcuser`/`rpcpassword` (or an `rpcauth` entry).
    UserPass(String, String),
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    /// The node did not answer (down, wrong URL, timeout).
    #[error("bitcoind at {url} is unreachable: {reason}; check that the node runs and mint_bridge.bitcoind.rpc_url")]
    Unreachable {
        /// The RPC URL.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The node refused the credentials.
    #[error("bitcoind at {url} refused the RPC credentials: check mint_bridge.bitcoind.cookie_file or rpc_user/rpc_password")]
    Unauthorized {
        /// The RPC URL.
        url: String,
    },
    /// The cookie file could not be read.
    #[error("cannot read the bitcoind cookie file {path}: {reason}; set mint_bridge.bitcoind.cookie_file to the node's .cookie")]
    Cookie {
        /// The file.
        path: String,
        /// What failed.
        reason: String,
    },
    /// The node answered with a JSON-RPC error.
    #[error("bitcoind refused {method}: {message} (code {code})")]
    Node {
        /// The method called.
        method: String,
        /// The JSON-RPC error code.
        code: i64,
        /// The node's message.
        message: String,
    },
    /// The answer was not what the method returns.
    #[error("bitcoind answered {method} with something unexpected: {reason}")]
    Malformed {
        /// The method called.
        method: String,
        /// What did not parse.
        reason: String,
    },
}

/// Bitcoin Core's "block not found" (`RPC_INVALID_ADDRESS_OR_KEY`).
pub const RPC_NOT_FOUND: i64 = -5;
/// Bitcoin Core's "still in initial download / warming up" (`RPC_IN_WARMUP`).
pub const RPC_IN_WARMUP: i64 = -28;

/// A JSON-RPC client of one node.
#[derive(Debug, Clone)]
pub struct Rpc {
    url: String,
    auth: RpcAuth,
    timeout_secs: u64,
}

impl Rpc {
    /// A client of the node at `url` (e.g. `http://127.0.0.1:8332`), each call bounded by
    /// `timeout_secs`.
    pub fn new(url: String, auth: RpcAuth, timeout_secs: u64) -> Self {
        Self { url, auth, timeout_secs: timeout_secs.max(1) }
    }

    /// The RPC URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Call `method` with positional `params`.
    pub async fn call<T: DeserializeOwned>(&self, method: &str, params: Value) -> Result<T, RpcError> {
        self.call_with_timeout(method, params, self.timeout_secs).await
    }

    /// Call `method`, waiting at most `timeout_secs` (a long poll waits longer than a call).
    pub async fn call_with_timeout<T: DeserializeOwned>(&self, method: &str, params: Value, timeout_secs: u64) -> Result<T, RpcError> {
        let (user, password) = match &self.auth {
            RpcAuth::UserPass(u, p) => (u.clone(), p.clone()),
            RpcAuth::Cookie(path) => {
                let text = tokio::fs::read_to_string(path)
                    .await
                    .map_err(|e| RpcError::Cookie { path: path.display().to_string(), reason: e.to_string() })?;
                let (u, p) = text
                    .trim()
                    .split_once(':')
                    .ok_or_else(|| RpcError::Cookie { path: path.display().to_string(), reason: "not user:password".into() })?;
                (u.to_owned(), p.to_owned())
            }
        };
        let body = json!({ "jsonrpc": "1.0", "id": "ehash", "method": method, "params": params });
        let auth = base64_encode(format!("{user}:{password}").as_bytes());
        let unreachable = |reason: String| RpcError::Unreachable { url: self.url.clone(), reason };
        let request = bitreq::post(self.url.as_str())
            .with_header("Authorization", format!("Basic {auth}"))
            .with_header("Content-Type", "application/json")
            .with_body(body.to_string())
            .with_timeout(timeout_secs.max(1))
            .with_max_body_size(Some(MAX_ANSWER_BYTES));
        let resp = request.send_async().await.map_err(|e| unreachable(e.to_string()))?;
        if resp.status_code == 401 || resp.status_code == 403 {
            return Err(RpcError::Unauthorized { url: self.url.clone() });
        }
        // Bitcoin Core answers JSON-RPC errors with 404/500 and a JSON body
        let answer: Value = serde_json::from_slice(resp.as_bytes()).map_err(|_| {
            if resp.status_code == 200 {
                RpcError::Malformed { method: method.into(), reason: "not JSON".into() }
            } else {
                unreachable(format!("HTTP {} {}", resp.status_code, resp.reason_phrase))
            }
        })?;
        if let Some(err) = answer.get("error").filter(|e| !e.is_null()) {
            return Err(RpcError::Node {
                method: method.into(),
                code: err.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: err.get("message").and_then(Value::as_str).unwrap_or("no message").chars().take(500).collect(),
            });
        }
        let result = answer.get("result").cloned().unwrap_or(Value::Null);
        serde_json::from_value(result).map_err(|e| RpcError::Malformed { method: method.into(), reason: e.to_string() })
    }
}

/// Standard base64 with padding (RFC 4648), for the Basic authorization header.
fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::base64_encode;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, expected) in [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE="), ("foobar", "Zm9vYmFy")] {
            assert_eq!(base64_encode(input.as_bytes()), expected);
        }
    }
}
