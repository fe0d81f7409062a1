//! The worker's HTTP port: probes, metrics and the read API.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use twilio_protocol::callback::MessageSid;
use twilio_protocol::error_codes::{describe, ErrorCodeInfo};
use twilio_protocol::status::MessageStatus;

use crate::entity::{message, message_status_event, StoredStatus};
use crate::health::WorkerHealth;
use crate::stats::{self, Window};
use crate::store;
use crate::store::projection::SentMessage;
use crate::twilio_api::{SendError, SendRequest, TwilioClient};

pub struct HttpState {
    pub db: DatabaseConnection,
    pub health: Arc<WorkerHealth>,
    /// `None` when no Twilio API credentials are configured.
    pub twilio: Option<TwilioClient>,
    pub write_access: WriteAccess,
    /// What counts as stale, per status (`WORKER_RECONCILE_AFTER`).
    pub stale_after: Vec<(MessageStatus, std::time::Duration)>,
}

/// Who may call the write endpoint (POST /messages).
pub enum WriteAccess {
    /// Bound to loopback with no token: local callers only.
    LocalOnly,
    /// `Authorization: Bearer <token>` required.
    Token(SecretString),
    /// Bound beyond loopback without a token: refused.
    Refused,
}

impl WriteAccess {
    pub fn new(token: Option<SecretString>, addr: std::net::SocketAddr) -> Self {
        match token {
            Some(token) => Self::Token(token),
            None if addr.ip().is_loopback() => Self::LocalOnly,
            None => Self::Refused,
        }
    }

    /// The answer refusing `request`, if it may not write.
    fn refusal(&self, request: &HttpRequest) -> Option<HttpResponse> {
        match self {
            Self::LocalOnly => None,
            Self::Refused => Some(HttpResponse::Forbidden().json(serde_json::json!({
                "error": "POST /messages needs WORKER_API_TOKEN when WORKER_ADDR is not a loopback address"
            }))),
            Self::Token(expected) => {
                let presented = request
                    .headers()
                    .get("Authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .unwrap_or("");
                if bool::from(presented.as_bytes().ct_eq(expected.expose_secret().as_bytes())) {
                    None
                } else {
                    Some(HttpResponse::Unauthorized()
                        .insert_header(("WWW-Authenticate", "Bearer"))
                        .json(serde_json::json!({ "error": "missing or wrong bearer token" })))
                }
            }
        }
    }
}

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics))
        .route("/messages/{message_sid}", web::get().to(get_message))
        .route("/stats", web::get().to(get_stats))
        .route("/messages", web::post().to(send_message));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().body("ok")
}

/// Ready when consuming, the database answers now, and the last write
/// attempt did not find it refusing writes (read-only, disk full).
async fn readyz(state: web::Data<HttpState>) -> HttpResponse {
    let consuming = state.health.consuming();
    let database_up = store::database_reachable(&state.db).await;
    let writable = state.health.database_up();
    let body = serde_json::json!({
        "consuming": consuming,
        "database": database_up,
        "writable": writable,
    });
    if consuming && database_up && writable {
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
    raw_payload: serde_json::Value,
}

async fn get_message(path: web::Path<String>, state: web::Data<HttpState>) -> HttpResponse {
    let sid = match MessageSid::parse(&path.into_inner()) {
        Ok(sid) => sid,
        Err(error) => {
            return HttpResponse::BadRequest()
                .json(serde_json::json!({ "error": error.to_string() }))
        }
    };
    let found = message::Entity::find_by_id(sid.as_str().to_owned())
        .one(&state.db)
        .await;
    let message = match found {
        Ok(Some(message)) => message,
        Ok(None) => {
            return HttpResponse::NotFound().json(serde_json::json!({ "error": "unknown message" }))
        }
        Err(error) => return database_error(error),
    };
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
        .all(&state.db)
        .await;
    let events = match events {
        Ok(events) => events,
        Err(error) => return database_error(error),
    };
    HttpResponse::Ok().json(MessageView {
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
                raw_payload: event.raw_payload,
            })
            .collect(),
    })
}

#[derive(serde::Deserialize)]
struct StatsQuery {
    since: Option<String>,
    until: Option<String>,
}

/// How messages first seen in the window fared (`stats`).
async fn get_stats(query: web::Query<StatsQuery>, state: web::Data<HttpState>) -> HttpResponse {
    let window = match Window::parse(
        query.since.as_deref(),
        query.until.as_deref(),
        chrono::Utc::now(),
    ) {
        Ok(window) => window,
        Err(error) => {
            return HttpResponse::BadRequest().json(serde_json::json!({ "error": error }))
        }
    };
    match stats::compute(&state.db, window, &state.stale_after).await {
        Ok(stats) => HttpResponse::Ok().json(stats),
        Err(error) => database_error(error),
    }
}

/// Sends a message through Twilio with our StatusCallback and records it.
async fn send_message(
    request: HttpRequest,
    body: web::Bytes,
    state: web::Data<HttpState>,
) -> HttpResponse {
    if let Some(refusal) = state.write_access.refusal(&request) {
        return refusal;
    }
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

fn database_error(error: sea_orm::DbErr) -> HttpResponse {
    tracing::warn!(%error, "read API database error");
    HttpResponse::ServiceUnavailable().json(serde_json::json!({ "error": "database unavailable" }))
}
