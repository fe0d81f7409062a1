//! The API's refusals and failures, each mapped to its HTTP status in one
//! place, with a JSON body `{"error": "..."}`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::store::outage::{classify, DbFailure};

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
            Self::TooSlow | Self::DatabaseUnavailable | Self::Busy => {
                StatusCode::SERVICE_UNAVAILABLE
            }
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
        response.json(serde_json::json!({ "error": self.to_string() }))
    }
}
