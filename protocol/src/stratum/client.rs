//! The client side of Stratum V1: requests a miner (or a proxy talking upstream) sends, and the
//! server messages it reads.

use serde_json::{Value, json};
use sv1_api::json_rpc::Notification;

use super::share::JobTemplate;
use crate::error::RequestError;

/// A message from a Stratum V1 server.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMessage {
    /// The answer to a request.
    Response {
        /// The id of the request.
        id: Value,
        /// The result (`null` on error).
        result: Value,
        /// `(code, message)` if refused.
        error: Option<(i64, String)>,
    },
    /// `mining.notify`.
    Notify {
        /// The job id.
        job_id: String,
        /// The job.
        job: JobTemplate,
        /// clean_jobs.
        clean: bool,
    },
    /// `mining.set_difficulty`.
    SetDifficulty(f64),
    /// `mining.set_version_mask`.
    SetVersionMask(u32),
    /// `client.show_message`.
    ShowMessage(String),
    /// Any other notification (method name).
    Other(String),
}

/// A request line.
pub fn request(id: u64, method: &str, params: Value) -> String {
    json!({ "id": id, "method": method, "params": params }).to_string()
}

/// The error of a response, as `(code, message)`; accepts `[code, msg, data]` and `{code, message}`.
fn parse_error(e: &Value) -> Option<(i64, String)> {
    match e {
        Value::Null => None,
        Value::Array(a) => Some((a.first()?.as_i64()?, a.get(1).and_then(Value::as_str).unwrap_or("").to_owned())),
        Value::Object(o) => Some((o.get("code")?.as_i64()?, o.get("message").and_then(Value::as_str).unwrap_or("").to_owned())),
        other => Some((20, other.to_string())),
    }
}

/// Parse one line from a server.
pub fn parse_server_line(line: &str) -> Result<ServerMessage, RequestError> {
    let v: Value = serde_json::from_str(line).map_err(|e| RequestError::MalformedJson(e.to_string()))?;
    let Value::Object(mut o) = v else {
        return Err(RequestError::MalformedJson("not a JSON object".into()));
    };
    let method = o.get("method").and_then(Value::as_str).map(str::to_owned);
    let Some(method) = method else {
        let id = o.remove("id").unwrap_or(Value::Null);
        let result = o.remove("result").unwrap_or(Value::Null);
        let error = o.get("error").and_then(parse_error);
        return Ok(ServerMessage::Response { id, result, error });
    };
    let params = o.remove("params").unwrap_or(Value::Array(vec![]));
    let bad = |detail: String| RequestError::InvalidParams { method: method.clone(), detail };
    Ok(match method.as_str() {
        "mining.notify" => {
            let n = sv1_api::server_to_client::Notify::try_from(Notification { method: method.clone(), params: params.clone() })
                .map_err(|e| bad(format!("{e:?}")))?;
            let prev: Vec<u8> = n.prev_hash.clone().into();
            let prev_hash: [u8; 32] = prev.try_into().map_err(|_| bad("prevhash is not 32 bytes".into()))?;
            let merkle_branch = n
                .merkle_branch
                .iter()
                .map(|m| <[u8; 32]>::try_from(m.as_ref()).map_err(|_| bad("merkle node is not 32 bytes".into())))
                .collect::<Result<Vec<_>, _>>()?;
            ServerMessage::Notify {
                job_id: n.job_id.clone(),
                job: JobTemplate {
                    prev_hash,
                    coinb1: n.coin_base1.clone().into(),
                    coinb2: n.coin_base2.clone().into(),
                    merkle_branch,
                    version: n.version.0,
                    nbits: n.bits.0,
                    ntime: n.time.0,
                },
                clean: n.clean_jobs,
            }
        }
        "mining.set_difficulty" => ServerMessage::SetDifficulty(
            params.get(0).and_then(Value::as_f64).filter(|d| *d > 0.0).ok_or_else(|| bad("expected [difficulty]".into()))?,
        ),
        "mining.set_version_mask" => ServerMessage::SetVersionMask(
            params
                .get(0)
                .and_then(Value::as_str)
                .and_then(|m| u32::from_str_radix(m, 16).ok())
                .ok_or_else(|| bad("expected [mask hex]".into()))?,
        ),
        "client.show_message" => ServerMessage::ShowMessage(params.get(0).and_then(Value::as_str).unwrap_or("").to_owned()),
        _ => ServerMessage::Other(method),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stratum::messages::{ErrorCode, error_response, notify, set_difficulty, show_message};
    use crate::work::DifficultyExp;

    #[test]
    fn reads_what_the_server_writes() {
        let job = JobTemplate {
            prev_hash: [7; 32],
            coinb1: vec![1, 2, 3],
            coinb2: vec![4],
            merkle_branch: vec![[9; 32], [8; 32]],
            version: 0x2000_0000,
            nbits: 0x1d00ffff,
            ntime: 0x6000_0000,
        };
        assert_eq!(
            parse_server_line(&notify("a1", &job, true)).unwrap(),
            ServerMessage::Notify { job_id: "a1".into(), job, clean: true }
        );
        assert_eq!(
            parse_server_line(&set_difficulty(DifficultyExp::new(-3).unwrap())).unwrap(),
            ServerMessage::SetDifficulty(0.125)
        );
        assert_eq!(parse_server_line(&show_message("hi")).unwrap(), ServerMessage::ShowMessage("hi".into()));
        assert_eq!(
            parse_server_line(&error_response(&json!(4), ErrorCode::EpochClosed, "closed")).unwrap(),
            ServerMessage::Response { id: json!(4), result: Value::Null, error: Some((26, "closed".into())) }
        );
        assert_eq!(
            parse_server_line(r#"{"id":2,"result":true,"error":null}"#).unwrap(),
            ServerMessage::Response { id: json!(2), result: json!(true), error: None }
        );
        assert!(parse_server_line("nope").is_err());
    }
}
