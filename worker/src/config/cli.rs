//! The command line: the consumer's flags, the subcommands and the settings
//! they share. Every flag has an environment variable; only secrets hide
//! their values from `--help`.

use clap::{Args, Parser, Subcommand};
use service_kit::cli::SharedArgs;
use std::net::SocketAddr;

use super::history::HistoryArgs;
use super::reconcile::ReconcileArgs;
use super::twilio::TwilioArgs;

#[derive(Debug, Parser)]
#[command(
    name = "worker",
    version,
    about = "Consumes Twilio status callbacks from RabbitMQ and records them in Postgres",
    long_about = "Consumes Twilio status callbacks from RabbitMQ, de-duplicates them and records \
every status event in Postgres (message_status_events) with a current state per message \
(messages) that never moves backwards. Transient failures are retried with growing delays; \
what cannot be processed goes to the dead-letter queue.\n\n\
With no subcommand it consumes, serving GET /healthz, /readyz and /metrics on WORKER_ADDR, \
and the API (GET /messages/{MessageSid}, GET /stats, POST /messages) behind \
WORKER_API_TOKEN (or, for reads, WORKER_API_READ_TOKENS). Stops gracefully on SIGTERM/SIGINT.\n\n\
Every numeric setting has a range; a value outside it, or a secret still holding REPLACE_ME, \
exits with code 2."
)]
pub struct WorkerCli {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub consume: ConsumeArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply the database migrations and exit.
    Migrate,
    /// Inspect and replay the dead-letter queue.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Look up, once, the messages still without a final status in Twilio's
    /// Messages API and record what it says (as the consumer does every 15
    /// minutes). Prints one JSON line per message.
    Reconcile(ReconcileCommand),
    /// Look after the event history once (as the consumer does every hour):
    /// create the day partitions ahead of need and drop the days past
    /// WORKER_RETENTION_DAYS. Prints one JSON line per day dropped. Writes go
    /// on meanwhile.
    Retention(RetentionCommand),
}

#[derive(Debug, Args)]
pub struct RetentionCommand {
    /// Print the days that would be dropped, but drop nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub history: HistoryArgs,
}

#[derive(Debug, Args)]
pub struct ReconcileCommand {
    /// Ask Twilio and print what would be recorded, but write nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub twilio: TwilioArgs,
    #[command(flatten)]
    pub reconcile: ReconcileArgs,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Print each dead letter as one JSON line: reason, attempts, MessageSid, first failure time.
    List,
    /// Move dead letters back to the main queue to be processed again.
    Replay {
        /// Replay at most this many.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Delete every dead letter.
    Purge {
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

/// What every subcommand takes: the broker, topology and logging shared
/// with ingest, plus the database and the retry schedule.
#[derive(Debug, Args)]
pub struct CommonArgs {
    #[command(flatten)]
    pub shared: SharedArgs,

    /// Postgres connection URL (may hold a password).
    #[arg(
        long,
        global = true,
        hide_env_values = true,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/twilio_status"
    )]
    pub database_url: String,

    /// Delays between processing attempts after a transient failure, in ms;
    /// after the last one a callback is dead-lettered.
    #[arg(
        long,
        global = true,
        env = "WORKER_RETRY_DELAYS_MS",
        value_parser = clap::value_parser!(u64).range(1..=86_400_000),
        default_value = "1000,5000,30000,120000",
        value_delimiter = ','
    )]
    pub retry_delays_ms: Vec<u64>,

    /// Publish every change of a message's status to the change feed (the
    /// `<prefix>.changes` exchange). `false` records and publishes none.
    #[arg(
        long,
        global = true,
        env = "WORKER_CHANGE_FEED",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub change_feed: bool,
}

/// Settings only the consumer (no subcommand) uses.
#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// Listen address of the health, metrics and read API port.
    #[arg(long, env = "WORKER_ADDR", default_value = "127.0.0.1:8081")]
    pub addr: SocketAddr,

    /// Consumers on their own channels, each storing its batches in its own
    /// transaction: how many transactions the worker keeps in flight. The
    /// database pool is sized from it.
    #[arg(
        long,
        env = "WORKER_CONCURRENCY",
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=64),
        default_value_t = 2
    )]
    pub concurrency: usize,

    /// Apply migrations at start (`false` when `worker migrate` runs separately).
    #[arg(long, env = "WORKER_AUTO_MIGRATE", default_value_t = true, action = clap::ArgAction::Set)]
    pub auto_migrate: bool,

    /// Bearer token (`Authorization: Bearer ...`) every API route requires:
    /// GET /messages..., GET /stats, POST /messages. The probes and /metrics
    /// need none. When WORKER_ADDR is not a loopback address and no token is
    /// set, every API route is refused.
    #[arg(long, env = "WORKER_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,

    /// Comma-separated bearer tokens that may only read (GET /messages...,
    /// GET /stats): for dashboards and support staff.
    #[arg(
        long,
        env = "WORKER_API_READ_TOKENS",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub api_read_tokens: Vec<String>,

    #[command(flatten)]
    pub twilio: TwilioArgs,

    #[command(flatten)]
    pub reconcile: ReconcileArgs,

    #[command(flatten)]
    pub history: HistoryArgs,
}
