//! Looking up one message: `GET /2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json`.

use serde::Deserialize;
use std::time::Duration;

use super::client::{ExchangeError, TwilioClient, TwilioError};

/// Twilio's answer about a message: the fields we read, and the whole answer.
#[derive(Clone, Debug)]
pub struct FetchedMessage {
    pub status: String,
    pub error_code: Option<i32>,
    pub account_sid: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    /// `date_updated`: when Twilio last changed the message.
    pub updated_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The answer as Twilio sent it (stored as the event's raw payload).
    pub raw: serde_json::Value,
}

#[derive(Deserialize)]
struct MessageResource {
    status: String,
    error_code: Option<i64>,
    account_sid: Option<String>,
    from: Option<String>,
    to: Option<String>,
    /// RFC 2822, as Twilio writes its dates.
    date_updated: Option<String>,
}

/// Why a lookup gave no status.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("Twilio does not know the message (404)")]
    NotFound,
    #[error("rate limited by Twilio (retry after {retry_after:?})")]
    RateLimited { retry_after: Option<Duration> },
    #[error("Twilio refused our credentials (HTTP {0})")]
    Auth(u16),
    #[error("Twilio failed (HTTP {0})")]
    Server(u16),
    #[error("cannot reach Twilio: {0}")]
    Unreachable(#[source] ExchangeError),
    #[error("unexpected answer from Twilio (HTTP {0})")]
    Unexpected(u16),
    #[error("no credentials for account {0}")]
    NoCredentials(String),
}

impl FetchError {
    /// The `kind` label of `worker_reconcile_api_errors_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::RateLimited { .. } => "rate_limited",
            Self::Auth(_) => "auth",
            Self::Server(_) => "server",
            Self::Unreachable(_) => "unreachable",
            Self::Unexpected(_) => "unexpected",
            Self::NoCredentials(_) => "no_credentials",
        }
    }
}

/// Twilio's code for "too many requests", whatever the HTTP status says.
const TOO_MANY_REQUESTS: i64 = 20429;

impl TwilioClient {
    /// Looks up `message_sid` of `account_sid` (the main account when
    /// unknown), with that account's credentials.
    pub async fn fetch_message(
        &self,
        account_sid: Option<&str>,
        message_sid: &str,
    ) -> Result<FetchedMessage, FetchError> {
        let (account, credentials) = self
            .credentials(account_sid)
            .ok_or_else(|| FetchError::NoCredentials(account_sid.unwrap_or("(none)").to_owned()))?;
        let url = self.account_url(&account, &format!("Messages/{message_sid}.json"));
        let answer = self
            .exchange(hyper::Request::get(url), &credentials, None)
            .await
            .map_err(FetchError::Unreachable)?;
        let error_code = serde_json::from_slice::<TwilioError>(&answer.body)
            .ok()
            .and_then(|e| e.code);
        if answer.status == 429 || error_code == Some(TOO_MANY_REQUESTS) {
            return Err(FetchError::RateLimited {
                retry_after: answer.retry_after,
            });
        }
        match answer.status {
            200..=299 => {}
            404 => return Err(FetchError::NotFound),
            401 | 403 => return Err(FetchError::Auth(answer.status)),
            500..=599 => return Err(FetchError::Server(answer.status)),
            other => return Err(FetchError::Unexpected(other)),
        }
        let raw: serde_json::Value = serde_json::from_slice(&answer.body)
            .map_err(|_| FetchError::Unexpected(answer.status))?;
        let resource: MessageResource = serde_json::from_value(raw.clone())
            .map_err(|_| FetchError::Unexpected(answer.status))?;
        Ok(FetchedMessage {
            status: resource.status,
            error_code: resource.error_code.and_then(|c| i32::try_from(c).ok()),
            account_sid: resource.account_sid,
            from: resource.from,
            to: resource.to,
            updated_at: resource
                .date_updated
                .and_then(|date| chrono::DateTime::parse_from_rfc2822(&date).ok())
                .map(|date| date.with_timezone(&chrono::Utc)),
            raw,
        })
    }
}
