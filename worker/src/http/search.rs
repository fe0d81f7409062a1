//! `GET /messages?to=&from=&status=&error_code=&account_sid=&since=&until=&limit=&cursor=`:
//! the messages matching every filter, newest first, a page at a time
//! (`crate::search`). A malformed or unknown parameter is `400`, naming it.

use actix_web::{web, HttpRequest, HttpResponse};

use super::deadline::within_deadline;
use super::error::ApiError;
use super::state::HttpState;
use crate::search::{search, SearchParams};

pub(super) async fn search_messages(
    request: HttpRequest,
    state: web::Data<HttpState>,
) -> Result<HttpResponse, ApiError> {
    let params = web::Query::<SearchParams>::from_query(request.query_string())
        .map_err(|error| ApiError::BadRequest(query_error(&error)))?;
    let filter = params
        .parse(chrono::Utc::now())
        .map_err(ApiError::BadRequest)?;
    let page = within_deadline(async {
        search(&state.reads, &filter)
            .await
            .map_err(ApiError::from_read)
    })
    .await?;
    Ok(HttpResponse::Ok().json(page))
}

/// serde's words for a query string it cannot read (an unknown or repeated
/// parameter), without actix's prefix.
fn query_error(error: &actix_web::error::QueryPayloadError) -> String {
    match error {
        actix_web::error::QueryPayloadError::Deserialize(inner) => format!("{inner}"),
        other => other.to_string(),
    }
}
