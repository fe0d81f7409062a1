//! `GET /messages/{MessageSid}`: a message's current state and its whole
//! history, from the readers' pool.

use actix_web::{web, HttpResponse};
use serde::Serialize;
use twilio_protocol::callback::MessageSid;
use twilio_protocol::error_codes::{describe, ErrorCodeInfo};

use super::deadline::within_deadline;
use super::error::ApiError;
use super::state::HttpState;
use crate::entity::StoredStatus;
use crate::search::{message_history, MessageHistory};

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

pub(super) async fn get_message(
    path: web::Path<String>,
    state: web::Data<HttpState>,
) -> Result<HttpResponse, ApiError> {
    let sid = MessageSid::parse(&path.into_inner())
        .map_err(|error| ApiError::BadRequest(error.to_string()))?;
    within_deadline(message_view(sid, &state)).await
}

async fn message_view(sid: MessageSid, state: &HttpState) -> Result<HttpResponse, ApiError> {
    let MessageHistory { message, events } = message_history(&state.reads, &sid)
        .await
        .map_err(ApiError::from_read)?
        .ok_or(ApiError::NotFound)?;
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
