//! Twilio's REST API: credentials per account, the base URL, and sending
//! (`POST /messages`). The API is used (reconciliation) when any
//! credentials are set; sending also needs `PUBLIC_BASE_URL`.

use clap::Args;
use secrecy::SecretString;
use service_kit::cli::parse_base_url;
use std::collections::HashMap;
use twilio_protocol::keyring::read_secret_map;

use super::error::{refuse_placeholder, ConfigError};

/// Twilio's REST API: the main account, subaccounts and where to reach it.
#[derive(Debug, Args)]
pub struct TwilioArgs {
    /// Main Twilio account SID; sending (POST /messages) is off when unset.
    #[arg(long, env = "TWILIO_ACCOUNT_SID")]
    pub twilio_account_sid: Option<String>,

    /// Auth token of the main account (the first, when a rotation lists
    /// several), or use an API key pair.
    #[arg(long, env = "TWILIO_AUTH_TOKEN", hide_env_values = true)]
    pub twilio_auth_token: Option<String>,

    /// Subaccounts' own tokens, `ACxxx=token1|token2,ACyyy=token3`: the API
    /// is called for a message of a listed account with its first token.
    #[arg(long, env = "TWILIO_ACCOUNT_TOKENS", hide_env_values = true)]
    pub twilio_account_tokens: Option<String>,

    /// API key SID, used with TWILIO_API_KEY_SECRET instead of the auth token.
    #[arg(long, env = "TWILIO_API_KEY_SID")]
    pub twilio_api_key_sid: Option<String>,

    /// Secret of the API key named by TWILIO_API_KEY_SID.
    #[arg(long, env = "TWILIO_API_KEY_SECRET", hide_env_values = true)]
    pub twilio_api_key_secret: Option<String>,

    /// Base URL of Twilio's REST API (tests point it at a fake).
    #[arg(
        long,
        env = "TWILIO_API_BASE_URL",
        default_value = "https://api.twilio.com"
    )]
    pub twilio_api_base_url: String,

    /// scheme://host[:port] where ingest is reachable; StatusCallback is this + /twilio/status.
    #[arg(long, env = "PUBLIC_BASE_URL")]
    pub public_base_url: Option<String>,
}

/// HTTP Basic credentials for the API.
#[derive(Clone, Debug)]
pub struct ApiCredentials {
    /// The API key SID, or the account SID.
    pub username: String,
    pub password: SecretString,
}

/// How to reach Twilio's REST API, and as whom.
#[derive(Clone, Debug)]
pub struct TwilioApiConfig {
    /// Without a trailing slash.
    pub base_url: String,
    /// The main account's SID and credentials.
    pub main: Option<(String, ApiCredentials)>,
    /// Subaccounts' own tokens (the first of each entry).
    pub accounts: HashMap<String, SecretString>,
}

impl TwilioApiConfig {
    /// The account a request about a message of `account_sid` goes to, and
    /// the credentials: the account's own token when it is listed, else the
    /// main account's (a parent account may act on its subaccounts).
    pub fn credentials_for(&self, account_sid: Option<&str>) -> Option<(String, ApiCredentials)> {
        if let Some((sid, token)) = account_sid.and_then(|sid| self.accounts.get_key_value(sid)) {
            let credentials = ApiCredentials {
                username: sid.clone(),
                password: token.clone(),
            };
            return Some((sid.clone(), credentials));
        }
        let (main_sid, credentials) = self.main.as_ref()?;
        Some((
            account_sid.unwrap_or(main_sid).to_owned(),
            credentials.clone(),
        ))
    }
}

/// Sending: where Twilio is to send the new messages' callbacks.
#[derive(Clone, Debug)]
pub struct SendingConfig {
    pub status_callback_url: String,
}

/// The API configuration (`None`: no credentials at all) and sending
/// (`None`: no main account).
pub(super) fn from_args(
    args: TwilioArgs,
) -> Result<(Option<TwilioApiConfig>, Option<SendingConfig>), ConfigError> {
    refuse_placeholder("TWILIO_AUTH_TOKEN", args.twilio_auth_token.iter())?;
    refuse_placeholder("TWILIO_ACCOUNT_TOKENS", args.twilio_account_tokens.iter())?;
    refuse_placeholder("TWILIO_API_KEY_SECRET", args.twilio_api_key_secret.iter())?;
    // `VAR=` (set but empty) counts as unset.
    let present = |value: Option<String>| value.filter(|v| !v.trim().is_empty());
    let accounts: HashMap<String, SecretString> =
        read_secret_map(&present(args.twilio_account_tokens).unwrap_or_default())
            .map_err(ConfigError::AccountTokens)?
            .into_iter()
            .filter_map(|(sid, tokens)| {
                let first = tokens.first()?.expose_secret().to_owned();
                Some((sid, SecretString::from(first)))
            })
            .collect();
    let main_token = present(args.twilio_auth_token).and_then(|tokens| {
        tokens
            .split(',')
            .map(str::trim)
            .find(|t| !t.is_empty())
            .map(str::to_owned)
    });
    let main = match present(args.twilio_account_sid) {
        None => None,
        Some(account_sid) => {
            let (username, password) = match (
                present(args.twilio_api_key_sid),
                present(args.twilio_api_key_secret),
                main_token,
            ) {
                (Some(key), Some(secret), _) => (key, secret),
                (None, None, Some(token)) => (account_sid.clone(), token),
                _ => return Err(ConfigError::SendingCredentials),
            };
            let credentials = ApiCredentials {
                username,
                password: SecretString::from(password),
            };
            Some((account_sid, credentials))
        }
    };
    let base_url =
        parse_base_url(&args.twilio_api_base_url).map_err(ConfigError::TwilioApiBaseUrl)?;
    // Sending needs credentials and the URL of our ingest; without the URL
    // the API still serves reconciliation.
    let has_credentials = main.is_some() || !accounts.is_empty();
    let sending = match (has_credentials, present(args.public_base_url)) {
        (true, Some(url)) => {
            let base = parse_base_url(&url).map_err(ConfigError::SendingCallbackUrl)?;
            Some(SendingConfig {
                status_callback_url: format!("{base}/twilio/status"),
            })
        }
        _ => None,
    };
    let api = (main.is_some() || !accounts.is_empty()).then_some(TwilioApiConfig {
        base_url,
        main,
        accounts,
    });
    Ok((api, sending))
}
