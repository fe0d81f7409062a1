//! Sending through Twilio's Messages API (`POST /messages`): its flags and
//! the validated configuration, off unless an account SID is set.

use clap::Args;
use secrecy::SecretString;

use super::ConfigError;

/// Sending messages through Twilio's Messages API (POST /messages).
#[derive(Debug, Args)]
pub struct SendingArgs {
    /// Twilio account SID; sending is off when unset.
    #[arg(long, hide_env_values = true, env = "TWILIO_ACCOUNT_SID")]
    pub twilio_account_sid: Option<String>,

    /// Auth token of the account (or use an API key pair).
    #[arg(long, env = "TWILIO_AUTH_TOKEN", hide_env_values = true)]
    pub twilio_auth_token: Option<String>,

    /// API key SID, used with TWILIO_API_KEY_SECRET instead of the auth token.
    #[arg(long, hide_env_values = true, env = "TWILIO_API_KEY_SID")]
    pub twilio_api_key_sid: Option<String>,

    /// Secret of the API key named by TWILIO_API_KEY_SID.
    #[arg(long, env = "TWILIO_API_KEY_SECRET", hide_env_values = true)]
    pub twilio_api_key_secret: Option<String>,

    /// Base URL of Twilio's REST API (tests point it at a fake).
    #[arg(
        long,
        hide_env_values = true,
        env = "TWILIO_API_BASE_URL",
        default_value = "https://api.twilio.com"
    )]
    pub twilio_api_base_url: String,

    /// scheme://host[:port] where ingest is reachable; StatusCallback is this + /twilio/status.
    #[arg(long, hide_env_values = true, env = "PUBLIC_BASE_URL")]
    pub public_base_url: Option<String>,
}

/// How to reach Twilio's Messages API.
#[derive(Clone, Debug)]
pub struct SendingConfig {
    pub account_sid: String,
    /// HTTP Basic user: the API key SID, or the account SID.
    pub username: String,
    pub password: SecretString,
    /// Without a trailing slash.
    pub api_base_url: String,
    pub status_callback_url: String,
}

impl SendingConfig {
    pub(super) fn from_args(args: SendingArgs) -> Result<Option<Self>, ConfigError> {
        // `VAR=` (set but empty) counts as unset.
        let present = |value: Option<String>| value.filter(|v| !v.trim().is_empty());
        let Some(account_sid) = present(args.twilio_account_sid) else {
            return Ok(None);
        };
        let (username, password) = match (
            present(args.twilio_api_key_sid),
            present(args.twilio_api_key_secret),
            present(args.twilio_auth_token),
        ) {
            (Some(key), Some(secret), _) => (key, secret),
            (None, None, Some(token)) => (account_sid.clone(), token),
            _ => return Err(ConfigError::SendingCredentials),
        };
        let base = present(args.public_base_url)
            .map(|url| url.trim().trim_end_matches('/').to_owned())
            .filter(|url| is_http_url(url))
            .ok_or(ConfigError::SendingCallbackUrl)?;
        let api_base_url = args.twilio_api_base_url.trim_end_matches('/').to_owned();
        if !is_http_url(&api_base_url) {
            return Err(ConfigError::TwilioApiBaseUrl);
        }
        Ok(Some(Self {
            account_sid,
            username,
            password: SecretString::from(password),
            api_base_url,
            status_callback_url: format!("{base}/twilio/status"),
        }))
    }
}

fn is_http_url(url: &str) -> bool {
    ["http://", "https://"].iter().any(|scheme| {
        url.strip_prefix(scheme)
            .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
    })
}
