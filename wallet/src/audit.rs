//! Recompute an epoch's books from public data (protocol §12): the pool's signed kind-38180
//! announcement on nostr, and the share log, inclusion proofs and liabilities its mint serves.
//! Used by `ehash audit` and by the proxy to check its own shares.

use std::time::Duration;

use ehash_protocol::audit::{self, InclusionProof, LogShare};
use ehash_protocol::epoch::EpochState;
use ehash_protocol::events::EpochAnnouncement;
use ehash_protocol::work::UnitSize;
use serde::Deserialize;

use crate::announced::fetch_epochs;
use crate::{Error, Result};

/// Most problems listed per check (the count is always reported).
const MAX_LISTED: usize = 10;

/// One check and its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Whether it passed.
    pub ok: bool,
    /// What was checked.
    pub check: &'static str,
    /// What was found.
    pub detail: String,
}

/// An epoch's audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The epoch.
    pub epoch: u32,
    /// Its unit.
    pub unit: String,
    /// Each check, in order.
    pub findings: Vec<Finding>,
}

impl Report {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.findings.iter().all(|f| f.ok)
    }

    fn add(&mut self, ok: bool, check: &'static str, detail: impl Into<String>) {
        self.findings.push(Finding { ok, check, detail: detail.into() });
    }
}

/// The share log as the mint serves it.
#[derive(Debug, Clone, Deserialize)]
pub struct ServedLog {
    /// The epoch.
    pub epoch: u32,
    /// Unit size the mint states.
    pub unit_log2_hashes: u32,
    /// The root it committed to at close.
    pub root: Option<String>,
    /// The shares, in log order.
    pub shares: Vec<LogShare>,
}

/// What the mint says it has signed and taken back in the epoch's keyset.
#[derive(Debug, Clone, Deserialize)]
pub struct Liabilities {
    /// Ecash signed in the keyset (mints and swaps).
    pub signed: u64,
    /// Ecash spent back.
    pub redeemed: u64,
    /// `signed − redeemed`.
    pub outstanding: u64,
}

#[derive(Debug, Deserialize)]
struct ServedProof {
    proof: InclusionProof,
}

fn get<T: serde::de::DeserializeOwned>(url: &str, what: &str) -> impl std::future::Future<Output = Result<T>> {
    let url = url.to_owned();
    let what = what.to_owned();
    async move {
        let r = bitreq::get(url.as_str())
            .with_timeout(30)
            .send_async()
            .await
            .map_err(|e| Error::Pool { url: url.clone(), reason: format!("{what}: {e}") })?;
        if r.status_code != 200 {
            let body: String = r.as_str().unwrap_or("").chars().take(200).collect();
            return Err(Error::Pool { url: url.clone(), reason: format!("{what}: answered {}: {body}", r.status_code) });
        }
        r.json().map_err(|e| Error::Pool { url: url.clone(), reason: format!("{what}: {e}") })
    }
}

/// The pool key `mint_url` names (`GET /v1/ehash/epochs`); pass `--pool` to pin it instead.
pub async fn pool_of(mint_url: &str) -> Result<String> {
    Ok(crate::pool_epochs(mint_url).await?.pool_pubkey)
}

/// One page of a served share log.
#[derive(Debug, Deserialize)]
struct LogPage {
    epoch: u32,
    unit_log2_hashes: u32,
    root: Option<String>,
    shares: Vec<LogShare>,
    /// The last share's id when more may follow.
    next: Option<String>,
}

/// The share log of `epoch` as the mint serves it, read `page` shares at a time (at most
/// [`audit::LOG_PAGE_MAX`]; pass that unless testing the paging).
pub async fn served_log(mint_url: &str, epoch: u32, page: u32) -> Result<ServedLog> {
    let base = format!("{}/v1/ehash/epochs/{epoch}/log?limit={page}", mint_url.trim_end_matches('/'));
    let first: LogPage = get(&base, "the share log").await?;
    let mut log = ServedLog { epoch: first.epoch, unit_log2_hashes: first.unit_log2_hashes, root: first.root, shares: first.shares };
    let mut next = first.next;
    while let Some(after) = next {
        let p: LogPage = get(&format!("{base}&after={after}"), "the share log").await?;
        if p.next.as_ref().is_some_and(|n| *n <= after) {
            return Err(Error::Pool { url: mint_url.to_owned(), reason: format!("the share log's pages do not advance (after {after} came {:?})", p.next) });
        }
        log.shares.extend(p.shares);
        next = p.next;
    }
    Ok(log)
}

/// How a miner's own shares appear in an epoch's log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inclusion {
    /// Shares found with the amount they earned.
    pub included: u64,
    /// Share ids missing from the log.
    pub missing: Vec<String>,
    /// Shares in the log with another amount: (id, logged, expected).
    pub wrong: Vec<(String, u64, u64)>,
    /// Whether the served log hashes to the root the pool committed to at close.
    pub committed: bool,
}

/// Check `mine` (share id, expected amount) against a served log.
pub fn inclusion(log: &ServedLog, mine: &[(String, u64)]) -> Inclusion {
    let by_id: std::collections::HashMap<String, u64> =
        log.shares.iter().enumerate().filter_map(|(i, s)| s.id(i).ok().map(|id| (id, s.amount))).collect();
    let committed = match (audit::root(&log.shares), &log.root) {
        (Ok(r), Some(want)) => hex::encode(r.hash).eq_ignore_ascii_case(want),
        _ => false,
    };
    let mut out = Inclusion { committed, ..Default::default() };
    for (id, want) in mine {
        match by_id.get(id) {
            Some(got) if got == want => out.included += 1,
            Some(got) => out.wrong.push((id.clone(), *got, *want)),
            None => out.missing.push(id.clone()),
        }
    }
    out
}

/// The newest announcement of `epoch` by `pool` for `mint_url` on `relays`.
pub async fn announcement(relays: &[String], pool: &str, mint_url: &str, epoch: u32) -> Result<EpochAnnouncement> {
    fetch_epochs(relays, pool, mint_url)
        .await?
        .into_iter()
        .find(|a| a.epoch == epoch)
        .ok_or_else(|| Error::Nostr(format!("no announcement of epoch {epoch} by pool {pool} for {mint_url} on {relays:?}")))
}

/// The inclusion proof of one share (by share id) as the mint serves it.
pub async fn proof(mint_url: &str, epoch: u32, share_id: &str) -> Result<InclusionProof> {
    let p: ServedProof = get(&format!("{}/v1/ehash/epochs/{epoch}/proof/{share_id}", mint_url.trim_end_matches('/')), "an inclusion proof").await?;
    Ok(p.proof)
}

/// Audit `epoch`: every share real work credited what it earns, the log the one the pool
/// committed to, its total the issued total the pool announced, and no more ecash outstanding
/// than was credited.
pub async fn audit_epoch(mint_url: &str, relays: &[String], pool: &str, epoch: u32) -> Result<Report> {
    let mint = mint_url.trim_end_matches('/');
    let a = announcement(relays, pool, mint, epoch).await?;
    let log = served_log(mint, epoch, audit::LOG_PAGE_MAX).await?;
    let liabilities: Liabilities = get(&format!("{mint}/v1/ehash/epochs/{epoch}/liabilities"), "the liabilities").await?;
    Ok(check(&a, &log, &liabilities))
}

/// The checks of [`audit_epoch`] on data already fetched.
pub fn check(a: &EpochAnnouncement, log: &ServedLog, liabilities: &Liabilities) -> Report {
    let mut r = Report { epoch: a.epoch, unit: a.keyset.unit.to_string(), findings: vec![] };
    if a.state == EpochState::Active {
        r.add(false, "state", format!("epoch {} is still active: its books close when it does", a.epoch));
        return r;
    }
    r.add(log.epoch == a.epoch, "epoch", format!("the mint served the log of epoch {} for epoch {}", log.epoch, a.epoch));
    // unit size: the announcement's, which the pool signed
    let unit = match a.unit_log2.map(UnitSize::new) {
        Some(Ok(u)) => {
            r.add(u.log2() == log.unit_log2_hashes, "unit size", format!("announced 2^{} hashes per ehash, the mint says 2^{}", u.log2(), log.unit_log2_hashes));
            u
        }
        _ => {
            r.add(false, "unit size", "the announcement states no unit size (`unit_size` tag)");
            return r;
        }
    };
    // every share
    let mut bad = vec![];
    let mut last: Option<String> = None;
    for (i, s) in log.shares.iter().enumerate() {
        if let Err(e) = s.check(i, unit) {
            bad.push(e.to_string());
        }
        match s.id(i) {
            Ok(id) => {
                if last.as_ref().is_some_and(|l| *l >= id) {
                    bad.push(audit::AuditError::Order { index: i, id: id.clone() }.to_string());
                }
                last = Some(id);
            }
            Err(e) => bad.push(e.to_string()),
        }
    }
    let n = log.shares.len();
    if bad.is_empty() {
        r.add(true, "shares", format!("{n} shares, each real work at its difficulty and credited what it earns"));
    } else {
        let listed: Vec<String> = bad.iter().take(MAX_LISTED).cloned().collect();
        r.add(false, "shares", format!("{} of {n} shares do not check out: {}", bad.len(), listed.join("; ")));
    }
    // the commitment
    match audit::root(&log.shares) {
        Ok(root) => {
            let hex_root = hex::encode(root.hash);
            match &a.log_root {
                Some(want) => r.add(
                    want.eq_ignore_ascii_case(&hex_root),
                    "commitment",
                    if want.eq_ignore_ascii_case(&hex_root) {
                        format!("the served log hashes to the announced root {want}")
                    } else {
                        format!("the served log hashes to {hex_root}, the pool announced {want}: the log was changed after it was committed")
                    },
                ),
                None => r.add(false, "commitment", "the announcement commits to no share log (`log` tag)"),
            }
            let issued = a.issued.unwrap_or(0);
            r.add(root.sum == issued, "issued", format!("the log credits {} ehash, the pool announced {issued} issued", root.sum));
            let shares = a.shares.unwrap_or(0);
            r.add(n as u64 == shares, "share count", format!("the log holds {n} shares, the pool announced {shares}"));
            r.add(
                liabilities.outstanding <= root.sum,
                "liabilities",
                format!(
                    "{} ehash outstanding at the mint (signed {} − redeemed {}), {} credited{}",
                    liabilities.outstanding,
                    liabilities.signed,
                    liabilities.redeemed,
                    root.sum,
                    if liabilities.outstanding > root.sum { ": the mint issued ehash no share earned" } else { "" }
                ),
            );
        }
        Err(e) => r.add(false, "commitment", format!("the log cannot be hashed: {e}")),
    }
    r
}

/// Wait `timeout` for `f` to succeed (announcements reach relays asynchronously).
pub async fn retry<T, F, Fut>(timeout: Duration, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}
