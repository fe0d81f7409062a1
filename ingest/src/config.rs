//! Ingest configuration: read once from flags and environment variables
//! (names fixed by the contract), validated before anything starts.
//!
//! Every number has a range, checked by clap: a value outside it is a
//! one-line error and exit code 2, never a panic later (an `Instant` plus
//! an absurd timeout overflows; zero HTTP workers is an assertion in
//! actix). The bounds are wide; each says why it stops where it does.

use clap::builder::RangedU64ValueParser;
use clap::{CommandFactory, Parser};
use queue_wire::topology::{Topology, DEFAULT_PREFIX};
use service_kit::telemetry::LogFormat;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use twilio_protocol::keyring::{parse_secret_map, Keyring};
use twilio_protocol::signature::AuthToken;

use crate::publisher::BatchLimits;
use crate::spool::SpoolConfig;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
/// Twilio waits 15 s at most for an answer (its `rt`/`tt` connection
/// overrides stop there): waiting longer for anything serves no one.
const TWILIO_TIMEOUT_MS: u64 = 15_000;

/// What the deployment template (deploy/secret.yaml) puts where a secret
/// goes: a token still holding it was never filled in.

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

    /// Largest accepted request body, in bytes (1 KiB to 4 MiB: Twilio's
    /// callbacks are a few hundred bytes).
    #[arg(
        long,
        hide_env_values = true,
        env = "INGEST_BODY_LIMIT_BYTES",
        default_value_t = 64 * 1024,
        value_parser = RangedU64ValueParser::<usize>::new().range(KIB..=4 * MIB)
    )]
    pub body_limit_bytes: usize,

    /// How long to wait for the broker's publisher confirm before answering
    /// 503 (500 to 15000: Twilio waits 15 s at most).
    #[arg(
        long,
        hide_env_values = true,
        env = "INGEST_CONFIRM_TIMEOUT_MS",
        default_value_t = 5000,
        value_parser = clap::value_parser!(u64).range(500..=TWILIO_TIMEOUT_MS)
    )]
    pub confirm_timeout_ms: u64,

    /// Most callbacks published together in one broker message (1 to 4096).
    #[arg(
        long,
        hide_env_values = true,
        env = "INGEST_BATCH_MAX_CALLBACKS",
        default_value_t = 64,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=4096)
    )]
    pub batch_max_callbacks: usize,

    /// Most body bytes in one broker message, a larger callback going alone
    /// (1 KiB to 16 MiB, RabbitMQ 4's default largest message).
    #[arg(
        long,
        hide_env_values = true,
        env = "INGEST_BATCH_MAX_BYTES",
        default_value_t = 512 * 1024,
        value_parser = RangedU64ValueParser::<usize>::new().range(KIB..=16 * MIB)
    )]
    pub batch_max_bytes: usize,

    /// Batch messages waiting for their confirm at once; callbacks that
    /// arrive while all are in flight go together in the next one (1 to 256).
    #[arg(
        long,
        hide_env_values = true,
        env = "INGEST_BATCHES_IN_FLIGHT",
        default_value_t = 4,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=256)
    )]
    pub batches_in_flight: usize,

    /// Optional wait, in microseconds, before a batch is closed (0: none; a
    /// lone callback goes at once; at most 1 s).
    #[arg(
        long,
        hide_env_values = true,
        env = "INGEST_BATCH_LINGER_US",
        default_value_t = 0,
        value_parser = clap::value_parser!(u64).range(0..=1_000_000)
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
    /// the spool off (callbacks RabbitMQ cannot confirm get 503). At most 1 TiB.
    #[arg(
        long,
        hide_env_values = true,
        env = "INGEST_SPOOL_MAX_BYTES",
        default_value_t = 1 << 30,
        value_parser = clap::value_parser!(u64).range(0..=1 << 40)
    )]
    pub spool_max_bytes: u64,

    /// Size at which a spool segment is sealed and a new one started (64 KiB
    /// to 256 MiB: the drainer reads a segment whole into memory).
    #[arg(
        long,
        hide_env_values = true,
        env = "INGEST_SPOOL_SEGMENT_BYTES",
        default_value_t = 16 << 20,
        value_parser = clap::value_parser!(u64).range(64 * KIB..=256 * MIB)
    )]
    pub spool_segment_bytes: u64,

    /// How long a batch may wait for RabbitMQ's confirm before it is spooled
    /// (at once while RabbitMQ is away or blocking publishers); 10 to 15000.
    #[arg(
        long,
        hide_env_values = true,
        env = "INGEST_SPOOL_AFTER_MS",
        default_value_t = 1000,
        value_parser = clap::value_parser!(u64).range(10..=TWILIO_TIMEOUT_MS)
    )]
    pub spool_after_ms: u64,

    /// How long in-flight requests get to finish after SIGTERM (1 to 600).
    #[arg(
        long,
        hide_env_values = true,
        env = "INGEST_SHUTDOWN_TIMEOUT_SECS",
        default_value_t = 20,
        value_parser = clap::value_parser!(u64).range(1..=600)
    )]
    pub shutdown_timeout_secs: u64,

    /// After SIGTERM, once in-flight requests are done: how long ingest may
    /// keep draining its spool into RabbitMQ before it exits (0: not at
    /// all; at most 3600). What is left stays on disk for the next process
    /// on the directory, or any live one that adopts it. Keep
    /// INGEST_SHUTDOWN_TIMEOUT_SECS plus this within the termination grace
    /// period.
    #[arg(
        long,
        hide_env_values = true,
        env = "INGEST_SHUTDOWN_DRAIN_SECS",
        default_value_t = 25,
        value_parser = clap::value_parser!(u64).range(0..=3600)
    )]
    pub shutdown_drain_secs: u64,

    /// How long an idle client connection is kept open, in seconds (0: close
    /// after each request). Longer than the idle timeout of whatever calls
    /// ingest (AWS ALB 60 s, hyper clients 90 s, Google's load balancers
    /// 600 s), so that the client closes first: a request sent on a
    /// connection the server is closing at that instant fails unanswered.
    /// At most 3600.
    #[arg(
        long,
        hide_env_values = true,
        env = "INGEST_KEEP_ALIVE_SECS",
        default_value_t = 120,
        value_parser = clap::value_parser!(u64).range(0..=3600)
    )]
    pub keep_alive_secs: u64,

    /// Longest time a client may take to send the request body (100 to
    /// 15000: Twilio waits 15 s at most).
    #[arg(
        long,
        hide_env_values = true,
        env = "INGEST_BODY_TIMEOUT_MS",
        default_value_t = 10_000,
        value_parser = clap::value_parser!(u64).range(100..=TWILIO_TIMEOUT_MS)
    )]
    pub body_timeout_ms: u64,

    /// Rebuild the signed URL from X-Forwarded-Proto/X-Forwarded-Host (or
    /// Forwarded) when PUBLIC_BASE_URL is unset. Only behind a proxy that
    /// sets them; PUBLIC_BASE_URL is preferred.
    #[arg(long, hide_env_values = true, env = "INGEST_TRUST_FORWARDED_HEADERS", default_value_t = false, action = clap::ArgAction::Set)]
    pub trust_forwarded_headers: bool,

    /// HTTP worker threads (default: one per core; 1 to 512).
    #[arg(
        long,
        hide_env_values = true,
        env = "INGEST_WORKERS",
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=512)
    )]
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
    /// Names the variable and the entry (an account or key id), never the secret.
    #[error("{variable} still holds the deployment template's REPLACE_ME placeholder{entry}: set the real secret")]
    Placeholder {
        variable: &'static str,
        entry: String,
    },
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
    /// How long the spool may drain into RabbitMQ after the last request.
    pub shutdown_drain: Duration,
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
        refuse_placeholders(&auth_tokens, &account_tokens, &signing_keys)?;
        if service_kit::cli::is_template_placeholder(&args.amqp_url) {
            return Err(ConfigError::Placeholder {
                variable: "AMQP_URL",
                entry: String::new(),
            });
        }
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
            spool: (args.spool_max_bytes > 0).then_some(SpoolConfig {
                dir: args.spool_dir,
                max_bytes: args.spool_max_bytes,
                segment_bytes: args.spool_segment_bytes,
            }),
            spool_after: Duration::from_millis(args.spool_after_ms),
            body_timeout: Duration::from_millis(args.body_timeout_ms),
            trust_forwarded_headers: args.trust_forwarded_headers,
            shutdown_timeout: Duration::from_secs(args.shutdown_timeout_secs),
            shutdown_drain: Duration::from_secs(args.shutdown_drain_secs),
            keep_alive: (args.keep_alive_secs > 0)
                .then(|| Duration::from_secs(args.keep_alive_secs)),
            workers: args.workers,
            topology: Topology::new(args.topology_prefix),
            log_format: args.log_format,
        })
    }
}

/// Refuses a secret that still holds the template's placeholder: ingest
/// would start, answer every callback 403 and look healthy doing it.
fn refuse_placeholders(
    auth_tokens: &[AuthToken],
    account_tokens: &[(String, Vec<AuthToken>)],
    signing_keys: &[(String, Vec<AuthToken>)],
) -> Result<(), ConfigError> {
    let placeholder =
        |secret: &AuthToken| service_kit::cli::is_template_placeholder(secret.expose_secret());
    if auth_tokens.iter().any(placeholder) {
        return Err(ConfigError::Placeholder {
            variable: "TWILIO_AUTH_TOKEN",
            entry: String::new(),
        });
    }
    let maps = [
        ("TWILIO_ACCOUNT_TOKENS", account_tokens),
        ("TWILIO_SIGNING_KEYS", signing_keys),
    ];
    for (variable, entries) in maps {
        for (id, secrets) in entries {
            if secrets.iter().any(placeholder) || service_kit::cli::is_template_placeholder(id) {
                return Err(ConfigError::Placeholder {
                    variable,
                    entry: format!(" (entry {id:?})"),
                });
            }
        }
    }
    Ok(())
}

/// A command-line or environment error as one line that also names the
/// environment variable (`service_kit::cli::describe_parse_error`).
pub fn describe_parse_error(error: &clap::Error) -> String {
    service_kit::cli::describe_parse_error(error, &IngestArgs::command())
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
    fn every_number_out_of_range_is_refused_naming_its_variable() {
        let cases = [
            ("--body-limit-bytes", "0", "INGEST_BODY_LIMIT_BYTES"),
            (
                "--confirm-timeout-ms",
                "18446744073709551615",
                "INGEST_CONFIRM_TIMEOUT_MS",
            ),
            ("--batch-max-callbacks", "0", "INGEST_BATCH_MAX_CALLBACKS"),
            ("--batch-max-bytes", "0", "INGEST_BATCH_MAX_BYTES"),
            ("--batches-in-flight", "0", "INGEST_BATCHES_IN_FLIGHT"),
            ("--batch-linger-us", "1000001", "INGEST_BATCH_LINGER_US"),
            (
                "--spool-max-bytes",
                "1099511627777",
                "INGEST_SPOOL_MAX_BYTES",
            ),
            ("--spool-segment-bytes", "1", "INGEST_SPOOL_SEGMENT_BYTES"),
            ("--spool-after-ms", "0", "INGEST_SPOOL_AFTER_MS"),
            (
                "--shutdown-timeout-secs",
                "0",
                "INGEST_SHUTDOWN_TIMEOUT_SECS",
            ),
            (
                "--shutdown-drain-secs",
                "3601",
                "INGEST_SHUTDOWN_DRAIN_SECS",
            ),
            ("--keep-alive-secs", "99999999999", "INGEST_KEEP_ALIVE_SECS"),
            ("--body-timeout-ms", "0", "INGEST_BODY_TIMEOUT_MS"),
            ("--workers", "0", "INGEST_WORKERS"),
            ("--workers", "many", "INGEST_WORKERS"),
        ];
        for (flag, value, variable) in cases {
            let error = IngestArgs::try_parse_from(["ingest", "--auth-token", "t", flag, value])
                .expect_err(flag);
            let line = describe_parse_error(&error);
            assert!(line.starts_with(&format!("{variable}: ")), "{line}");
            assert!(line.contains(flag), "{line}");
            assert_eq!(line.lines().count(), 1, "{line}");
            assert!(!line.contains("For more information"), "{line}");
        }
        // The bounds themselves are accepted, and so are the defaults.
        for (flag, value) in [
            ("--spool-max-bytes", "0"),
            ("--shutdown-drain-secs", "0"),
            ("--confirm-timeout-ms", "15000"),
            ("--spool-segment-bytes", "65536"),
            ("--workers", "1"),
        ] {
            let parsed = IngestArgs::try_parse_from(["ingest", "--auth-token", "t", flag, value]);
            assert!(parsed.is_ok(), "{flag} {value}");
        }
        let defaults = IngestConfig::try_from(args(&[])).unwrap();
        assert_eq!(defaults.shutdown_drain, Duration::from_secs(25));
    }

    #[test]
    fn a_template_placeholder_is_refused_without_printing_the_secret() {
        let cases: [(&[&str], &str); 5] = [
            (
                &["--auth-token", "good,REPLACE_ME_twilio_auth_token"],
                "TWILIO_AUTH_TOKEN",
            ),
            (
                &[
                    "--auth-token",
                    "t",
                    "--account-tokens",
                    "ACa=real,ACb=x-replace_me-x",
                ],
                "TWILIO_ACCOUNT_TOKENS",
            ),
            (
                &[
                    "--auth-token",
                    "t",
                    "--signing-keys",
                    "k1=REPLACE_ME_secret",
                ],
                "TWILIO_SIGNING_KEYS",
            ),
            (
                &["--account-tokens", "ACa=REPLACE_ME|REPLACE_ME_old"],
                "TWILIO_ACCOUNT_TOKENS",
            ),
            (
                &[
                    "--auth-token",
                    "t",
                    "--amqp-url",
                    "amqps://REPLACE_ME_user:REPLACE_ME_password@rabbit/%2f",
                ],
                "AMQP_URL",
            ),
        ];
        for (argv, variable) in cases {
            let argv = std::iter::once("ingest").chain(argv.iter().copied());
            let error = IngestConfig::try_from(IngestArgs::parse_from(argv)).unwrap_err();
            assert!(
                matches!(&error, ConfigError::Placeholder { variable: v, .. } if *v == variable),
                "{error}"
            );
            let line = error.to_string();
            assert!(line.starts_with(variable), "{line}");
            assert!(
                !line.contains("_secret") && !line.contains("_auth_token"),
                "{line}"
            );
            assert!(!line.contains("x-replace_me-x"), "{line}");
        }
        let named = IngestConfig::try_from(args(&["--account-tokens", "ACb=REPLACE_ME"]))
            .unwrap_err()
            .to_string();
        assert!(named.contains("\"ACb\""), "the entry is named: {named}");
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
