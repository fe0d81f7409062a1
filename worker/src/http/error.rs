//! The API's refusals and failures, each mapped to its HTTP status in one
//! place, with a JSON body `{"error": "..."}`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::store::outage::{classify, DbFailure};
use crate::twilio_api::SendError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or wrong bearer token")]
    Unauthorized,
    #[error("this token may only read")]
    ReadOnlyToken,
    #[error("the API needs WORKER_API_TOKEN when WORKER_ADDR is not a loopback address")]
    NoTokenConfigured,
    #[error("{0}")]
    BadRequest(String),
    #[error("unknown message")]
    NotFound,
    /// The read took longer than the read statement timeout.
    #[error("the query took too long; ask for less (a shorter window)")]
    TooSlow,
    #[error("database unavailable")]
    DatabaseUnavailable,
    /// Another reader's `/stats` held the way too long.
    #[error("statistics are being computed for another reader; try again shortly")]
    Busy,
    #[error(
        "sending is not configured (TWILIO_ACCOUNT_SID with its credentials, and PUBLIC_BASE_URL)"
    )]
    SendingOff,
    #[error("invalid JSON: {0}")]
    InvalidJson(#[source] serde_json::Error),
    /// Twilio refused the message, or could not be asked.
    #[error(transparent)]
    Sending(#[from] SendError),
}

impl ApiError {
    /// A read that failed: too slow (the statement timeout cancelled it),
    /// or the database is away.
    pub fn from_read(error: sea_orm::DbErr) -> Self {
        tracing::warn!(%error, "read API database error");
        match classify(&error) {
            DbFailure::Cancelled => Self::TooSlow,
            _ => Self::DatabaseUnavailable,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::ReadOnlyToken | Self::NoTokenConfigured => StatusCode::FORBIDDEN,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::TooSlow | Self::DatabaseUnavailable | Self::Busy | Self::SendingOff => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::InvalidJson(_) => StatusCode::BAD_REQUEST,
            Self::Sending(error) => sending_status(error),
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if matches!(self, Self::Unauthorized) {
            response.insert_header(("WWW-Authenticate", "Bearer"));
        }
        if matches!(self, Self::TooSlow | Self::DatabaseUnavailable | Self::Busy) {
            response.insert_header(("Retry-After", "5"));
        }
        // Twilio's refusals keep their code and message.
        if let Self::Sending(SendError::Refused(twilio)) = self {
            return response.json(serde_json::json!({
                "error": twilio.message,
                "twilio_code": twilio.code,
                "twilio_status": twilio.status,
                "more_info": twilio.more_info,
            }));
        }
        response.json(serde_json::json!({ "error": self.to_string() }))
    }
}

/// A refusal by Twilio keeps its class (429, or a 4xx about the message);
/// our side of the failure (credentials, Twilio down) is a 502, and an
/// account we hold no credentials for is the request's fault.
fn sending_status(error: &SendError) -> StatusCode {
    match error {
        SendError::Refused(twilio) => match twilio.status {
            429 => StatusCode::TOO_MANY_REQUESTS,
            401 | 403 => StatusCode::BAD_GATEWAY,
            400..=499 => StatusCode::BAD_REQUEST,
            _ => StatusCode::BAD_GATEWAY,
        },
        SendError::NoCredentials(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::BAD_GATEWAY,
    }
}
