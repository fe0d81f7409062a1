//! Why a callback was not accepted, and the HTTP answer for each reason.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use twilio_protocol::callback::CallbackError;
use twilio_protocol::keyring::KeyError;

use crate::publisher::PublishError;

#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    #[error(
        "unsupported content type: expected application/x-www-form-urlencoded or application/json"
    )]
    UnsupportedMediaType,
    #[error("request body larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("request headers larger than {limit} bytes")]
    HeadersTooLarge { limit: usize },
    #[error("could not read the request body: {0}")]
    BodyRead(String),
    #[error("request body not received within {0:?}")]
    BodyTimeout(std::time::Duration),
    #[error("missing X-Twilio-Signature header")]
    MissingSignature,
    #[error("X-Twilio-Signature does not match")]
    BadSignature,
    #[error("no secret to verify with: {0}")]
    NoKey(#[from] KeyError),
    #[error("malformed callback: {0}")]
    Malformed(#[from] CallbackError),
    #[error("broker unavailable: {0}")]
    BrokerUnavailable(#[from] PublishError),
}

impl Rejection {
    /// The `outcome` label in logs and metrics.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::TooLarge { .. } | Self::HeadersTooLarge { .. } => "too_large",
            Self::BodyTimeout(_) => "timeout",
            Self::BodyRead(_) | Self::Malformed(_) => "bad_request",
            Self::MissingSignature | Self::BadSignature => "bad_signature",
            Self::NoKey(KeyError::UnknownAccount(_)) => "unknown_account",
            Self::NoKey(KeyError::UnknownKey(_)) => "unknown_signing_key",
            Self::NoKey(KeyError::UnsupportedAlgorithm(_)) => "unsupported_algorithm",
            Self::BrokerUnavailable(PublishError::Spool(_)) => "spool_unavailable",
            Self::BrokerUnavailable(_) => "broker_unavailable",
        }
    }
}

impl ResponseError for Rejection {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::BodyRead(_) | Self::Malformed(_) => StatusCode::BAD_REQUEST,
            Self::MissingSignature | Self::BadSignature | Self::NoKey(_) => StatusCode::FORBIDDEN,
            Self::BrokerUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        // The broker's own error text stays in the logs, not in the answer.
        let message = match self {
            Self::BrokerUnavailable(_) => "broker unavailable, try again".to_owned(),
            other => other.to_string(),
        };
        HttpResponse::build(self.status_code())
            .content_type("text/plain; charset=utf-8")
            .body(message)
    }
}
