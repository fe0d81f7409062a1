//! The configuration ingest runs on, validated once from `IngestArgs`.

use queue_wire::topology::Topology;
use service_kit::telemetry::LogFormat;
use std::net::SocketAddr;
use std::time::Duration;
use twilio_protocol::keyring::{read_secret_map, Keyring};
use twilio_protocol::signature::AuthToken;

use super::args::IngestArgs;
use super::error::ConfigError;
use crate::publisher::BatchLimits;
use crate::spool::SpoolConfig;

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
    /// `BatchLimits::DEFAULT`; a field so that tests can change it.
    pub batching: BatchLimits,
    /// `None`: no spool (INGEST_SPOOL_MAX_BYTES=0).
    pub spool: Option<SpoolConfig>,
    /// Derived from the confirm timeout (`publisher::spool_after`).
    pub spool_after: Duration,
    /// `body::BODY_TIMEOUT`; a field so that tests can change it.
    pub body_timeout: Duration,
    pub trust_forwarded_headers: bool,
    /// How long the spool may drain into RabbitMQ after the last request.
    pub shutdown_drain: Duration,
    /// HTTP worker threads; `None` (always, outside tests): actix's default,
    /// one per core.
    pub workers: Option<usize>,
    pub topology: Topology,
    pub log_format: LogFormat,
}

impl TryFrom<IngestArgs> for IngestConfig {
    type Error = ConfigError;

    fn try_from(args: IngestArgs) -> Result<Self, ConfigError> {
        let keyring = keyring(&args)?;
        let amqp_url = args.shared.amqp_url;
        if service_kit::cli::is_template_placeholder(&amqp_url) {
            return Err(ConfigError::Placeholder {
                variable: "AMQP_URL",
                entry: String::new(),
            });
        }
        let public_base_url = args
            .public_base_url
            .filter(|url| !url.trim().is_empty())
            .map(|url| service_kit::cli::parse_base_url(&url))
            .transpose()?;
        queue_wire::broker::check_amqp_url(&amqp_url).map_err(ConfigError::AmqpUrl)?;
        let confirm_timeout = Duration::from_millis(args.confirm_timeout_ms);
        Ok(Self {
            keyring,
            public_base_url,
            addr: args.addr,
            amqp_url,
            body_limit_bytes: args.body_limit_bytes,
            confirm_timeout,
            batching: BatchLimits::DEFAULT,
            spool: (args.spool_max_bytes > 0)
                .then(|| SpoolConfig::new(args.spool_dir, args.spool_max_bytes)),
            spool_after: crate::publisher::spool_after(confirm_timeout),
            body_timeout: crate::body::BODY_TIMEOUT,
            trust_forwarded_headers: args.trust_forwarded_headers,
            shutdown_drain: Duration::from_secs(args.shutdown_drain_secs),
            workers: None,
            topology: Topology::new(args.shared.topology_prefix),
            log_format: args.shared.log_format,
        })
    }
}

/// Every secret that may sign a callback, from the three secret settings.
fn keyring(args: &IngestArgs) -> Result<Keyring, ConfigError> {
    let auth_tokens: Vec<AuthToken> = args
        .auth_token
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(AuthToken::new)
        .collect();
    let account_tokens = read_secret_map(args.account_tokens.as_deref().unwrap_or_default())
        .map_err(ConfigError::AccountTokens)?;
    let signing_keys = read_secret_map(args.signing_keys.as_deref().unwrap_or_default())
        .map_err(ConfigError::SigningKeys)?;
    refuse_placeholders(&auth_tokens, &account_tokens, &signing_keys)?;
    if auth_tokens.is_empty() && account_tokens.is_empty() {
        return Err(ConfigError::NoAuthToken);
    }
    let keyring = account_tokens
        .into_iter()
        .fold(Keyring::new(auth_tokens), |ring, (sid, tokens)| {
            ring.with_account(sid, tokens)
        });
    Ok(signing_keys
        .into_iter()
        .fold(keyring, |ring, (key, secrets)| {
            ring.with_shared_key(key, secrets)
        }))
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
