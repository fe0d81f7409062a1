//! The consumer's configuration: the settings it reads, and the defaults
//! that serve nearly every deployment, kept as named constants.

use secrecy::SecretString;
use std::net::SocketAddr;
use std::time::Duration;

use super::cli::ConsumeArgs;
use super::common::CommonConfig;
use super::error::{refuse_placeholder, ConfigError};
use super::history::HistoryConfig;
use super::reconcile::ReconcileConfig;
use super::twilio::{self, SendingConfig, TwilioApiConfig};

/// Unacknowledged deliveries the broker may hand each consumer at once:
/// twice a full batch, so the next one is on hand while one is stored.
const PREFETCH: u16 = 512;

/// Most callbacks stored in one transaction (a delivery carrying more is
/// stored whole): past this, a bigger transaction gains little throughput.
const MAX_BATCH: usize = 256;

/// While the database refuses writes, deliveries are held unacknowledged (a
/// pause must not count against the queue's delivery limit); held this
/// long, they are re-enqueued as fresh copies, well clear of the broker's
/// consumer_timeout (30 min by default).
const HOLD_LIMIT: Duration = Duration::from_secs(600);

/// Database connections beyond one per consumer: pings, recording a sent
/// message, reconciliation and history upkeep share them (the API's reads
/// have a pool of their own, `store::database::READ_POOL`).
pub(super) const POOL_HEADROOM: u32 = 6;

/// The consumer's full configuration. The fields set from constants can be
/// changed in process (tests do).
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub common: CommonConfig,
    pub addr: SocketAddr,
    pub concurrency: usize,
    pub prefetch: u16,
    pub max_batch: usize,
    pub hold_limit: Duration,
    pub auto_migrate: bool,
    /// Whether this worker may relay the feed (always in production; a
    /// test turns it off to leave changes committed but unpublished).
    pub relay_changes: bool,
    pub database_pool_size: u32,
    pub api_token: Option<SecretString>,
    /// Tokens that may only read the API.
    pub api_read_tokens: Vec<SecretString>,
    /// `None`: no Twilio credentials, so no sending and no reconciliation.
    pub twilio_api: Option<TwilioApiConfig>,
    pub sending: Option<SendingConfig>,
    pub reconcile: ReconcileConfig,
    pub history: HistoryConfig,
}

impl WorkerConfig {
    pub fn new(common: CommonConfig, args: ConsumeArgs) -> Result<Self, ConfigError> {
        // Zero concurrency is refused by its range (clap), before this.
        let api_token = args.api_token.filter(|t| !t.is_empty());
        let api_read_tokens: Vec<String> = args
            .api_read_tokens
            .into_iter()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect();
        refuse_placeholder("WORKER_API_TOKEN", api_token.iter())?;
        refuse_placeholder("WORKER_API_READ_TOKENS", api_read_tokens.iter())?;
        let (twilio_api, sending) = twilio::from_args(args.twilio)?;
        // Every consumer holds a connection during its transaction.
        let consumers = u32::try_from(args.concurrency).unwrap_or(u32::MAX);
        Ok(Self {
            common,
            addr: args.addr,
            concurrency: args.concurrency,
            prefetch: PREFETCH,
            max_batch: MAX_BATCH,
            hold_limit: HOLD_LIMIT,
            auto_migrate: args.auto_migrate,
            relay_changes: true,
            database_pool_size: consumers.saturating_add(POOL_HEADROOM),
            api_token: api_token.map(SecretString::from),
            api_read_tokens: api_read_tokens
                .into_iter()
                .map(SecretString::from)
                .collect(),
            twilio_api,
            sending,
            reconcile: ReconcileConfig::from_args(args.reconcile)?,
            history: HistoryConfig::from_args(&args.history),
        })
    }
}
