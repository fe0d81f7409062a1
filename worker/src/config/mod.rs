//! Worker configuration and command line: read once, validated before
//! anything starts.

mod history;
mod reconcile;
mod twilio;

pub use history::{HistoryArgs, HistoryConfig};
pub use reconcile::{ReconcileArgs, ReconcileConfig};
pub use twilio::{ApiCredentials, SendingConfig, TwilioApiConfig, TwilioArgs};

use clap::{Args, Parser, Subcommand};
use queue_wire::topology::{Topology, DEFAULT_PREFIX};
use secrecy::SecretString;
use service_kit::telemetry::LogFormat;
use std::net::SocketAddr;
use std::time::Duration;

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
    /// Messages API and record what it says (as the consumer does every
    /// WORKER_RECONCILE_INTERVAL_SECS). Prints one JSON line per message.
    Reconcile(Box<ReconcileCommand>),
    /// Look after the event history once (as the consumer does every
    /// WORKER_HISTORY_UPKEEP_SECS): create the day partitions ahead of need
    /// and drop the days past WORKER_RETENTION_DAYS. Prints one JSON line
    /// per day dropped. Writes go on meanwhile.
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

#[derive(Debug, Args)]
pub struct CommonArgs {
    /// RabbitMQ connection URL.
    #[arg(
        long,
        global = true,
        hide_env_values = true,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: String,

    /// Postgres connection URL.
    #[arg(
        long,
        global = true,
        hide_env_values = true,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/twilio_status"
    )]
    pub database_url: String,

    /// Name prefix of the exchange and queues.
    #[arg(long, global = true, hide_env_values = true, env = "AMQP_TOPOLOGY_PREFIX", default_value = DEFAULT_PREFIX)]
    pub topology_prefix: String,

    /// Delays between processing attempts after a transient failure, in ms;
    /// after the last one a callback is dead-lettered.
    #[arg(
        long,
        global = true,
        hide_env_values = true,
        env = "WORKER_RETRY_DELAYS_MS",
        value_parser = clap::value_parser!(u64).range(1..=86_400_000),
        default_value = "1000,5000,30000,120000",
        value_delimiter = ','
    )]
    pub retry_delays_ms: Vec<u64>,

    /// Log format.
    #[arg(
        long,
        global = true,
        hide_env_values = true,
        env = "LOG_FORMAT",
        value_enum,
        default_value = "json"
    )]
    pub log_format: LogFormat,
}

/// Settings only the consumer (no subcommand) uses.
#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// Listen address of the health, metrics and read API port.
    #[arg(
        long,
        hide_env_values = true,
        env = "WORKER_ADDR",
        default_value = "127.0.0.1:8081"
    )]
    pub addr: SocketAddr,

    /// Consumers on their own channels, each storing its batches in its own
    /// transaction: how many transactions the worker keeps in flight.
    #[arg(
        long,
        hide_env_values = true,
        env = "WORKER_CONCURRENCY",
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=64),
        default_value_t = 2
    )]
    pub concurrency: usize,

    /// Unacknowledged deliveries the broker may hand each consumer at once.
    #[arg(
        long,
        hide_env_values = true,
        env = "WORKER_PREFETCH",
        value_parser = clap::value_parser!(u16).range(1..),
        default_value_t = 512
    )]
    pub prefetch: u16,

    /// Most callbacks persisted in one transaction (a delivery carrying more
    /// is persisted whole).
    #[arg(
        long,
        hide_env_values = true,
        env = "WORKER_MAX_BATCH",
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000),
        default_value_t = 256
    )]
    pub max_batch: usize,

    /// While the database refuses writes, deliveries are held unacknowledged
    /// (a pause must not count against the queue's delivery limit). Held this
    /// long, they are re-enqueued as fresh copies, which keeps them clear of
    /// the broker's consumer_timeout (30 min by default). Seconds.
    #[arg(
        long,
        hide_env_values = true,
        env = "WORKER_HOLD_LIMIT_SECS",
        value_parser = clap::value_parser!(u64).range(1..=1_500),
        default_value_t = 600
    )]
    pub hold_limit_secs: u64,

    /// Apply migrations at start (`false` when `worker migrate` runs separately).
    #[arg(long, hide_env_values = true, env = "WORKER_AUTO_MIGRATE", default_value_t = true, action = clap::ArgAction::Set)]
    pub auto_migrate: bool,

    /// Database connection pool size (at least WORKER_CONCURRENCY + 1).
    #[arg(
        long,
        hide_env_values = true,
        env = "DATABASE_POOL_SIZE",
        value_parser = clap::value_parser!(u32).range(1..=1_000),
        default_value_t = 8
    )]
    pub database_pool_size: u32,

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

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("AMQP_URL is not a valid AMQP URL: {0}")]
    AmqpUrl(String),
    #[error("DATABASE_URL must be a postgres:// URL")]
    DatabaseUrl,
    #[error("WORKER_RETRY_DELAYS_MS needs at least one delay")]
    RetryDelays,
    #[error("sending needs TWILIO_AUTH_TOKEN or TWILIO_API_KEY_SID with TWILIO_API_KEY_SECRET")]
    SendingCredentials,
    #[error("PUBLIC_BASE_URL must be an http(s)://host[:port] URL (the StatusCallback of sent messages)")]
    SendingCallbackUrl,
    #[error("TWILIO_API_BASE_URL must be an http(s) URL")]
    TwilioApiBaseUrl,
    #[error("TWILIO_ACCOUNT_TOKENS: {0}")]
    AccountTokens(String),
    #[error("{0}")]
    Reconcile(String),
    #[error("{0} still holds the template's placeholder REPLACE_ME: set a real secret")]
    TemplateSecret(&'static str),
    #[error("reconciliation needs Twilio API credentials: TWILIO_ACCOUNT_SID with TWILIO_AUTH_TOKEN (or an API key pair), or TWILIO_ACCOUNT_TOKENS")]
    NoApiCredentials,
}

/// What every subcommand needs.
#[derive(Clone, Debug)]
pub struct CommonConfig {
    pub amqp_url: String,
    pub database_url: String,
    pub topology: Topology,
    pub log_format: LogFormat,
}

impl TryFrom<CommonArgs> for CommonConfig {
    type Error = ConfigError;

    fn try_from(args: CommonArgs) -> Result<Self, ConfigError> {
        refuse_placeholder("AMQP_URL", std::iter::once(&args.amqp_url))?;
        refuse_placeholder("DATABASE_URL", std::iter::once(&args.database_url))?;
        queue_wire::broker::validate_amqp_url(&args.amqp_url).map_err(ConfigError::AmqpUrl)?;
        let scheme_ok = args.database_url.starts_with("postgres://")
            || args.database_url.starts_with("postgresql://");
        if !scheme_ok || args.database_url.len() <= "postgres://".len() {
            return Err(ConfigError::DatabaseUrl);
        }
        if args.retry_delays_ms.is_empty() {
            return Err(ConfigError::RetryDelays);
        }
        let delays = args
            .retry_delays_ms
            .iter()
            .map(|ms| Duration::from_millis(*ms))
            .collect();
        Ok(Self {
            amqp_url: args.amqp_url,
            database_url: args.database_url,
            topology: Topology::new(args.topology_prefix).with_retry_delays(delays),
            log_format: args.log_format,
        })
    }
}

/// The consumer's full configuration.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub common: CommonConfig,
    pub addr: SocketAddr,
    pub concurrency: usize,
    pub prefetch: u16,
    pub max_batch: usize,
    pub hold_limit: Duration,
    pub auto_migrate: bool,
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
        // Zero concurrency, prefetch, batch or hold limit is refused by
        // their ranges (clap), before this.
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
        Ok(Self {
            common,
            addr: args.addr,
            concurrency: args.concurrency,
            prefetch: args.prefetch,
            max_batch: args.max_batch,
            hold_limit: Duration::from_secs(args.hold_limit_secs),
            auto_migrate: args.auto_migrate,
            // Every consumer holds a connection during its transaction; one more
            // serves pings and the read API.
            database_pool_size: args
                .database_pool_size
                .max(args.concurrency.saturating_add(1) as u32),
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

/// Refuses a secret copied from a template without being filled in.
pub(crate) fn refuse_placeholder<'a>(
    variable: &'static str,
    mut values: impl Iterator<Item = &'a String>,
) -> Result<(), ConfigError> {
    if values.any(|value| service_kit::cli::is_template_placeholder(value)) {
        return Err(ConfigError::TemplateSecret(variable));
    }
    Ok(())
}

/// What the one-shot `worker reconcile` needs.
#[derive(Clone, Debug)]
pub struct ReconcileRunConfig {
    pub dry_run: bool,
    pub twilio_api: TwilioApiConfig,
    pub reconcile: ReconcileConfig,
}

impl ReconcileRunConfig {
    pub fn new(command: Box<ReconcileCommand>) -> Result<Self, ConfigError> {
        let command = *command;
        let (twilio_api, _) = twilio::from_args(command.twilio)?;
        Ok(Self {
            dry_run: command.dry_run,
            twilio_api: twilio_api.ok_or(ConfigError::NoApiCredentials)?,
            reconcile: ReconcileConfig::from_args(command.reconcile)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn common(extra: &[&str]) -> Result<CommonConfig, ConfigError> {
        let mut argv = vec!["worker"];
        argv.extend_from_slice(extra);
        CommonConfig::try_from(WorkerCli::parse_from(argv).common)
    }

    #[test]
    fn defaults_are_valid() {
        let config = common(&[]).unwrap();
        assert_eq!(config.topology.retry_delays().len(), 4);
        assert_eq!(config.topology.main_queue(), "twilio.status.events");
    }

    #[test]
    fn refuses_bad_urls_and_delays() {
        assert!(matches!(
            common(&["--amqp-url", "x"]),
            Err(ConfigError::AmqpUrl(_))
        ));
        assert_eq!(
            common(&["--database-url", "mysql://x"]).unwrap_err(),
            ConfigError::DatabaseUrl
        );
        assert!(WorkerCli::try_parse_from(["worker", "--retry-delays-ms", "0"]).is_err());
    }

    fn worker_config(extra: &[&str]) -> Result<WorkerConfig, ConfigError> {
        let mut argv = vec!["worker"];
        argv.extend_from_slice(extra);
        let cli = WorkerCli::parse_from(argv);
        WorkerConfig::new(CommonConfig::try_from(cli.common)?, cli.consume)
    }

    #[test]
    fn sending_is_off_without_an_account_and_checked_with_one() {
        assert!(worker_config(&[]).unwrap().sending.is_none());
        let account = ["--twilio-account-sid", "AC123"];
        assert_eq!(
            worker_config(&account).unwrap_err(),
            ConfigError::SendingCredentials
        );
        let with_token = [&account[..], &["--twilio-auth-token", "t"]].concat();
        // Without PUBLIC_BASE_URL the API serves reconciliation, not sending.
        let reconcile_only = worker_config(&with_token).unwrap();
        assert!(reconcile_only.sending.is_none());
        assert!(reconcile_only.twilio_api.is_some());
        let bad_url = [&with_token[..], &["--public-base-url", "hooks.example.com"]].concat();
        assert_eq!(
            worker_config(&bad_url).unwrap_err(),
            ConfigError::SendingCallbackUrl
        );
        let complete = [
            &with_token[..],
            &["--public-base-url", "https://hooks.example.com/"],
        ]
        .concat();
        let config = worker_config(&complete).unwrap();
        let sending = config.sending.unwrap();
        assert_eq!(
            sending.status_callback_url,
            "https://hooks.example.com/twilio/status"
        );
        let api = config.twilio_api.unwrap();
        assert_eq!(api.main.as_ref().unwrap().1.username, "AC123");
        assert!(
            !format!("{api:?}").contains("\"t\""),
            "secret in Debug output"
        );
        let with_key = [
            &account[..],
            &[
                "--twilio-api-key-sid",
                "SK1",
                "--twilio-api-key-secret",
                "s",
                "--public-base-url",
                "http://h",
            ],
        ]
        .concat();
        let api = worker_config(&with_key).unwrap().twilio_api.unwrap();
        assert_eq!(api.main.unwrap().1.username, "SK1");
    }

    #[test]
    fn api_credentials_are_chosen_per_account() {
        use secrecy::ExposeSecret;
        let config = worker_config(&[
            "--twilio-account-sid",
            "ACmain",
            "--twilio-auth-token",
            "main-new,main-old",
            "--twilio-account-tokens",
            "ACsub=sub-new|sub-old",
            "--public-base-url",
            "http://h",
        ])
        .unwrap();
        let api = config.twilio_api.unwrap();
        let (account, credentials) = api.credentials_for(Some("ACsub")).unwrap();
        assert_eq!(
            (account.as_str(), credentials.username.as_str()),
            ("ACsub", "ACsub")
        );
        assert_eq!(credentials.password.expose_secret(), "sub-new");
        // Unlisted: the main account's credentials, on the message's account.
        let (account, credentials) = api.credentials_for(Some("ACother")).unwrap();
        assert_eq!(
            (account.as_str(), credentials.username.as_str()),
            ("ACother", "ACmain")
        );
        assert_eq!(credentials.password.expose_secret(), "main-new");
        let (account, _) = api.credentials_for(None).unwrap();
        assert_eq!(account, "ACmain");

        // Subaccount tokens alone: the API is on, sending is not.
        let only_subaccounts = worker_config(&["--twilio-account-tokens", "ACsub=t"]).unwrap();
        assert!(only_subaccounts.sending.is_none());
        let api = only_subaccounts.twilio_api.unwrap();
        assert!(api.credentials_for(Some("ACsub")).is_some());
        assert!(api.credentials_for(Some("ACother")).is_none());
    }

    #[test]
    fn template_placeholders_are_refused() {
        assert_eq!(
            worker_config(&["--api-token", "REPLACE_ME_long_random_token"]).unwrap_err(),
            ConfigError::TemplateSecret("WORKER_API_TOKEN")
        );
        assert_eq!(
            worker_config(&["--api-read-tokens", "fine,REPLACE_ME"]).unwrap_err(),
            ConfigError::TemplateSecret("WORKER_API_READ_TOKENS")
        );
        assert_eq!(
            worker_config(&["--twilio-auth-token", "REPLACE_ME_twilio_auth_token"]).unwrap_err(),
            ConfigError::TemplateSecret("TWILIO_AUTH_TOKEN")
        );
        assert_eq!(
            common(&["--database-url", "postgres://REPLACE_ME_user:p@db/x"]).unwrap_err(),
            ConfigError::TemplateSecret("DATABASE_URL")
        );
        let message = ConfigError::TemplateSecret("WORKER_API_TOKEN").to_string();
        assert!(!message.contains("long_random"), "{message}");
        let config = worker_config(&["--api-token", "t", "--api-read-tokens", "r1, r2,"]).unwrap();
        assert_eq!(config.api_read_tokens.len(), 2);
    }

    #[test]
    fn numeric_settings_have_ranges() {
        for (flag, value) in [
            ("--concurrency", "0"),
            ("--concurrency", "65"),
            ("--prefetch", "0"),
            ("--max-batch", "0"),
            ("--hold-limit-secs", "0"),
            ("--hold-limit-secs", "1801"),
            ("--database-pool-size", "0"),
            ("--retry-delays-ms", "5,0"),
            ("--reconcile-max-checks", "0"),
            ("--history-upkeep-secs", "1"),
            ("--prefetch", "70000"),
        ] {
            let parsed = WorkerCli::try_parse_from(["worker", flag, value]);
            let error = parsed.expect_err(&format!("{flag} {value} accepted"));
            let line = service_kit::cli::one_line(&error.to_string());
            assert!(line.contains(flag), "{flag} {value}: {line}");
            assert!(!line.contains("--help"), "{line}");
            assert!(!line.contains('\n'));
        }
        assert!(WorkerCli::try_parse_from(["worker", "--concurrency", "64"]).is_ok());
    }

    #[test]
    fn subcommands_parse() {
        let cli = WorkerCli::parse_from(["worker", "dlq", "purge", "--yes"]);
        assert!(matches!(
            cli.command,
            Some(Command::Dlq(DlqCommand::Purge { yes: true }))
        ));
        let cli = WorkerCli::parse_from(["worker", "migrate"]);
        assert!(matches!(cli.command, Some(Command::Migrate)));
        let cli = WorkerCli::parse_from(["worker", "reconcile", "--dry-run"]);
        assert!(matches!(
            cli.command,
            Some(Command::Reconcile(command)) if command.dry_run
        ));
    }
}
