//! `ehash`: one binary, one subcommand per role. Each role is a library; this is the thin entry
//! point that layers configuration and runs it.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod commands;
mod config;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

/// ehash: a nostr-native market for mining-share ecash.
#[derive(Debug, Parser)]
#[command(name = "ehash", version, about, long_about = None)]
struct Cli {
    /// Configuration file (TOML); defaults to ./ehash.toml if it exists. See ehash.example.toml.
    #[arg(long, global = true, env = "EHASH_CONFIG")]
    config: Option<PathBuf>,
    /// Log filter (on standard error), e.g. `info` (every library's info lines too) or
    /// `ehash_mint_bridge=debug,warn`. Default: warnings and ehash's own info lines; under `up`,
    /// warnings and its own lines (it prints a status line and every trade).
    #[arg(long, global = true, env = "RUST_LOG")]
    log: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the local market: a relay, a pool mint-bridge on a devnet, a simulated miner earning
    /// ehash, an exchange, a sat mint, and a simulated seller and buyer trading. Prints the URLs
    /// and a live status line; Ctrl-C stops it.
    Up(UpArgs),
    /// Run the pool's mint-bridge (Cashu mint, Stratum V1 pool endpoint, nostr announcements),
    /// or operate a running one.
    MintBridge(MintBridgeCmd),
    /// Run the nostr relay.
    Relay(Box<RelayArgs>),
    /// Run the mining proxy (miners connect here; it earns ehash into your wallet), or show a
    /// running proxy's status.
    Proxy(ProxyCmd),
    /// Your ehash wallet: balance, send, receive, history, restore, NIP-60 backup, sat deposits.
    Wallet(WalletCmd),
    /// Trade ehash for sats on an exchange: list the book, offer, take, settle.
    #[command(long_about = commands::trade::LONG_ABOUT)]
    Trade(commands::trade::TradeCmd),
    /// Run a sat mint (Cashu, unit sat): fake Lightning for development, or an LND node.
    #[command(long_about = "Run a sat mint until Ctrl-C: a cdk Cashu mint in unit sat. By default \
        its Lightning backend is fake, so every invoice is paid at once: buyers deposit sats there \
        (`ehash wallet deposit --sat-mint URL AMOUNT`) to buy ehash in a local market; never use \
        it for real money. For real sats set [sat_mint.lightning.lnd] (address, cert_file, \
        macaroon_file): LND is the supported Lightning backend. Settings: [sat_mint].")]
    SatMint(commands::sat_mint::SatMintArgs),
    /// Run the exchange (order books, matching, settlement watching), or verify a running one.
    #[command(long_about = commands::exchange::LONG_ABOUT)]
    Exchange(commands::exchange::ExchangeCmd),
    /// Serve the web UI: the page for trading in a browser, pointed at an exchange.
    #[command(long_about = commands::web::LONG_ABOUT)]
    Web(commands::web::WebArgs),
    /// Recompute a closed epoch's books (share log, issued total, liabilities) from public data.
    #[command(long_about = commands::audit::LONG_ABOUT)]
    Audit(commands::audit::AuditArgs),
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
struct ProxyCmd {
    #[command(subcommand)]
    action: Option<ProxyAction>,
    #[command(flatten)]
    run: ProxyArgs,
}

#[derive(Debug, Subcommand)]
enum ProxyAction {
    /// Show a running proxy's miners, hashrate, shares, credited and minted ehash, and audit.
    Status(ProxyStatusArgs),
}

/// `ehash proxy` flags (each overrides the `[proxy]` config key of the same name).
#[derive(Debug, Args, Default)]
pub struct ProxyArgs {
    /// Stratum V1 listen address for your miners.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// The pool's Stratum endpoint: host:port (V1), or sv2://host:port (V2, encrypted).
    #[arg(long)]
    pub pool: Option<String>,
    /// The pool's Stratum V2 authority public key (printed by the pool at start), for an sv2:// pool.
    #[arg(long)]
    pub pool_authority_key: Option<String>,
    /// The pool's mint URL.
    #[arg(long)]
    pub mint_url: Option<String>,
    /// Where `GET /status` is served.
    #[arg(long)]
    pub status_listen: Option<SocketAddr>,
    /// Data directory (audit log).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Wallet directory (shared with `ehash wallet`).
    #[arg(long)]
    pub wallet_dir: Option<PathBuf>,
    /// Worker name sent to the pool after the quote id.
    #[arg(long)]
    pub worker: Option<String>,
    /// Seconds between minting credited ehash and auditing the pool.
    #[arg(long)]
    pub mint_secs: Option<u64>,
    /// Initial share difficulty exponent for your miners (difficulty 2^N).
    #[arg(long, allow_hyphen_values = true)]
    pub initial_difficulty_exp: Option<i32>,
    /// Lowest share difficulty exponent vardiff may give your miners.
    #[arg(long, allow_hyphen_values = true)]
    pub min_difficulty_exp: Option<i32>,
}

/// `ehash proxy status` flags.
#[derive(Debug, Args)]
pub struct ProxyStatusArgs {
    /// The proxy's status address (default: `[proxy].status_listen`).
    #[arg(long)]
    pub status: Option<SocketAddr>,
    /// Print the raw JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
struct WalletCmd {
    /// Wallet directory (default `[wallet].dir`).
    #[arg(long, global = true)]
    dir: Option<PathBuf>,
    /// The pool's mint URL (default `[wallet].mint_url`).
    #[arg(long, global = true)]
    mint_url: Option<String>,
    /// A relay for announcements and the NIP-60 backup (repeatable; default `[wallet].relays`).
    #[arg(long = "relay", global = true)]
    relays: Vec<String>,
    /// A sat mint (repeatable; default `[trade].sat_mints`): `deposit` uses the first, `balance`
    /// shows the sats at each.
    #[arg(long = "sat-mint", global = true, value_name = "URL")]
    sat_mints: Vec<String>,
    #[command(subcommand)]
    action: WalletAction,
}

/// `ehash wallet` actions.
#[derive(Debug, Subcommand)]
pub enum WalletAction {
    /// Create the wallet and show its seed words once.
    Init,
    /// Balance per epoch unit, and sats at sat mints.
    Balance,
    /// Mint everything the pool credited to this wallet's quotes.
    Mint,
    /// Print the Stratum username to mine straight to the pool into this wallet.
    #[command(long_about = "Print the Stratum username to mine straight to the pool into this \
        wallet: the wallet's NUT-20-locked ehash quote in the active epoch's unit (created if it \
        has none), as `<quote id>.<worker>`. Point any Stratum V1 miner at the pool with it (any \
        password); `ehash wallet mint` then mints what its shares earned, at any time. A quote \
        earns only in its epoch: when the epoch closes the pool answers error 26 and sends a \
        message naming the new unit; run this again for the new username and authorize it (a \
        miner that sends `mining.authorize` can do so on the same connection, no reconnect). \
        `ehash proxy` follows epochs by itself. With --import ID --key SECRET, a quote made \
        elsewhere (POST /v1/mint/quote/ehash, locked to the public key of SECRET) is added to \
        the wallet instead, so `ehash wallet mint` mints its credit too.")]
    Quote {
        /// Worker name appended to the username (`<quote id>.<worker>`), to tell rigs apart.
        #[arg(long, default_value = "rig1")]
        worker: String,
        /// Import this quote id (made elsewhere) instead of using the wallet's own.
        #[arg(long, value_name = "QUOTE_ID", requires = "key")]
        import: Option<String>,
        /// The secret key (hex) whose public key locks the imported quote (NUT-20).
        #[arg(long, value_name = "HEX", requires = "import")]
        key: Option<String>,
    },
    /// Send ehash as a cashuB token.
    Send {
        /// The epoch unit, e.g. hash_3f9a1c2e_7.
        #[arg(long)]
        unit: String,
        /// Amount.
        #[arg(long)]
        amount: u64,
        /// Lock the token to this public key (P2PK, hex).
        #[arg(long)]
        lock: Option<String>,
    },
    /// Receive a token (with relays set, its keyset and the DLEQ proofs it carries are checked
    /// against the pool's announced keysets; a token without DLEQ proofs is received, NUT-12).
    Receive {
        /// The token.
        token: String,
        /// Secret key (hex) for a P2PK-locked token.
        #[arg(long)]
        p2pk_key: Option<String>,
    },
    /// Redeem a redeemable epoch's ehash for sats at the pool's own mint, at the payout rate.
    #[command(long_about = "Redeem a redeemable epoch's ehash for sat ecash at the pool's own mint, \
        at the epoch's payout rate: floor(amount × payout / issued) sats (`ehash wallet balance` and \
        GET /v1/ehash/epochs show each epoch's state and payout). The exchange is atomic at the \
        mint: the ehash is melted only if the sats are credited to this wallet's quote, which is \
        then minted; an interrupted redemption is finished by the next one. Epochs that are still \
        open or closed (block not matured), expired, and amounts worth less than one sat are \
        refused, and nothing is spent.")]
    Redeem {
        /// The epoch unit, e.g. hash_3f9a1c2e_7.
        #[arg(long)]
        unit: String,
        /// Ehash to redeem (default: all of the unit).
        #[arg(long)]
        amount: Option<u64>,
    },
    /// Buy sats at a sat mint over Lightning (to buy ehash with `ehash trade`).
    #[command(long_about = "Buy sats at a sat mint over Lightning, to buy ehash with `ehash trade`: \
        asks the sat mint (--sat-mint URL) for a bolt11 invoice of AMOUNT sats, waits up to --wait \
        seconds for it to be paid, then mints the sats into this wallet. If it is not paid in time, \
        prints the invoice; pay it and collect the sats later with `ehash wallet deposit --sat-mint \
        URL` (no AMOUNT), which first collects every paid deposit at that mint. A development \
        `ehash sat-mint` pays its invoices itself.")]
    Deposit {
        /// Sats to deposit; leave it out to only collect earlier deposits paid since.
        amount: Option<u64>,
        /// Seconds to wait for the invoice to be paid.
        #[arg(long, value_name = "SECS", default_value_t = 60)]
        wait: u64,
    },
    /// Pay a Lightning invoice with this wallet's sats (take sats out).
    #[command(long_about = "Pay a bolt11 Lightning invoice with this wallet's sats (NUT-05 melt): \
        at --mint URL, else at the mint where this wallet holds the most sats, either the pool's \
        mint (sats from `ehash wallet redeem`, if the pool pays Lightning invoices) or a sat mint \
        (--sat-mint or [trade].sat_mints). The mint holds back a routing fee reserve; what the \
        payment does not use comes back. Refused before anything is spent when the sats there do \
        not cover the invoice and the reserve.")]
    Withdraw {
        /// The bolt11 invoice to pay.
        invoice: String,
        /// The mint whose sats pay it (default: where this wallet holds the most sats).
        #[arg(long, value_name = "URL")]
        mint: Option<String>,
    },
    /// Incoming and outgoing transactions.
    History,
    /// Restore from seed words (NUT-09/13) into this wallet directory.
    Restore {
        /// The 12 or 24 seed words, quoted.
        #[arg(long)]
        words: String,
    },
    /// Back up to nostr as NIP-60 events encrypted to your nostr key.
    Backup,
    /// Restore the balance from NIP-60 events with a nostr key alone.
    RestoreNostr {
        /// The nostr secret key (nsec or hex).
        #[arg(long)]
        nsec: String,
    },
}

/// `ehash up` flags.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Data directory of the local market (default `.ehash/up`, or `.ehash/up-<chain>` with
    /// `--chain`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Mine on `devnet` (synthetic, the default), or on a Bitcoin Core node started for the
    /// market: `regtest` (every share is a block) or `signet` (a custom signet anyone may sign
    /// for, about 4.8 M hashes per block). The node is `$EHASH_BITCOIND` or `bitcoind` on PATH.
    #[arg(long, value_parser = ["devnet", "regtest", "signet"])]
    pub chain: Option<String>,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
struct MintBridgeCmd {
    #[command(subcommand)]
    action: Option<MintBridgeAction>,
    #[command(flatten)]
    run: MintBridgeArgs,
}

#[derive(Debug, Subcommand)]
enum MintBridgeAction {
    /// Close the active epoch of a running mint-bridge now (opens the next epoch's unit).
    CloseEpoch(CloseEpochArgs),
}

/// `ehash mint-bridge` flags (each overrides the `[mint_bridge]` config key of the same name).
#[derive(Debug, Args, Default)]
pub struct MintBridgeArgs {
    /// Data directory: seed, keys, SQLite databases.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// HTTP listen address (Cashu API).
    #[arg(long)]
    pub http_listen: Option<SocketAddr>,
    /// Public mint URL, if it differs from http://<http-listen> (e.g. behind a reverse proxy).
    #[arg(long)]
    pub public_url: Option<String>,
    /// Stratum V1 listen address.
    #[arg(long)]
    pub stratum_listen: Option<SocketAddr>,
    /// Pool id used in unit names (1-16 of [0-9a-z]).
    #[arg(long)]
    pub pool_id: Option<String>,
    /// One ehash = 2^N expected hashes.
    #[arg(long)]
    pub unit_log2_hashes: Option<u32>,
    /// Nostr relay to announce on (repeatable; replaces the configured list).
    #[arg(long = "relay")]
    pub relays: Vec<String>,
    /// PostgreSQL URL; uses PostgreSQL instead of SQLite for the mint and the share ledger.
    #[arg(long)]
    pub postgres_url: Option<String>,
    /// Devnet network difficulty exponent: a share meeting DIFF1/2^N is a block.
    #[arg(long, allow_hyphen_values = true)]
    pub network_difficulty_exp: Option<i32>,
    /// Initial share difficulty exponent (difficulty 2^N).
    #[arg(long, allow_hyphen_values = true)]
    pub initial_difficulty_exp: Option<i32>,
    /// Lowest share difficulty exponent vardiff may assign.
    #[arg(long, allow_hyphen_values = true)]
    pub min_difficulty_exp: Option<i32>,
}

/// `ehash mint-bridge close-epoch` flags.
#[derive(Debug, Args)]
pub struct CloseEpochArgs {
    /// The mint-bridge's data directory (where admin.token is).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The mint-bridge's URL (default: from the configuration).
    #[arg(long)]
    pub url: Option<String>,
}

/// `ehash relay` flags (each overrides the `[relay]` config key of the same name; see
/// ehash.example.toml for defaults).
#[derive(Debug, Args, Default)]
pub struct RelayArgs {
    /// LMDB data directory (also holds expiry.sqlite).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Listen address: WebSocket, NIP-11, /health and /metrics on one port.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// The URL clients use, e.g. wss://relay.example.com behind a TLS reverse proxy; NIP-42 AUTH
    /// events must name it (or one of --also-url).
    #[arg(long)]
    pub public_url: Option<String>,
    /// Another URL clients reach the relay at (repeatable): NIP-42 AUTH events naming it are
    /// accepted too (`public_urls` in the configuration).
    #[arg(long = "also-url")]
    pub public_urls: Vec<String>,
    /// LMDB map size in bytes (the most the database can grow to).
    #[arg(long)]
    pub map_size: Option<usize>,
    /// A pool key (hex or npub) allowed to publish mint and epoch announcements (repeatable).
    #[arg(long = "pool-key")]
    pub pool_keys: Vec<String>,
    /// An exchange key (hex or npub) allowed to publish trade events (repeatable).
    #[arg(long = "exchange-key")]
    pub exchange_keys: Vec<String>,
    /// A kind to accept besides the built-in allow-list (repeatable).
    #[arg(long = "extra-kind")]
    pub extra_kinds: Vec<u16>,
    /// Seconds between sweeps that delete NIP-40-expired events from disk.
    #[arg(long)]
    pub expiry_sweep_secs: Option<u64>,
    /// Open connections in total.
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Open connections from one IP address.
    #[arg(long)]
    pub max_connections_per_ip: Option<usize>,
    /// Largest WebSocket message, bytes.
    #[arg(long)]
    pub max_message_bytes: Option<usize>,
    /// Largest event, bytes.
    #[arg(long)]
    pub max_event_bytes: Option<usize>,
    /// EVENTs per minute per client address (all its connections together).
    #[arg(long)]
    pub events_per_minute: Option<u32>,
    /// REQs, COUNTs and NEG-OPENs per minute per client address (all its connections together).
    #[arg(long)]
    pub reqs_per_minute: Option<u32>,
    /// Messages of any kind per minute per connection; exceeding it closes the connection.
    #[arg(long)]
    pub messages_per_minute: Option<u32>,
    /// Open subscriptions per connection.
    #[arg(long)]
    pub max_subscriptions: Option<usize>,
    /// Filters in one REQ.
    #[arg(long)]
    pub max_filters: Option<usize>,
    /// Largest filter limit honoured (larger ones are lowered).
    #[arg(long)]
    pub max_limit: Option<usize>,
    /// Longest subscription id.
    #[arg(long)]
    pub max_subid_length: Option<usize>,
    /// Most ids, authors, kinds or tag values in one filter.
    #[arg(long)]
    pub max_filter_values: Option<usize>,
    /// Seconds an event's created_at may be ahead of the relay's clock; later ones are refused.
    #[arg(long)]
    pub max_future_secs: Option<u64>,
    /// Seconds a client may leave messages unread before it is disconnected.
    #[arg(long)]
    pub slow_consumer_secs: Option<u64>,
    /// NIP-11 name.
    #[arg(long)]
    pub name: Option<String>,
    /// NIP-11 description.
    #[arg(long)]
    pub description: Option<String>,
    /// NIP-11 operator public key (hex).
    #[arg(long)]
    pub operator_pubkey: Option<String>,
    /// NIP-11 contact URI.
    #[arg(long)]
    pub contact: Option<String>,
}

/// The log filter without `--log` or `RUST_LOG`: warnings, and the info lines of ehash's own
/// crates (`ehash` is a prefix of `ehash_mint_bridge` and the others). Slow-query warnings of
/// cdk's SQL stores and of sqlx (whose slow statement is printed whole: a migration's script on
/// a busy machine) need no action and are left out.
const DEFAULT_LOG: &str = "warn,ehash=info,cdk_sql_common=error,sqlx=error";
/// The same for `ehash up`, which prints its own status and event lines: of the services it runs,
/// only warnings.
const UP_LOG: &str = "warn,ehash::commands=info,cdk_sql_common=error,sqlx=error";

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let default_log = if matches!(cli.command, Command::Up(_)) { UP_LOG } else { DEFAULT_LOG };
    let log = cli.log.as_deref().unwrap_or(default_log);
    let filter = tracing_subscriber::EnvFilter::try_new(log)
        .map_err(|e| anyhow::anyhow!("--log (or RUST_LOG) {log:?} is not a log filter ({e}); try `info`, `warn` or `ehash_mint_bridge=debug,warn`"))?;
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let file = config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Up(args) => commands::up::run(file, args).await,
        Command::MintBridge(MintBridgeCmd { action: Some(MintBridgeAction::CloseEpoch(args)), .. }) => {
            commands::mint_bridge::close_epoch(file, args).await
        }
        Command::MintBridge(MintBridgeCmd { action: None, run }) => commands::mint_bridge::run(file, run).await,
        Command::Relay(args) => commands::relay::run(file, *args).await,
        Command::Proxy(ProxyCmd { action: Some(ProxyAction::Status(args)), .. }) => commands::proxy::status(file, args).await,
        Command::Proxy(ProxyCmd { action: None, run }) => commands::proxy::run(file, run).await,
        Command::Wallet(w) => {
            let mut c = file.wallet.clone();
            if let Some(d) = w.dir {
                c.dir = d;
            }
            if let Some(u) = w.mint_url {
                c.mint_url = u;
            }
            if !w.relays.is_empty() {
                c.relays = w.relays;
            }
            let sat_mints = if w.sat_mints.is_empty() { file.trade.sat_mints.clone() } else { w.sat_mints };
            commands::wallet::run(c, w.action, sat_mints).await
        }
        Command::Trade(t) => commands::trade::run(file, t).await,
        Command::SatMint(args) => commands::sat_mint::run(file, args).await,
        Command::Exchange(commands::exchange::ExchangeCmd { action: Some(commands::exchange::ExchangeAction::Verify(args)), .. }) => {
            commands::exchange::verify(file, args).await
        }
        Command::Exchange(commands::exchange::ExchangeCmd { action: None, run }) => commands::exchange::run(file, run).await,
        Command::Web(args) => commands::web::run(file, args).await,
        Command::Audit(args) => commands::audit::run(file, args).await,
    }
}
