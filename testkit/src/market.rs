//! A whole local market for tests: a relay that knows the pool's and the exchange's keys, a pool
//! mint-bridge at a fixed share difficulty (every share earns exactly [`CREDIT`] ehash and no
//! share is ever a block), and a development sat mint.

use std::path::{Path, PathBuf};

use ehash_mint_bridge::MintBridge;
use ehash_relay::Relay;
use ehash_satmint::SatMint;
use ehash_wallet::MinerWallet;
use ehash_protocol::events::{Offer, OfferStatus};
use ehash_protocol::market::{Price, Side};
use nostr_sdk::prelude::{Keys, PublicKey, Timestamp};

/// Ehash earned per share at the fixed test difficulty (2^-18 with 2^12 hashes per unit).
pub const CREDIT: u64 = 4;

/// A mint-bridge configuration with a fixed share difficulty of 2^-18, 2^12 hashes per ehash
/// unit (so every share earns [`CREDIT`]) and a devnet where no share is a block.
pub fn pool_config(dir: &Path) -> ehash_mint_bridge::Config {
    let mut c = ehash_mint_bridge::Config {
        data_dir: dir.to_path_buf(),
        http_listen: "127.0.0.1:0".parse().expect("address"),
        stratum_listen: "127.0.0.1:0".parse().expect("address"),
        pool_id: Some("t".into()),
        unit_log2_hashes: 12,
        ..Default::default()
    };
    c.stratum.initial_difficulty_exp = -18;
    c.stratum.min_difficulty_exp = -18;
    c.stratum.max_difficulty_exp = -18;
    c.devnet.network_difficulty_exp = 60;
    c.devnet.job_refresh_secs = 3600;
    // redeemed sats can be withdrawn, as on `ehash up`
    c.lightning = Some(ehash_lightning::Lightning::Fake);
    c
}

/// Close `pool`'s active epoch on a found block at `height` whose coinbase pays `reward` sats,
/// then let the block mature: the epoch becomes redeemable.
pub async fn close_on_matured_block(pool: &MintBridge, height: u32, reward: u64) {
    let header = bitcoin::block::Header {
        version: bitcoin::block::Version::from_consensus(0x2000_0000),
        prev_blockhash: bitcoin::hashes::Hash::all_zeros(),
        merkle_root: bitcoin::hashes::Hash::all_zeros(),
        time: 1_700_000_000,
        bits: bitcoin::CompactTarget::from_consensus(0x207f_ffff),
        nonce: 0,
    };
    pool.epochs().close_active(ehash_protocol::epoch::CloseReason::Block, Some((height, &header, reward))).await.expect("the epoch closes");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    pool.epochs().advance(height + pool.epochs().payout_config().maturity_blocks, now).await.expect("the block matures");
}

/// A running local market.
pub struct Market {
    /// Root directory.
    pub dir: PathBuf,
    /// The relay.
    pub relay: Relay,
    /// The pool.
    pub pool: MintBridge,
    /// The sat mint (`None` while stopped).
    pub sats: Option<SatMint>,
    /// The sat mint's URL (the same across restarts).
    pub sat_url: String,
    /// The pool's nostr keys.
    pub pool_keys: Keys,
    /// The exchange's nostr keys (allowed to publish trades on the relay).
    pub exchange_keys: Keys,
    sat_config: ehash_satmint::Config,
}

impl Market {
    /// Start a relay, a pool and a sat mint charging `sat_fee_ppk` per input, under `dir`.
    pub async fn start(dir: &Path, sat_fee_ppk: u64) -> Self {
        let pool_keys = Keys::generate();
        let exchange_keys = Keys::generate();
        let relay = Relay::start(&ehash_relay::Config {
            data_dir: dir.join("relay"),
            listen: "127.0.0.1:0".parse().expect("address"),
            map_size: 256 << 20,
            pool_keys: vec![pool_keys.public_key().to_hex()],
            exchange_keys: vec![exchange_keys.public_key().to_hex()],
            // every party of a test market shares loopback, and budgets are per address
            limits: ehash_relay::Limits { events_per_minute: 6000, reqs_per_minute: 6000, ..Default::default() },
            ..Default::default()
        })
        .await
        .expect("relay starts");
        let mut c = pool_config(&dir.join("pool"));
        c.relays = vec![relay.url().to_owned()];
        c.nostr_secret_key = Some(pool_keys.secret_key().to_secret_hex());
        let pool = MintBridge::start(c).await.expect("pool starts");
        let sat_config = ehash_satmint::Config {
            data_dir: dir.join("sat-mint"),
            listen: "127.0.0.1:0".parse().expect("address"),
            input_fee_ppk: sat_fee_ppk,
            ..Default::default()
        };
        let sats = SatMint::start(&sat_config).await.expect("sat mint starts");
        let sat_config = ehash_satmint::Config { listen: sats.local_addr(), ..sat_config };
        let sat_url = sats.url().to_owned();
        Self { dir: dir.to_path_buf(), relay, pool, sats: Some(sats), sat_url, pool_keys, exchange_keys, sat_config }
    }

    /// Stop the sat mint (its port is closed: requests fail as with a mint that is down).
    pub async fn stop_sat_mint(&mut self) {
        if let Some(s) = self.sats.take() {
            s.shutdown().await;
        }
    }

    /// Start the sat mint again on its old port and database.
    pub async fn restart_sat_mint(&mut self) {
        if self.sats.is_none() {
            self.sats = Some(SatMint::start(&self.sat_config).await.expect("sat mint restarts"));
        }
    }

    /// The active epoch's unit.
    pub async fn unit(&self) -> String {
        self.pool.epochs().current().await.expect("an active epoch").unit
    }

    /// Mine `shares` shares into `wallet` through the pool's Stratum endpoint and mint them;
    /// returns the unit.
    pub async fn earn(&self, wallet: &MinerWallet, shares: u64) -> String {
        let unit = self.unit().await;
        let quote = wallet.quote_for(&unit).await.expect("quote");
        let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(7);
        let got = ehash_sim_miner::client::submit_shares(self.pool.stratum_addr(), &format!("{quote}.t"), shares, seed)
            .await
            .expect("shares submitted");
        assert_eq!(got, shares, "every share accepted");
        wallet.mint_all_credited().await.expect("minted");
        unit
    }

    /// Deposit `sats` into `wallet` at the sat mint.
    pub async fn fund(&self, wallet: &MinerWallet, sats: u64) {
        match wallet.deposit(&self.sat_url, sats, std::time::Duration::from_secs(10)).await.expect("deposit") {
            ehash_wallet::DepositOutcome::Minted(n) => assert_eq!(n, sats),
            other => panic!("the development sat mint did not pay: {other:?}"),
        }
    }

    /// Settings of an exchange on this market: its keys (the relay accepts its trades), data
    /// under the market's directory, `lot`, and settlement windows of `lock`, `claim` and
    /// `margin` seconds with a 2-second grace; both mints polled every second.
    pub fn exchange_config(&self, lot: u64, lock: u64, claim: u64, margin: u64) -> ehash_exchange::Config {
        ehash_exchange::Config {
            data_dir: self.dir.join("exchange"),
            listen: "127.0.0.1:0".parse().expect("address"),
            relays: vec![self.relay.url().to_owned()],
            nostr_secret_key: Some(self.exchange_keys.secret_key().to_secret_hex()),
            lot,
            lock_secs: lock,
            claim_secs: claim,
            margin_secs: margin,
            grace_secs: 2,
            poll_secs: 1,
            // every mint of a test market is on loopback
            private_mints: true,
            ..Default::default()
        }
    }

    /// Settings of a trade agent on this market: its relay and sat mint, accepting locktime
    /// margins from 5 seconds (tests use short windows).
    pub fn trade_config(&self) -> ehash_wallet::agent::TradeConfig {
        ehash_wallet::agent::TradeConfig {
            relays: vec![self.relay.url().to_owned()],
            sat_mints: vec![self.sat_url.clone()],
            min_margin_secs: 5,
            ..Default::default()
        }
    }

    /// An open offer on this market's pool and sat mint, to be signed by the caller: `amount`
    /// ehash of `unit` (keyset `market`), at least one `lot`, at `sats_per_lot`, to `exchange`,
    /// expiring in ten minutes.
    #[allow(clippy::too_many_arguments)]
    pub fn offer(&self, id: String, side: Side, market: &str, unit: &str, amount: u64, sats_per_lot: u64, lot: u64, exchange: PublicKey) -> Offer {
        Offer {
            id,
            side,
            status: OfferStatus::Pending,
            market: market.into(),
            unit: unit.into(),
            mint_url: self.pool.mint_url().into(),
            pool: self.pool_keys.public_key(),
            sat_mints: vec![self.sat_url.clone()],
            amount,
            min: lot,
            price: Price::new(sats_per_lot, lot).expect("a positive price and lot"),
            exchange,
            expiration: Timestamp::now().as_secs() + 600,
            note: String::new(),
        }
    }

    /// Stop everything.
    pub async fn shutdown(mut self) {
        self.stop_sat_mint().await;
        self.pool.shutdown().await;
        self.relay.shutdown();
    }
}
