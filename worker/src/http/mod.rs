//! The worker's HTTP port: probes, metrics and the API (reading messages
//! and statistics, sending), the API behind its token (`access`).

mod access;
mod error;

pub use access::ApiAccess;
pub use error::ApiError;

use actix_web::http::StatusCode;
use actix_web::middleware::from_fn;
use actix_web::{web, HttpResponse};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder};
use serde::Serialize;
use std::sync::Arc;
use twilio_protocol::callback::MessageSid;
use twilio_protocol::error_codes::{describe, ErrorCodeInfo};
use twilio_protocol::status::MessageStatus;

use crate::entity::{message, message_status_event, StoredStatus};
use crate::health::WorkerHealth;
use crate::stats::{StatsCache, Window};
use crate::store;
use crate::store::projection::SentMessage;
use crate::twilio_api::{SendError, SendRequest, TwilioClient};

pub struct HttpState {
    /// The writers' pool: probes and recording a sent message.
    pub db: DatabaseConnection,
    /// The readers' own small pool, with a statement timeout: however many
    /// read at once, the writers keep their connections.
    pub reads: DatabaseConnection,
    pub health: Arc<WorkerHealth>,
    /// `None` when no Twilio API credentials are configured.
    pub twilio: Option<TwilioClient>,
    pub access: ApiAccess,
    /// What counts as stale, per status (`WORKER_RECONCILE_AFTER`).
    pub stale_after: Vec<(MessageStatus, std::time::Duration)>,
    pub stats: StatsCache,
}

/// Every read answers within this, whatever it waits for (a pool
/// connection, another reader's `/stats`, its statements): Twilio's and a
/// dashboard's patience is 15 s.
const READ_DEADLINE: std::time::Duration = std::time::Duration::from_secs(12);

/// Runs a read under `READ_DEADLINE`: past it, `503` too slow.
async fn within_deadline<T>(
    read: impl std::future::Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    tokio::time::timeout(READ_DEADLINE, read)
        .await
        .unwrap_or(Err(ApiError::TooSlow))
}

/// The probes are open; every other route needs the API token (`access`).
pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics))
        .service(
            web::scope("")
                .wrap(from_fn(access::require_token))
                .route("/messages/{message_sid}", web::get().to(get_message))
                .route("/stats", web::get().to(get_stats))
                .route("/messages", web::post().to(send_message)),
        );
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().body("ok")
}

/// Ready when consuming, the database answers now, and writes are not held
/// (refused, or a schema that does not fit: `holding` says which).
async fn readyz(state: web::Data<HttpState>) -> HttpResponse {
    let consuming = state.health.consuming();
    let database_up = store::database_reachable(&state.db).await;
    let holding = state.health.holding();
    let body = serde_json::json!({
        "consuming": consuming,
        "database": database_up,
        "writable": holding.is_none(),
        "holding": holding,
    });
    if consuming && database_up && holding.is_none() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn metrics() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(service_kit::metrics::render())
}

#[derive(Serialize)]
struct MessageView {
    message_sid: String,
    status: StoredStatus,
    error_code: Option<i32>,
    error: Option<ErrorCodeInfo>,
    account_sid: Option<String>,
    from: Option<String>,
    to: Option<String>,
    first_seen_at: chrono::DateTime<chrono::Utc>,
    last_seen_at: chrono::DateTime<chrono::Utc>,
    event_count: i32,
    conflicting_outcomes: bool,
    /// When the first final status was received.
    final_at: Option<chrono::DateTime<chrono::Utc>>,
    reconciliation: ReconciliationView,
    events: Vec<EventView>,
}

/// What asking Twilio's Messages API about the message found.
#[derive(Serialize)]
struct ReconciliationView {
    checks: i16,
    last_checked_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Twilio answered 404: never asked again.
    twilio_not_found_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Serialize)]
struct EventView {
    status: StoredStatus,
    error_code: Option<i32>,
    error: Option<ErrorCodeInfo>,
    received_at: chrono::DateTime<chrono::Utc>,
    persisted_at: chrono::DateTime<chrono::Utc>,
    idempotency_token: Option<String>,
    /// Ingest's id of the request (or of the reconciliation run).
    request_id: Option<uuid::Uuid>,
    /// `callback`, or `reconciliation` (learned from the Messages API; the
    /// raw payload is then the API's answer).
    source: String,
    /// Signed by another account than the message's: it changed nothing.
    foreign_account: bool,
    raw_payload: serde_json::Value,
}

async fn get_message(
    path: web::Path<String>,
    state: web::Data<HttpState>,
) -> Result<HttpResponse, ApiError> {
    let sid = MessageSid::parse(&path.into_inner())
        .map_err(|error| ApiError::BadRequest(error.to_string()))?;
    within_deadline(message_view(sid, &state)).await
}

async fn message_view(sid: MessageSid, state: &HttpState) -> Result<HttpResponse, ApiError> {
    let message = message::Entity::find_by_id(sid.as_str().to_owned())
        .one(&state.reads)
        .await
        .map_err(ApiError::from_read)?
        .ok_or(ApiError::NotFound)?;
    // Its events were received between its first and last sighting: the
    // bounds leave out the history's other days (partitions) before any is read.
    let events = message_status_event::Entity::find()
        .filter(message_status_event::Column::MessageSid.eq(sid.as_str()))
        .filter(
            message_status_event::Column::ReceivedAt
                .between(message.first_seen_at, message.last_seen_at),
        )
        .order_by_asc(message_status_event::Column::ReceivedAt)
        .order_by_asc(message_status_event::Column::PersistedAt)
        .order_by_asc(message_status_event::Column::DedupKey)
        .all(&state.reads)
        .await
        .map_err(ApiError::from_read)?;
    Ok(HttpResponse::Ok().json(MessageView {
        message_sid: message.message_sid,
        status: message.status,
        error_code: message.error_code,
        error: message.error_code.map(describe),
        account_sid: message.account_sid,
        from: message.from_address,
        to: message.to_address,
        first_seen_at: message.first_seen_at,
        last_seen_at: message.last_seen_at,
        event_count: message.event_count,
        conflicting_outcomes: message.conflicting_outcomes,
        final_at: message.final_at,
        reconciliation: ReconciliationView {
            checks: message.reconcile_checks,
            last_checked_at: message.reconciled_at,
            twilio_not_found_at: message.twilio_not_found_at,
        },
        events: events
            .into_iter()
            .map(|event| EventView {
                status: event.status,
                error_code: event.error_code,
                error: event.error_code.map(describe),
                received_at: event.received_at,
                persisted_at: event.persisted_at,
                idempotency_token: event.idempotency_token,
                request_id: event.request_id,
                source: event.source,
                foreign_account: event.foreign_account,
                raw_payload: event.raw_payload,
            })
            .collect(),
    }))
}

#[derive(serde::Deserialize)]
struct StatsQuery {
    since: Option<String>,
    until: Option<String>,
}

/// How messages first seen in the window fared (`stats`).
async fn get_stats(
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

/// Sends a message through Twilio with our StatusCallback and records it.
async fn send_message(body: web::Bytes, state: web::Data<HttpState>) -> HttpResponse {
    let Some(sender) = state.twilio.as_ref().filter(|client| client.can_send()) else {
        return HttpResponse::ServiceUnavailable().json(
            serde_json::json!({ "error": "sending is not configured (TWILIO_ACCOUNT_SID with its credentials, and PUBLIC_BASE_URL)" }),
        );
    };
    let send: SendRequest = match serde_json::from_slice(&body) {
        Ok(send) => send,
        Err(error) => {
            return HttpResponse::BadRequest()
                .json(serde_json::json!({ "error": format!("invalid JSON: {error}") }))
        }
    };
    if let Err(problem) = send.validate() {
        return HttpResponse::BadRequest().json(serde_json::json!({ "error": problem }));
    }
    let created = match sender.send(&send).await {
        Ok(created) => created,
        Err(error) => return twilio_failure(error),
    };
    let recorded = match created.status.parse::<MessageStatus>() {
        Ok(status) => {
            let message = SentMessage {
                message_sid: &created.sid,
                status,
                account_sid: created.account_sid.clone().or(send.account_sid.clone()),
                from_address: created.from.clone().or(send.from.clone()),
                to_address: created.to.clone().or(Some(send.to.clone())),
                seen_at: chrono::Utc::now(),
            };
            let result = store::record_sent_message(&state.db, message).await;
            // Sent is sent: a recording failure is logged, the callbacks will fill the row.
            if let Err(error) = &result {
                tracing::error!(message_sid = %created.sid, %error, "sent, but not recorded");
            }
            result.is_ok()
        }
        Err(_) => false,
    };
    tracing::info!(message_sid = %created.sid, status = %created.status, "message sent");
    HttpResponse::Created().json(serde_json::json!({
        "sid": created.sid,
        "status": created.status,
        "recorded": recorded,
    }))
}

/// Twilio's refusals keep their code and message; our side of the failure
/// (credentials, Twilio down) is a 502.
fn twilio_failure(error: SendError) -> HttpResponse {
    tracing::warn!(%error, "sending failed");
    match error {
        SendError::Refused(twilio) => {
            let status = match twilio.status {
                429 => StatusCode::TOO_MANY_REQUESTS,
                401 | 403 => StatusCode::BAD_GATEWAY,
                400..=499 => StatusCode::BAD_REQUEST,
                _ => StatusCode::BAD_GATEWAY,
            };
            HttpResponse::build(status).json(serde_json::json!({
                "error": twilio.message,
                "twilio_code": twilio.code,
                "twilio_status": twilio.status,
                "more_info": twilio.more_info,
            }))
        }
        SendError::NoCredentials(_) => {
            HttpResponse::BadRequest().json(serde_json::json!({ "error": error.to_string() }))
        }
        other => HttpResponse::BadGateway().json(serde_json::json!({ "error": other.to_string() })),
    }
}
