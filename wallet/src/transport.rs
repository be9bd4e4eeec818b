//! The HTTP transport under every cdk mint client of the wallet, the agent and the exchange: a
//! mint is someone else's server, so every call has a deadline ([`TIMEOUT`]) and a cap on the
//! answer's size ([`MAX_BODY`], [`MAX_HEADERS`]), never follows a redirect, and a mint's
//! `Retry-After` (on 429 or 503) is honoured: until it passes, calls to that mint fail at once
//! with a 429 of our own, without reaching it (callers treat a 429 as "later", not as "no").

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bitreq::RequestExt;
use cdk::http_client::{HttpError, RawResponse};
use cdk::mint_url::MintUrl;
use cdk::nuts::AuthToken;
use cdk::wallet::BaseHttpClient;
use cdk_http_client::Transport;
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

/// Longest wait for a mint's whole answer.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer body read from a mint (a keyset's keys are a few KiB; a restore of many
/// outputs some hundred KiB).
pub const MAX_BODY: usize = 4 << 20;
/// Largest answer head read from a mint.
pub const MAX_HEADERS: usize = 64 << 10;
/// Longest `Retry-After` honoured; a longer one (or an HTTP date) counts as this. Kept well
/// below the least margin between a trade's two locktimes (30 s): a claim or refund must never
/// wait past its deadline because a mint asked for a pause.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);

/// cdk's client installs the TLS crypto provider bitreq needs for https mints.
static TLS: LazyLock<()> = LazyLock::new(|| {
    let _ = cdk::http_client::HttpClient::new();
});

/// Until when each origin asked not to be called (`Retry-After`).
static HELD: LazyLock<Mutex<HashMap<String, Instant>>> = LazyLock::new(Default::default);

/// A cdk mint client over the [`Bounded`] transport.
pub type MintClient = BaseHttpClient<Bounded>;

/// A mint client for `mint`, with connections of its own (as cdk's clients have).
pub fn client(mint: MintUrl) -> MintClient {
    BaseHttpClient::with_transport(mint, Bounded::new(), None)
}

/// The bounded transport (see the module documentation).
#[derive(Clone)]
pub struct Bounded {
    client: std::sync::Arc<bitreq::Client>,
}

impl std::fmt::Debug for Bounded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bounded").finish_non_exhaustive()
    }
}

impl Bounded {
    /// A transport with a connection pool of its own.
    pub fn new() -> Self {
        LazyLock::force(&TLS);
        Self { client: std::sync::Arc::new(bitreq::Client::new(10)) }
    }
}

impl Default for Bounded {
    fn default() -> Self {
        Self::new()
    }
}

fn held() -> std::sync::MutexGuard<'static, HashMap<String, Instant>> {
    HELD.lock().unwrap_or_else(|p| p.into_inner())
}

/// The pause a `Retry-After` value asks for (delay-seconds; an HTTP date counts as
/// [`MAX_RETRY_AFTER`]), at most [`MAX_RETRY_AFTER`].
fn retry_after(v: &str) -> Duration {
    v.trim().parse::<u64>().map(Duration::from_secs).unwrap_or(MAX_RETRY_AFTER).min(MAX_RETRY_AFTER)
}

impl Bounded {
    async fn send(&self, req: bitreq::Request, url: &Url) -> Result<RawResponse, HttpError> {
        let origin = url.origin().ascii_serialization();
        let now = Instant::now();
        let wait = {
            let mut h = held();
            h.retain(|_, until| *until > now);
            h.get(&origin).map(|until| until.duration_since(now))
        };
        if let Some(wait) = wait {
            return Err(HttpError::Status {
                status: 429,
                message: format!("{origin} asked not to be called for {} s more (Retry-After)", wait.as_secs().max(1)),
            });
        }
        let req = req
            .with_timeout(TIMEOUT.as_secs())
            .with_max_redirects(0)
            .with_max_headers_size(MAX_HEADERS)
            .with_max_body_size(MAX_BODY);
        let r = match tokio::time::timeout(TIMEOUT, req.send_async_with_client(&self.client)).await {
            Err(_) => return Err(HttpError::Timeout),
            Ok(Err(bitreq::Error::BodyOverflow)) => return Err(HttpError::Other(format!("{origin} answered more than {} MiB", MAX_BODY >> 20))),
            Ok(Err(bitreq::Error::HeadersOverflow)) => return Err(HttpError::Other(format!("{origin} answered a head over {} KiB", MAX_HEADERS >> 10))),
            Ok(Err(e)) => return Err(HttpError::from(e)),
            Ok(Ok(r)) => r,
        };
        if matches!(r.status_code, 429 | 503)
            && let Some(v) = r.headers.get("retry-after")
        {
            held().insert(origin, Instant::now() + retry_after(v));
        }
        let status = u16::try_from(r.status_code).unwrap_or(500);
        Ok(RawResponse::new(status, r.into_bytes()))
    }

    fn with_auth(req: bitreq::Request, auth: Option<AuthToken>) -> bitreq::Request {
        match auth {
            Some(a) => req.with_header(a.header_key(), a.to_string()),
            None => req,
        }
    }
}

#[async_trait]
impl Transport for Bounded {
    fn with_proxy(&mut self, _proxy: Url, _host_matcher: Option<&str>, _accept_invalid_certs: bool) -> Result<(), HttpError> {
        Err(HttpError::Proxy("this transport does not use proxies".into()))
    }

    async fn http_get<R>(&self, url: Url, auth: Option<AuthToken>) -> Result<R, HttpError>
    where
        R: DeserializeOwned,
    {
        self.http_get_raw(url, auth).await?.json_or_status_error()
    }

    async fn http_get_raw(&self, url: Url, auth: Option<AuthToken>) -> Result<RawResponse, HttpError> {
        let req = Self::with_auth(bitreq::get(url.as_str()), auth);
        self.send(req, &url).await
    }

    async fn http_post<P, R>(&self, url: Url, auth: Option<AuthToken>, payload: &P) -> Result<R, HttpError>
    where
        P: Serialize + Send + Sync,
        R: DeserializeOwned,
    {
        let req = bitreq::post(url.as_str()).with_json(payload).map_err(|e| HttpError::Serialization(e.to_string()))?;
        self.send(Self::with_auth(req, auth), &url).await?.json_or_status_error()
    }

    async fn http_post_form_raw<P>(&self, _url: Url, _auth: Option<AuthToken>, _payload: &P) -> Result<RawResponse, HttpError>
    where
        P: Serialize + Send + Sync,
    {
        // only OIDC (blind auth) posts forms, and no mint of ours asks for it
        Err(HttpError::Other("this wallet does not use OIDC authentication".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_caps_the_rest() {
        assert_eq!(retry_after("3"), Duration::from_secs(3));
        assert_eq!(retry_after("10"), MAX_RETRY_AFTER);
        assert_eq!(retry_after(" 0 "), Duration::ZERO);
        assert_eq!(retry_after("99999"), MAX_RETRY_AFTER);
        assert_eq!(retry_after("Wed, 21 Oct 2026 07:28:00 GMT"), MAX_RETRY_AFTER);
    }
}
