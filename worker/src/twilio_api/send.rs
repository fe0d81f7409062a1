//! Creating a message whose StatusCallback points at our ingest
//! (`POST /2010-04-01/Accounts/{AccountSid}/Messages.json`).

use serde::{Deserialize, Serialize};
use twilio_protocol::form::FormParams;

use super::client::{ExchangeError, TwilioClient, TwilioError};

/// What to send, as `POST /messages` takes it.
#[derive(Clone, Debug, Deserialize)]
pub struct SendRequest {
    /// The (sub)account to send from: its own token when listed in
    /// TWILIO_ACCOUNT_TOKENS, else the main account's credentials. Default:
    /// the main account.
    pub account_sid: Option<String>,
    pub to: String,
    pub from: Option<String>,
    pub messaging_service_sid: Option<String>,
    pub body: Option<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub media_url: Vec<String>,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(deserializer)? {
        None => Vec::new(),
        Some(OneOrMany::One(url)) => vec![url],
        Some(OneOrMany::Many(urls)) => urls,
    })
}

impl SendRequest {
    /// The checks Twilio would make anyway, answered before calling it.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.to.trim().is_empty() {
            return Err("\"to\" is required");
        }
        match (&self.from, &self.messaging_service_sid) {
            (Some(_), Some(_)) => {
                return Err("give \"from\" or \"messaging_service_sid\", not both")
            }
            (None, None) => return Err("\"from\" or \"messaging_service_sid\" is required"),
            _ => {}
        }
        if self.body.as_deref().is_none_or(str::is_empty) && self.media_url.is_empty() {
            return Err("\"body\" or \"media_url\" is required");
        }
        Ok(())
    }
}

/// Twilio's answer to a created message (the fields we use).
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct CreatedMessage {
    pub sid: String,
    pub status: String,
    pub account_sid: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("Twilio refused the message: {} (code {:?})", .0.message, .0.code)]
    Refused(TwilioError),
    #[error("cannot reach Twilio: {0}")]
    Unreachable(#[source] ExchangeError),
    #[error("unexpected answer from Twilio (HTTP {status})")]
    Unexpected { status: u16 },
    #[error(
        "sending is not configured (TWILIO_ACCOUNT_SID with its credentials, and PUBLIC_BASE_URL)"
    )]
    NotConfigured,
    #[error("no credentials for account {0} (TWILIO_ACCOUNT_TOKENS, or the main account's)")]
    NoCredentials(String),
}

impl TwilioClient {
    /// Creates the message, with our StatusCallback, on the request's
    /// account (default: the main one) with that account's credentials.
    pub async fn send(&self, request: &SendRequest) -> Result<CreatedMessage, SendError> {
        let Some(sending) = &self.sending else {
            return Err(SendError::NotConfigured);
        };
        let (account_sid, credentials) = self
            .credentials(request.account_sid.as_deref())
            .ok_or_else(|| {
                SendError::NoCredentials(request.account_sid.clone().unwrap_or_default())
            })?;
        let mut form = vec![("To".to_owned(), request.to.clone())];
        if let Some(from) = &request.from {
            form.push(("From".to_owned(), from.clone()));
        }
        if let Some(service) = &request.messaging_service_sid {
            form.push(("MessagingServiceSid".to_owned(), service.clone()));
        }
        if let Some(body) = &request.body {
            form.push(("Body".to_owned(), body.clone()));
        }
        form.extend(
            request
                .media_url
                .iter()
                .map(|url| ("MediaUrl".to_owned(), url.clone())),
        );
        form.push((
            "StatusCallback".to_owned(),
            sending.status_callback_url.clone(),
        ));
        let url = self.account_url(&account_sid, "Messages.json");
        let answer = self
            .exchange(
                hyper::Request::post(url),
                &credentials,
                Some(FormParams::from_pairs(form).encode()),
            )
            .await
            .map_err(SendError::Unreachable)?;
        let status = answer.status;
        if (200..300).contains(&status) {
            serde_json::from_slice(&answer.body).map_err(|_| SendError::Unexpected { status })
        } else {
            match serde_json::from_slice::<TwilioError>(&answer.body) {
                Ok(error) => Err(SendError::Refused(error)),
                Err(_) => Err(SendError::Unexpected { status }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: &str) -> SendRequest {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn validation() {
        assert!(request(r#"{"to":"+1","from":"+2","body":"hi"}"#)
            .validate()
            .is_ok());
        assert!(request(
            r#"{"to":"+1","messaging_service_sid":"MG1","media_url":"https://x/1.jpg"}"#
        )
        .validate()
        .is_ok());
        assert!(request(r#"{"to":"+1","body":"hi"}"#).validate().is_err());
        assert!(
            request(r#"{"to":"+1","from":"+2","messaging_service_sid":"MG1","body":"hi"}"#)
                .validate()
                .is_err()
        );
        assert!(request(r#"{"to":"+1","from":"+2"}"#).validate().is_err());
        assert!(request(r#"{"to":"","from":"+2","body":"x"}"#)
            .validate()
            .is_err());
        assert_eq!(
            request(r#"{"to":"+1","from":"+2","media_url":["a","b"]}"#)
                .media_url
                .len(),
            2
        );
    }
}
