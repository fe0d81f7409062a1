//! What a console page answers when it cannot show what was asked: each
//! case an HTML page with its HTTP status, in one place.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use super::layout;
use crate::http::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// No (valid) credential: the sign-in page, then back to this one.
    #[error("sign in to see this page")]
    SignInNeeded(String),
    #[error("the console needs WORKER_API_TOKEN when WORKER_ADDR is not a loopback address")]
    Refused,
    #[error("this sign-in may only read: replaying needs the full API token")]
    ReadOnly,
    #[error("this form did not come from this console (its CSRF token is missing or wrong); reload the page and try again")]
    Forged,
    #[error("{0}")]
    BadRequest(String),
    #[error("no message {0} has been recorded")]
    NotFound(String),
    #[error("{0}")]
    Unavailable(String),
}

impl From<ApiError> for ConsoleError {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::BadRequest(message) => Self::BadRequest(message),
            other => Self::Unavailable(other.to_string()),
        }
    }
}

impl ConsoleError {
    pub fn page(&self) -> HttpResponse {
        let status = self.status_code();
        let markup = match self {
            Self::SignInNeeded(next) => layout::sign_in(next, None),
            _ => layout::problem(status, &self.to_string()),
        };
        let mut response = layout::html_response(status, markup);
        if matches!(self, Self::SignInNeeded(_)) {
            response.headers_mut().insert(
                actix_web::http::header::WWW_AUTHENTICATE,
                actix_web::http::header::HeaderValue::from_static("Bearer"),
            );
        }
        if matches!(self, Self::Unavailable(_)) {
            response.headers_mut().insert(
                actix_web::http::header::RETRY_AFTER,
                actix_web::http::header::HeaderValue::from_static("5"),
            );
        }
        response
    }
}

impl ResponseError for ConsoleError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::SignInNeeded(_) => StatusCode::UNAUTHORIZED,
            Self::Refused | Self::ReadOnly | Self::Forged => StatusCode::FORBIDDEN,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        self.page()
    }
}
