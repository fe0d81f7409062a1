//! The one call we make to Twilio: create a message whose StatusCallback
//! points at our ingest (`POST /2010-04-01/Accounts/{AccountSid}/Messages.json`).

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use twilio_protocol::form::FormParams;

use crate::config::SendingConfig;

/// What to send, as `POST /messages` takes it.
#[derive(Clone, Debug, Deserialize)]
pub struct SendRequest {
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

/// Twilio's error body.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct TwilioError {
    pub status: u16,
    pub code: Option<i64>,
    pub message: String,
    pub more_info: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("Twilio refused the message: {} (code {:?})", .0.message, .0.code)]
    Refused(TwilioError),
    #[error("cannot reach Twilio: {0}")]
    Unreachable(String),
    #[error("unexpected answer from Twilio (HTTP {status})")]
    Unexpected { status: u16 },
}

type HttpsClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

/// hyper with rustls on ring (the crypto lapin already uses), so the
/// workspace keeps one TLS stack and reqwest stays TLS-free.
#[derive(Clone)]
pub struct TwilioClient {
    http: HttpsClient,
    config: SendingConfig,
}

const TIMEOUT: Duration = Duration::from_secs(15);

impl TwilioClient {
    pub fn new(config: SendingConfig) -> Result<Self, rustls::Error> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())?
            .https_or_http()
            .enable_http1()
            .build();
        let http =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(connector);
        Ok(Self { http, config })
    }

    pub async fn send(&self, request: &SendRequest) -> Result<CreatedMessage, SendError> {
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
            self.config.status_callback_url.clone(),
        ));

        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            self.config.api_base_url, self.config.account_sid
        );
        let credentials = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            self.config.username,
            self.config.password.expose_secret()
        ));
        let http_request = hyper::Request::post(url)
            .header(hyper::header::AUTHORIZATION, format!("Basic {credentials}"))
            .header(
                hyper::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(hyper::header::ACCEPT, "application/json")
            .body(Full::new(Bytes::from(
                FormParams::from_pairs(form).encode(),
            )))
            .map_err(|e| SendError::Unreachable(e.to_string()))?;
        let exchange = async {
            let response = self
                .http
                .request(http_request)
                .await
                .map_err(|e| SendError::Unreachable(e.to_string()))?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| SendError::Unreachable(e.to_string()))?
                .to_bytes();
            Ok::<_, SendError>((status, body))
        };
        let (status, body) = tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| SendError::Unreachable(format!("no answer within {TIMEOUT:?}")))??;
        if (200..300).contains(&status) {
            serde_json::from_slice(&body).map_err(|_| SendError::Unexpected { status })
        } else {
            match serde_json::from_slice::<TwilioError>(&body) {
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
