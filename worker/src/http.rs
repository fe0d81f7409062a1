//! The worker's HTTP port: probes, metrics and the read API.

use actix_web::{web, HttpResponse};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder};
use serde::Serialize;
use shared::callback::MessageSid;
use shared::error_codes::{describe, ErrorCodeInfo};
use std::sync::Arc;

use crate::entity::{message, message_status_event};
use crate::health::WorkerHealth;
use crate::store;

pub struct HttpState {
    pub db: DatabaseConnection,
    pub health: Arc<WorkerHealth>,
}

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics))
        .route("/messages/{message_sid}", web::get().to(get_message));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().body("ok")
}

/// Ready when consuming and the database answers now.
async fn readyz(state: web::Data<HttpState>) -> HttpResponse {
    let consuming = state.health.consuming();
    let database_up = store::database_reachable(&state.db).await;
    let body = serde_json::json!({ "consuming": consuming, "database": database_up });
    if consuming && database_up {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn metrics() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(shared::metrics::render())
}

#[derive(Serialize)]
struct MessageView {
    message_sid: String,
    status: String,
    error_code: Option<i32>,
    error: Option<ErrorCodeInfo>,
    account_sid: Option<String>,
    from: Option<String>,
    to: Option<String>,
    first_seen_at: chrono::DateTime<chrono::Utc>,
    last_seen_at: chrono::DateTime<chrono::Utc>,
    event_count: i32,
    conflicting_outcomes: bool,
    events: Vec<EventView>,
}

#[derive(Serialize)]
struct EventView {
    status: String,
    error_code: Option<i32>,
    error: Option<ErrorCodeInfo>,
    received_at: chrono::DateTime<chrono::Utc>,
    persisted_at: chrono::DateTime<chrono::Utc>,
    idempotency_token: Option<String>,
    request_id: String,
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
    let events = message_status_event::Entity::find()
        .filter(message_status_event::Column::MessageSid.eq(sid.as_str()))
        .order_by_asc(message_status_event::Column::ReceivedAt)
        .order_by_asc(message_status_event::Column::Id)
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
                raw_payload: event.raw_payload,
            })
            .collect(),
    })
}

fn database_error(error: sea_orm::DbErr) -> HttpResponse {
    tracing::warn!(%error, "read API database error");
    HttpResponse::ServiceUnavailable().json(serde_json::json!({ "error": "database unavailable" }))
}
