//! NUT-17 WebSockets that follow mint rebuilds.
//!
//! cdk-axum's `/v1/ws` handler serves a socket from the `Mint` instance it was created with, and
//! an epoch change replaces that instance: a socket opened before would stay attached to the
//! stopped mint and never hear of a state change again. So the bridge accepts the client's
//! socket itself, opens an in-process socket to the current cdk-axum router (over an in-memory
//! stream, no port) and relays messages between the two; when a new instance starts it closes
//! the client's socket with 1012 (service restart). Clients reconnect and subscribe again, and
//! the new mint sends them the current state (cdk's wallet does this by itself). Notifications of
//! custom-method quotes carry the quote as NUT-17 says (cdk sends `[<method>, <quote>]`), ehash
//! quotes in the protocol's form, as over HTTP ([`crate::http::quote_on_the_wire`]).

use axum::Router;
use axum::extract::ws::{self, CloseFrame, WebSocket};
use futures::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite;

/// Close code sent when the mint restarts for a new epoch (RFC 6455 registry: service restart).
const SERVICE_RESTART: u16 = 1012;

/// Bytes buffered each way between the relay and the in-process cdk socket.
const PIPE_BUFFER: usize = 256 * 1024;

/// Relay `client` to a socket of `router` (cdk-axum's) until either side closes or `rebuilt`
/// changes.
pub async fn relay(mut client: WebSocket, router: Router, mut rebuilt: watch::Receiver<u64>) {
    let inner = match connect(router).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "opening the mint's WebSocket");
            let _ = client.send(ws::Message::Close(Some(CloseFrame { code: 1011, reason: "the mint could not serve the socket".into() }))).await;
            return;
        }
    };
    let (mut to_mint, mut from_mint) = inner.split();
    loop {
        tokio::select! {
            m = client.recv() => match m {
                Some(Ok(ws::Message::Text(t))) => {
                    if to_mint.send(tungstenite::Message::text(t.as_str())).await.is_err() {
                        break;
                    }
                }
                Some(Ok(ws::Message::Binary(b))) => {
                    if to_mint.send(tungstenite::Message::binary(b)).await.is_err() {
                        break;
                    }
                }
                // each side answers its own pings
                Some(Ok(ws::Message::Ping(_) | ws::Message::Pong(_))) => {}
                Some(Ok(ws::Message::Close(_))) | Some(Err(_)) | None => {
                    let _ = to_mint.send(tungstenite::Message::Close(None)).await;
                    break;
                }
            },
            m = from_mint.next() => match m {
                Some(Ok(tungstenite::Message::Text(t))) => {
                    if client.send(ws::Message::Text(on_the_wire(t.as_str()).into())).await.is_err() {
                        break;
                    }
                }
                Some(Ok(tungstenite::Message::Binary(b))) => {
                    if client.send(ws::Message::Binary(b)).await.is_err() {
                        break;
                    }
                }
                Some(Ok(tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) | tungstenite::Message::Frame(_))) => {}
                Some(Ok(tungstenite::Message::Close(f))) => {
                    let frame = f.map(|f| CloseFrame { code: f.code.into(), reason: f.reason.as_str().into() });
                    let _ = client.send(ws::Message::Close(frame)).await;
                    break;
                }
                Some(Err(_)) | None => {
                    let _ = client.send(ws::Message::Close(Some(CloseFrame { code: 1011, reason: "the mint closed the socket".into() }))).await;
                    break;
                }
            },
            r = rebuilt.changed() => {
                if r.is_ok() {
                    tracing::debug!("closing a WebSocket of the previous mint instance");
                }
                let reason = "the mint restarted for a new epoch; reconnect and subscribe again";
                let _ = client.send(ws::Message::Close(Some(CloseFrame { code: SERVICE_RESTART, reason: reason.into() }))).await;
                let _ = to_mint.send(tungstenite::Message::Close(None)).await;
                break;
            }
        }
    }
}

/// A message from the mint as the client gets it. NUT-17 makes a notification's `payload` the
/// quote itself, as `GET /v1/mint/quote/{method}/{id}` answers it; cdk sends a custom method's
/// quote as `[<method>, <quote>]`, so that pair becomes the quote. An ehash quote is then put in
/// the protocol's form, as over HTTP ([`crate::http::quote_on_the_wire`]). Anything else passes
/// unchanged.
fn on_the_wire(text: &str) -> String {
    let Ok(mut msg) = serde_json::from_str::<serde_json::Value>(text) else {
        return text.to_owned();
    };
    let Some(payload) = msg.pointer_mut("/params/payload") else {
        return text.to_owned();
    };
    let mut changed = false;
    if let Some([method, quote]) = payload.as_array_mut().map(Vec::as_mut_slice)
        && method.is_string()
        && quote.is_object()
    {
        let quote = quote.take();
        *payload = quote;
        changed = true;
    }
    changed |= crate::http::quote_on_the_wire(payload);
    if changed { msg.to_string() } else { text.to_owned() }
}

/// A WebSocket to `router`'s `/v1/ws`, served in-process over an in-memory stream.
async fn connect(router: Router) -> Result<tokio_tungstenite::WebSocketStream<tokio::io::DuplexStream>, tungstenite::Error> {
    let (ours, theirs) = tokio::io::duplex(PIPE_BUFFER);
    tokio::spawn(async move {
        let served = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(theirs), TowerToHyperService::new(router)).with_upgrades();
        if let Err(e) = served.await {
            tracing::debug!(error = %e, "in-process mint WebSocket connection ended");
        }
    });
    let (socket, _) = tokio_tungstenite::client_async("ws://mint.invalid/v1/ws", ours).await?;
    Ok(socket)
}
