//! Liveness, readiness and metrics.

use actix_web::{web, HttpResponse};

use crate::spool::SpoolHealth;
use crate::state::IngestState;

/// 200 while the process runs.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().body("ok")
}

/// 200 while a callback accepted now would be kept: RabbitMQ could confirm
/// it, or the spool could take it. The body says which, or why neither.
pub async fn readyz(state: web::Data<IngestState>) -> HttpResponse {
    let publisher = &state.publisher;
    if publisher.broker_ready() {
        return HttpResponse::Ok().body(if publisher.spooling() {
            "ready (draining the spool)"
        } else {
            "ready"
        });
    }
    let why = match publisher.spool_health() {
        Some(SpoolHealth::Accepting) => {
            return HttpResponse::Ok().body("ready (spooling: RabbitMQ cannot confirm)")
        }
        Some(SpoolHealth::Full { max_bytes }) => {
            format!("the spool is full (INGEST_SPOOL_MAX_BYTES={max_bytes})")
        }
        // Until a write works again: the spool tries every few seconds.
        Some(SpoolHealth::Failing { error }) => format!("the spool cannot write: {error}"),
        None => "there is no spool (INGEST_SPOOL_MAX_BYTES=0)".to_owned(),
    };
    HttpResponse::ServiceUnavailable().body(format!("not ready: RabbitMQ cannot confirm and {why}"))
}

pub async fn metrics() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(service_kit::metrics::render())
}
