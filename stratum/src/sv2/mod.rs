//! The Stratum V2 mining endpoint: Noise NX with the pool's authority key, standard and
//! extended channels, and the same [`Backend`] and job source as the V1 server (same share
//! header, same target rule, same one credit per share).
//!
//! What is served:
//! - `SetupConnection` for the Mining protocol, version 2; `REQUIRES_WORK_SELECTION` is refused
//!   (`unsupported-feature-flags`).
//! - `OpenStandardMiningChannel`: `user_identity` is authorized as an SV1 username
//!   (`<quote-id>.<worker>`); the channel gets its own extranonce1 from the backend and the
//!   target of its share difficulty (vardiff, as SV1). Its extranonce prefix is
//!   `extranonce1 ‖ extranonce2` (zeros); the coinbase also carries the job's difficulty tag.
//! - `NewMiningJob` / `SetNewPrevHash` / `SetTarget` as the work and the difficulty change.
//! - `SubmitSharesStandard`: validated as SV1 validates `mining.submit` (version rolling within
//!   [`VERSION_ROLLING_MASK`]), credited through [`Backend::submit`]; `SubmitSharesSuccess` or
//!   `SubmitSharesError` with the spec's codes.
//! - `OpenExtendedMiningChannel`: authorized the same way; the extranonce prefix is the
//!   channel's extranonce1, the client rolls `extranonce2_size` bytes itself
//!   (`NewExtendedMiningJob` carries the coinbase prefix, which ends with the difficulty tag, the
//!   suffix and the merkle path); `SubmitSharesExtended` is validated and credited as above.
//!   Group channels, custom jobs and `UpdateChannel` are not served (ignored).
//! - A new epoch (the backend's notice for a channel's worker) closes that channel
//!   (`CloseChannel`, reason `ehash-epoch-ended: …`).
//! - A frame with more than [`MAX_FRAME_PAYLOAD`] payload bytes closes the connection.

pub mod noise;
mod session;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;

use crate::backend::Backend;
use ehash_protocol::stratum::messages::ErrorCode;
use crate::config::Config;
use crate::job::Template;
use crate::server::{Difficulty, PerIp, Shared, Stats, StatsSnapshot};
use crate::Error;

/// How `CloseChannel.reason_code` begins when a channel's quote's epoch ended (the rest is the V1
/// notice: what to do next).
pub const EPOCH_ENDED: &str = "ehash-epoch-ended";

/// The SV1 error code an SV2 error code stands for (the reverse of what the pool answers):
/// `epoch-closed` and `unavailable` are ehash's own codes, V1's 26 and 27.
pub fn refusal_code(code: &str) -> ErrorCode {
    use mining_sv2::*;
    match code {
        ERROR_CODE_SUBMIT_SHARES_DUPLICATE_SHARE => ErrorCode::DuplicateShare,
        ERROR_CODE_SUBMIT_SHARES_DIFFICULTY_TOO_LOW => ErrorCode::LowDifficulty,
        ERROR_CODE_SUBMIT_SHARES_STALE_SHARE | ERROR_CODE_SUBMIT_SHARES_INVALID_JOB_ID => ErrorCode::JobNotFound,
        EPOCH_CLOSED => ErrorCode::EpochClosed,
        UNAVAILABLE => ErrorCode::Unavailable,
        ERROR_CODE_OPEN_MINING_CHANNEL_UNKNOWN_USER => ErrorCode::Unauthorized,
        _ => ErrorCode::Other,
    }
}

/// The error code of a share or channel refused because its quote's epoch closed (V1's 26).
pub const EPOCH_CLOSED: &str = "epoch-closed";
/// The error code of a share the pool could not record, or a channel it could not authorize
/// (V1's 27): nothing was credited, trying again is safe.
pub const UNAVAILABLE: &str = "unavailable";

/// The largest frame payload a client may send, in bytes (16 KiB): every client message of the
/// Mining protocol fits many times over; a larger frame closes the connection.
pub const MAX_FRAME_PAYLOAD: usize = 16 * 1024;
/// The block-version bits a standard channel may roll (BIP320), as SV2 allows.
pub const VERSION_ROLLING_MASK: u32 = 0x1fff_e000;
/// How long a client has to complete the Noise handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Validity of the certificate the pool signs for each connection with its authority key.
pub const CERT_VALIDITY: Duration = Duration::from_secs(3600);

/// The pool's SV2 authority key: it signs the certificate of every connection's static key;
/// clients are configured with its public key.
#[derive(Clone)]
pub struct AuthorityKey {
    secret: [u8; 32],
    public: [u8; 32],
}

impl std::fmt::Debug for AuthorityKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorityKey").field("public", &self.public_key()).finish_non_exhaustive()
    }
}

impl AuthorityKey {
    /// From a 32-byte secret key.
    pub fn from_secret(secret: [u8; 32]) -> Result<Self, String> {
        let secp = secp256k1_sv2::Secp256k1::signing_only();
        let kp = secp256k1_sv2::Keypair::from_seckey_slice(&secp, &secret).map_err(|e| format!("not a valid secp256k1 secret key: {e}"))?;
        Ok(Self { secret, public: kp.x_only_public_key().0.serialize() })
    }

    /// The x-only public key, raw.
    pub fn public_bytes(&self) -> [u8; 32] {
        self.public
    }

    /// The public key as SV2 clients take it: base58-check of `[1, 0] ‖ x-only key`
    /// (key-utils' `Secp256k1PublicKey`).
    pub fn public_key(&self) -> String {
        match secp256k1_sv2::XOnlyPublicKey::from_slice(&self.public) {
            Ok(k) => key_utils::Secp256k1PublicKey(k).to_string(),
            Err(_) => hex::encode(self.public),
        }
    }

    fn responder(&self) -> Result<Box<noise_sv2::Responder>, String> {
        noise_sv2::Responder::from_authority_kp(&self.public, &self.secret, CERT_VALIDITY).map_err(|e| format!("{e:?}"))
    }
}

/// A running SV2 mining server.
#[derive(Debug, Clone)]
pub struct Sv2Server {
    addr: SocketAddr,
    stats: Arc<Stats>,
}

impl Sv2Server {
    /// Bind `listen` and serve SV2 miners with jobs from `templates` until `cancel` fires. The
    /// V1 settings apply as they do to V1 connections (vardiff, extranonce2 size, connection
    /// caps, idle timeout, workers per connection as channels per connection, shares in flight).
    pub async fn start<B: Backend>(
        listen: SocketAddr,
        authority: AuthorityKey,
        config: Config,
        difficulty: Difficulty,
        backend: Arc<B>,
        templates: watch::Receiver<Arc<Template>>,
        cancel: CancellationToken,
    ) -> Result<Self, Error> {
        // check the key once: a bad key is a start-up error, not one per connection
        authority.responder().map_err(Error::Sv2Authority)?;
        let listener = TcpListener::bind(listen).await.map_err(|source| Error::Listen { addr: listen, source })?;
        let addr = listener.local_addr().map_err(|source| Error::Listen { addr: listen, source })?;
        let limit = Arc::new(Semaphore::new(config.max_connections.max(1)));
        let per_ip = Arc::new(PerIp::default());
        let max_per_ip = config.max_connections_per_ip.max(1);
        let stats = Arc::new(Stats::default());
        let shared = Arc::new(Shared { config, difficulty, backend, templates, stats: stats.clone() });
        tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    _ = cancel.cancelled() => break,
                    r = listener.accept() => match r {
                        Ok(x) => x,
                        Err(e) => {
                            tracing::warn!(error = %e, "sv2 accept");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                let Some(slot) = per_ip.take(peer.ip(), max_per_ip) else {
                    tracing::warn!(%peer, "sv2: per-address connection limit reached; refusing miner");
                    continue;
                };
                let Ok(permit) = limit.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, "sv2: connection limit reached; refusing miner");
                    continue;
                };
                let responder = match authority.responder() {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(error = %e, "sv2: the authority key does not make a responder");
                        continue;
                    }
                };
                let shared = shared.clone();
                let cancel = cancel.clone();
                tokio::spawn(async move {
                    let (_permit, _slot) = (permit, slot);
                    let _ = stream.set_nodelay(true);
                    let (reader, writer) = match noise::accept(stream, responder, HANDSHAKE_TIMEOUT, MAX_FRAME_PAYLOAD).await {
                        Ok(x) => x,
                        Err(e) => {
                            tracing::info!(%peer, error = %e, "sv2: handshake failed; dropping the connection");
                            return;
                        }
                    };
                    session::run(shared, reader, writer, peer, cancel).await;
                });
            }
        });
        Ok(Self { addr, stats })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Counters (rejections by their SV1 code, as the V1 server counts them).
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }
}
