//! Why the configuration was refused (exit code 2).

use queue_wire::broker::InvalidAmqpUrl;
use service_kit::cli::InvalidBaseUrl;
use twilio_protocol::keyring::SecretMapError;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("TWILIO_AUTH_TOKEN is not set (nor TWILIO_ACCOUNT_TOKENS)")]
    NoAuthToken,
    #[error("TWILIO_ACCOUNT_TOKENS: {0}")]
    AccountTokens(#[source] SecretMapError),
    #[error("TWILIO_SIGNING_KEYS: {0}")]
    SigningKeys(#[source] SecretMapError),
    #[error("PUBLIC_BASE_URL: {0}")]
    PublicBaseUrl(#[from] InvalidBaseUrl),
    #[error("AMQP_URL is not a valid AMQP URL: {0}")]
    AmqpUrl(#[source] InvalidAmqpUrl),
    /// Names the variable and the entry (an account or key id), never the secret.
    #[error("{variable} still holds the deployment template's REPLACE_ME placeholder{entry}: set the real secret")]
    Placeholder {
        variable: &'static str,
        entry: String,
    },
}
