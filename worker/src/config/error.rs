//! Why a configuration is refused (exit code 2, one line on stderr).

use queue_wire::broker::InvalidAmqpUrl;
use service_kit::cli::InvalidBaseUrl;
use twilio_protocol::keyring::SecretMapError;
use twilio_protocol::status::{MessageStatus, UnknownStatus};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("AMQP_URL is not a valid AMQP URL: {0}")]
    AmqpUrl(#[source] InvalidAmqpUrl),
    #[error("DATABASE_URL must be a postgres:// URL")]
    DatabaseUrl,
    #[error("WORKER_RETRY_DELAYS_MS needs at least one delay")]
    RetryDelays,
    #[error("sending needs TWILIO_AUTH_TOKEN or TWILIO_API_KEY_SID with TWILIO_API_KEY_SECRET")]
    SendingCredentials,
    #[error("PUBLIC_BASE_URL must be an http(s)://host[:port] URL (the StatusCallback of sent messages)")]
    SendingCallbackUrl(#[source] InvalidBaseUrl),
    #[error("TWILIO_API_BASE_URL must be an http(s) URL")]
    TwilioApiBaseUrl(#[source] InvalidBaseUrl),
    #[error("TWILIO_ACCOUNT_TOKENS: {0}")]
    AccountTokens(#[source] SecretMapError),
    #[error(transparent)]
    ReconcileAfter(#[from] AfterError),
    #[error("{0} still holds the template's placeholder REPLACE_ME: set a real secret")]
    TemplateSecret(&'static str),
    #[error("reconciliation needs Twilio API credentials: TWILIO_ACCOUNT_SID with TWILIO_AUTH_TOKEN (or an API key pair), or TWILIO_ACCOUNT_TOKENS")]
    NoApiCredentials,
}

/// Why `WORKER_RECONCILE_AFTER` is refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AfterError {
    #[error("WORKER_RECONCILE_AFTER: {0:?} is not status=duration")]
    NotStatusDuration(String),
    #[error("WORKER_RECONCILE_AFTER: {0:?} is not a message status")]
    UnknownStatus(String, #[source] UnknownStatus),
    #[error("WORKER_RECONCILE_AFTER: {0} is final, nothing to reconcile")]
    FinalStatus(MessageStatus),
    #[error("WORKER_RECONCILE_AFTER: {0:?}: {1}")]
    Duration(String, #[source] humantime::DurationError),
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
