//! `GET /stats`: how messages first seen in a window fared (`crate::stats`).

use actix_web::{web, HttpResponse};

use super::deadline::within_deadline;
use super::error::ApiError;
use super::state::HttpState;
use crate::stats::Window;

#[derive(serde::Deserialize)]
pub(super) struct StatsQuery {
    since: Option<String>,
    until: Option<String>,
}

/// How messages first seen in the window fared (`stats`).
pub(super) async fn get_stats(
    query: web::Query<StatsQuery>,
    state: web::Data<HttpState>,
) -> Result<HttpResponse, ApiError> {
    let window = Window::parse(
        query.since.as_deref(),
        query.until.as_deref(),
        chrono::Utc::now(),
    )
    .map_err(ApiError::BadRequest)?;
    let asked = (query.since.clone(), query.until.clone());
    let stats = within_deadline(async {
        state
            .stats
            .get_or_compute(asked, window, &state.reads, &state.stale_after)
            .await
            .map_err(ApiError::from_read)?
            .ok_or(ApiError::Busy)
    })
    .await?;
    Ok(HttpResponse::Ok().json(&*stats))
}
