//! Ingest configuration: read once from flags and environment variables
//! (names fixed by the contract), validated before anything starts.

use clap::Parser;
use queue_wire::topology::{Topology, DEFAULT_PREFIX};
use service_kit::telemetry::LogFormat;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use twilio_protocol::keyring::{parse_secret_map, Keyring};
use twilio_protocol::signature::AuthToken;

use crate::publisher::BatchLimits;
use crate::spool::SpoolConfig;

#[derive(Debug, Parser)]
#[command(
    name = "ingest",
    version,
    about = "Receives Twilio message status callbacks, verifies X-Twilio-Signature and publishes them to RabbitMQ",
    long_about = "Receives Twilio message status callbacks on POST /twilio/status, verifies \
X-Twilio-Signature exactly as Twilio's SDKs do (the auth token of the callback's account, or \
the SharedKey its X-Twilio-Webhooks-Signature-Settings names), publishes the raw callback to a \
durable RabbitMQ quorum queue and answers 200 only once the broker has confirmed it.\n\n\
Also serves GET /healthz, GET /readyz and GET /metrics. Stops gracefully on SIGTERM/SIGINT."
)]
pub struct IngestArgs {
    /// Auth token(s) of the main account, which also serve every account not in
    /// TWILIO_ACCOUNT_TOKENS; comma-separated to rotate without downtime.
    /// Required unless TWILIO_ACCOUNT_TOKENS is set.
    #[arg(long, env = "TWILIO_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,

    /// Per-account tokens, `ACxxx=token1|token2,ACyyy=token3`: a callback is
    /// verified with the tokens of the AccountSid it carries (subaccounts).
    #[arg(long, env = "TWILIO_ACCOUNT_TOKENS", hide_env_values = true)]
    pub account_tokens: Option<String>,

    /// SharedKey secrets, `KEY_ID=SECRET,...`: a callback whose
    /// X-Twilio-Webhooks-Signature-Settings names a key is verified with its
    /// secret, under HMAC_SHA1 or HMAC_SHA256 as the header says.
    #[arg(long, env = "TWILIO_SIGNING_KEYS", hide_env_values = true)]
    pub signing_keys: Option<String>,

    /// scheme://host[:port] Twilio calls; the signed URL is this + path + query.
    /// Unset: rebuilt from the request as http://<Host header>.
    #[arg(long, hide_env_values = true, env = "PUBLIC_BASE_URL")]
    pub public_base_url: Option<String>,

    /// Listen address.
    #[arg(
        long,
        hide_env_values = true,
        env = "INGEST_ADDR",
        default_value = "127.0.0.1:8080"
    )]
    pub addr: SocketAddr,

    /// RabbitMQ connection URL.
    #[arg(
        long,
        hide_env_values = true,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: String,

    /// Largest accepted request body, in bytes.
    #[arg(long, hide_env_values = true, env = "INGEST_BODY_LIMIT_BYTES", default_value_t = 64 * 1024)]
    pub body_limit_bytes: usize,

    /// How long to wait for the broker's publisher confirm before answering 503.
    #[arg(
        long,
        hide_env_values = true,
        env = "INGEST_CONFIRM_TIMEOUT_MS",
        default_value_t = 5000
    )]
    pub confirm_timeout_ms: u64,

    /// Most callbacks published together in one broker message.
    #[arg(
        long,
        hide_env_values = true,
        env = "INGEST_BATCH_MAX_CALLBACKS",
        default_value_t = 64
    )]
    pub batch_max_callbacks: usize,

    /// Most body bytes in one broker message (a larger callback goes alone).
    #[arg(long, hide_env_values = true, env = "INGEST_BATCH_MAX_BYTES", default_value_t = 512 * 1024)]
    pub batch_max_bytes: usize,

    /// Batch messages waiting for their confirm at once; callbacks that
    /// arrive while all are in flight go together in the next one.
    #[arg(
        long,
        hide_env_values = true,
        env = "INGEST_BATCHES_IN_FLIGHT",
        default_value_t = 4
    )]
    pub batches_in_flight: usize,

    /// Optional wait, in microseconds, before a batch is closed (0: none; a
    /// lone callback goes at once).
    #[arg(
        long,
        hide_env_values = true,
        env = "INGEST_BATCH_LINGER_US",
        default_value_t = 0
    )]
    pub batch_linger_us: u64,

    /// Directory of the durable local spool (callbacks RabbitMQ cannot
    /// confirm in time wait here). Each process locks a directory of its
    /// own: this one, or `ingest-N` inside it when another process holds it.
    #[arg(
        long,
        hide_env_values = true,
        env = "INGEST_SPOOL_DIR",
        default_value = "ingest-spool"
    )]
    pub spool_dir: PathBuf,

    /// Largest size of the spool on disk; full, callbacks get 503. 0 turns
    /// the spool off (callbacks RabbitMQ cannot confirm get 503).
    #[arg(long, hide_env_values = true, env = "INGEST_SPOOL_MAX_BYTES", default_value_t = 1 << 30)]
    pub spool_max_bytes: u64,

    /// Size at which a spool segment is sealed and a new one started.
    #[arg(long, hide_env_values = true, env = "INGEST_SPOOL_SEGMENT_BYTES", default_value_t = 16 << 20)]
    pub spool_segment_bytes: u64,

    /// How long a batch may wait for RabbitMQ's confirm before it is spooled
    /// (at once while RabbitMQ is away or blocking publishers).
    #[arg(
        long,
        hide_env_values = true,
        env = "INGEST_SPOOL_AFTER_MS",
        default_value_t = 1000
    )]
    pub spool_after_ms: u64,

    /// How long in-flight requests get to finish after SIGTERM.
    #[arg(
        long,
        hide_env_values = true,
        env = "INGEST_SHUTDOWN_TIMEOUT_SECS",
        default_value_t = 20
    )]
    pub shutdown_timeout_secs: u64,

    /// How long an idle client connection is kept open, in seconds (0: close
    /// after each request). Longer than the idle timeout of whatever calls
    /// ingest (AWS ALB 60 s, hyper clients 90 s, Google's load balancers
    /// 600 s), so that the client closes first: a request sent on a
    /// connection the server is closing at that instant fails unanswered.
    #[arg(
        long,
        hide_env_values = true,
        env = "INGEST_KEEP_ALIVE_SECS",
        default_value_t = 120
    )]
    pub keep_alive_secs: u64,

    /// Longest time a client may take to send the request body.
    #[arg(
        long,
        hide_env_values = true,
        env = "INGEST_BODY_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub body_timeout_ms: u64,

    /// Rebuild the signed URL from X-Forwarded-Proto/X-Forwarded-Host (or
    /// Forwarded) when PUBLIC_BASE_URL is unset. Only behind a proxy that
    /// sets them; PUBLIC_BASE_URL is preferred.
    #[arg(long, hide_env_values = true, env = "INGEST_TRUST_FORWARDED_HEADERS", default_value_t = false, action = clap::ArgAction::Set)]
    pub trust_forwarded_headers: bool,

    /// HTTP worker threads (default: one per core).
    #[arg(long, hide_env_values = true, env = "INGEST_WORKERS")]
    pub workers: Option<usize>,

    /// Name prefix of the exchange and queues.
    #[arg(long, hide_env_values = true, env = "AMQP_TOPOLOGY_PREFIX", default_value = DEFAULT_PREFIX)]
    pub topology_prefix: String,

    /// Log format.
    #[arg(
        long,
        hide_env_values = true,
        env = "LOG_FORMAT",
        value_enum,
        default_value = "json"
    )]
    pub log_format: LogFormat,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("TWILIO_AUTH_TOKEN is not set (nor TWILIO_ACCOUNT_TOKENS)")]
    NoAuthToken,
    #[error("TWILIO_ACCOUNT_TOKENS: {0}")]
    AccountTokens(String),
    #[error("TWILIO_SIGNING_KEYS: {0}")]
    SigningKeys(String),
    #[error("PUBLIC_BASE_URL {0:?} is not an http(s)://host[:port] URL")]
    PublicBaseUrl(String),
    #[error("AMQP_URL is not a valid AMQP URL: {0}")]
    AmqpUrl(String),
    #[error("INGEST_BODY_LIMIT_BYTES must be above zero")]
    BodyLimit,
    #[error("INGEST_BATCH_MAX_CALLBACKS, INGEST_BATCH_MAX_BYTES and INGEST_BATCHES_IN_FLIGHT must be above zero")]
    Batching,
}

#[derive(Clone, Debug)]
pub struct IngestConfig {
    /// Every secret that may sign a callback.
    pub keyring: Keyring,
    /// Without a trailing slash.
    pub public_base_url: Option<String>,
    pub addr: SocketAddr,
    pub amqp_url: String,
    pub body_limit_bytes: usize,
    pub confirm_timeout: Duration,
    pub batching: BatchLimits,
    /// `None`: no spool (INGEST_SPOOL_MAX_BYTES=0).
    pub spool: Option<SpoolConfig>,
    pub spool_after: Duration,
    pub body_timeout: Duration,
    pub trust_forwarded_headers: bool,
    pub shutdown_timeout: Duration,
    /// `None`: no keep-alive.
    pub keep_alive: Option<Duration>,
    pub workers: Option<usize>,
    pub topology: Topology,
    pub log_format: LogFormat,
}

impl TryFrom<IngestArgs> for IngestConfig {
    type Error = ConfigError;

    fn try_from(args: IngestArgs) -> Result<Self, ConfigError> {
        let auth_tokens: Vec<AuthToken> = args
            .auth_token
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(AuthToken::new)
            .collect();
        let account_tokens = parse_secret_map(args.account_tokens.as_deref().unwrap_or_default())
            .map_err(ConfigError::AccountTokens)?;
        let signing_keys = parse_secret_map(args.signing_keys.as_deref().unwrap_or_default())
            .map_err(ConfigError::SigningKeys)?;
        if auth_tokens.is_empty() && account_tokens.is_empty() {
            return Err(ConfigError::NoAuthToken);
        }
        let keyring = account_tokens
            .into_iter()
            .fold(Keyring::new(auth_tokens), |ring, (sid, tokens)| {
                ring.with_account(sid, tokens)
            });
        let keyring = signing_keys
            .into_iter()
            .fold(keyring, |ring, (key, secrets)| {
                ring.with_shared_key(key, secrets)
            });
        let public_base_url = args
            .public_base_url
            .filter(|url| !url.trim().is_empty())
            .map(|url| parse_base_url(&url))
            .transpose()?;
        queue_wire::broker::validate_amqp_url(&args.amqp_url).map_err(ConfigError::AmqpUrl)?;
        if args.body_limit_bytes == 0 {
            return Err(ConfigError::BodyLimit);
        }
        if args.batch_max_callbacks == 0 || args.batch_max_bytes == 0 || args.batches_in_flight == 0
        {
            return Err(ConfigError::Batching);
        }
        Ok(Self {
            keyring,
            public_base_url,
            addr: args.addr,
            amqp_url: args.amqp_url,
            body_limit_bytes: args.body_limit_bytes,
            confirm_timeout: Duration::from_millis(args.confirm_timeout_ms),
            batching: BatchLimits {
                max_callbacks: args.batch_max_callbacks,
                max_bytes: args.batch_max_bytes,
                in_flight: args.batches_in_flight,
                linger: Duration::from_micros(args.batch_linger_us),
            },
            spool: (args.spool_max_bytes > 0).then(|| SpoolConfig {
                dir: args.spool_dir,
                max_bytes: args.spool_max_bytes,
                segment_bytes: args.spool_segment_bytes.max(64 * 1024),
            }),
            spool_after: Duration::from_millis(args.spool_after_ms),
            body_timeout: Duration::from_millis(args.body_timeout_ms.max(1)),
            trust_forwarded_headers: args.trust_forwarded_headers,
            shutdown_timeout: Duration::from_secs(args.shutdown_timeout_secs),
            keep_alive: (args.keep_alive_secs > 0)
                .then(|| Duration::from_secs(args.keep_alive_secs)),
            workers: args.workers,
            topology: Topology::new(args.topology_prefix),
            log_format: args.log_format,
        })
    }
}

fn parse_base_url(raw: &str) -> Result<String, ConfigError> {
    let trimmed = raw.trim().trim_end_matches('/');
    let invalid = || ConfigError::PublicBaseUrl(raw.to_owned());
    let (scheme, rest) = trimmed.split_once("://").ok_or_else(invalid)?;
    let scheme_ok = scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https");
    let host = rest.split(['/', ':']).next().unwrap_or("");
    if !scheme_ok || host.is_empty() || rest.contains(['?', '#', ' ']) {
        return Err(invalid());
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> IngestArgs {
        let mut argv = vec!["ingest", "--auth-token", "a, b"];
        argv.extend_from_slice(extra);
        IngestArgs::parse_from(argv)
    }

    #[test]
    fn reads_main_account_and_key_secrets() {
        let config = IngestConfig::try_from(args(&[
            "--account-tokens",
            "ACsub=s1|s2",
            "--signing-keys",
            "k1=secret",
        ]))
        .unwrap();
        let ring = &config.keyring;
        assert!(ring.select(Some("ACother"), None).is_ok());
        assert!(ring.select(Some("ACsub"), None).is_ok());
        assert!(ring.select(None, Some("key=k1")).is_ok());
        assert!(ring.select(None, Some("key=k2")).is_err());
        // Subaccount tokens alone are a valid configuration.
        let only_accounts = IngestArgs::parse_from(["ingest", "--account-tokens", "ACsub=s1"]);
        let ring = IngestConfig::try_from(only_accounts).unwrap().keyring;
        assert!(ring.select(Some("ACsub"), None).is_ok());
        assert!(ring.select(Some("ACother"), None).is_err());
    }

    #[test]
    fn refuses_malformed_secret_maps() {
        let err = IngestConfig::try_from(args(&["--account-tokens", "ACsub"])).unwrap_err();
        assert!(matches!(err, ConfigError::AccountTokens(_)), "{err}");
        let err = IngestConfig::try_from(args(&["--signing-keys", "k1="])).unwrap_err();
        assert!(matches!(err, ConfigError::SigningKeys(_)), "{err}");
    }

    #[test]
    fn normalises_and_checks_the_public_base_url() {
        let ok = IngestConfig::try_from(args(&[
            "--public-base-url",
            "https://hooks.example.com:8443/",
        ]))
        .unwrap();
        assert_eq!(
            ok.public_base_url.as_deref(),
            Some("https://hooks.example.com:8443")
        );
        for bad in ["hooks.example.com", "ftp://x", "https://", "https://h?x=1"] {
            let err = IngestConfig::try_from(args(&["--public-base-url", bad])).unwrap_err();
            assert_eq!(err, ConfigError::PublicBaseUrl(bad.to_owned()));
        }
    }

    #[test]
    fn refuses_empty_token_and_bad_amqp_url() {
        let no_token = IngestArgs::parse_from(["ingest", "--auth-token", " , "]);
        assert_eq!(
            IngestConfig::try_from(no_token).unwrap_err(),
            ConfigError::NoAuthToken
        );
        let bad_url = IngestConfig::try_from(args(&["--amqp-url", "not a url"])).unwrap_err();
        assert!(matches!(bad_url, ConfigError::AmqpUrl(_)));
    }
}
