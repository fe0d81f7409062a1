//! The client: credentials per account, URLs, and one request-answer
//! exchange within a deadline, which `fetch` and `send` build on.

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::config::{ApiCredentials, SendingConfig, TwilioApiConfig};
use twilio_protocol::callback::is_account_sid;

type HttpsClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

/// Twilio's error body.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct TwilioError {
    pub status: u16,
    pub code: Option<i64>,
    pub message: String,
    pub more_info: Option<String>,
}

/// Why a request got no answer to read.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error(transparent)]
    Request(hyper::http::Error),
    #[error(transparent)]
    Connection(hyper_util::client::legacy::Error),
    #[error(transparent)]
    Body(hyper::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// One answer from the API.
pub(super) struct Answer {
    pub(super) status: u16,
    /// `Retry-After`, in seconds, when sent.
    pub(super) retry_after: Option<Duration>,
    pub(super) body: Bytes,
}

#[derive(Clone)]
pub struct TwilioClient {
    http: HttpsClient,
    api: TwilioApiConfig,
    /// `None`: the API is configured but sending is not.
    pub(super) sending: Option<SendingConfig>,
}

/// The longest a request to Twilio may take (Twilio's own API timeout is similar).
const TIMEOUT: Duration = Duration::from_secs(15);

impl TwilioClient {
    pub fn new(
        api: TwilioApiConfig,
        sending: Option<SendingConfig>,
    ) -> Result<Self, rustls::Error> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())?
            .https_or_http()
            .enable_http1()
            .build();
        let http =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(connector);
        Ok(Self { http, api, sending })
    }

    /// The account a lookup of a message of `account_sid` is made as (its
    /// own, or the main one when it has none); `None` without credentials.
    pub fn account_for(&self, account_sid: Option<&str>) -> Option<String> {
        self.credentials(account_sid).map(|(account, _)| account)
    }

    pub fn can_send(&self) -> bool {
        self.sending.is_some()
    }

    /// The account to ask as and its credentials, for a message of
    /// `account_sid` (see `credentials_for`); `None` without credentials, or
    /// when the account SID is malformed: a callback's text never reaches a URL
    /// unchecked.
    pub(super) fn credentials(
        &self,
        account_sid: Option<&str>,
    ) -> Option<(String, ApiCredentials)> {
        self.api
            .credentials_for(account_sid)
            .filter(|(account, _)| is_account_sid(account))
    }

    /// `{base}/2010-04-01/Accounts/{account}/{rest}`.
    pub(super) fn account_url(&self, account_sid: &str, rest: &str) -> String {
        format!(
            "{}/2010-04-01/Accounts/{account_sid}/{rest}",
            self.api.base_url
        )
    }

    /// Sends one request and reads the whole answer, within `TIMEOUT`.
    pub(super) async fn exchange(
        &self,
        request: hyper::http::request::Builder,
        credentials: &ApiCredentials,
        body: Option<String>,
    ) -> Result<Answer, ExchangeError> {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            credentials.username,
            credentials.password.expose_secret()
        ));
        let mut request = request
            .header(hyper::header::AUTHORIZATION, format!("Basic {basic}"))
            .header(hyper::header::ACCEPT, "application/json");
        if body.is_some() {
            request = request.header(
                hyper::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            );
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(ExchangeError::Request)?;
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(ExchangeError::Connection)?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(hyper::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(ExchangeError::Body)?
                .to_bytes();
            Ok(Answer {
                status,
                retry_after,
                body,
            })
        };
        tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| ExchangeError::Timeout(TIMEOUT))?
    }
}
