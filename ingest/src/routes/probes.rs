//! Liveness, readiness and metrics.

use actix_web::{web, HttpResponse};

use crate::state::IngestState;

/// 200 while the process runs.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().body("ok")
}

/// 200 while a callback accepted now would be kept: RabbitMQ could confirm
/// it, or the spool could take it. The body says which.
pub async fn readyz(state: web::Data<IngestState>) -> HttpResponse {
    let publisher = &state.publisher;
    match (publisher.broker_ready(), publisher.is_ready()) {
        (true, _) if publisher.spooling() => HttpResponse::Ok().body("ready (draining the spool)"),
        (true, _) => HttpResponse::Ok().body("ready"),
        (false, true) => HttpResponse::Ok().body("ready (spooling: RabbitMQ cannot confirm)"),
        (false, false) => HttpResponse::ServiceUnavailable()
            .body("not ready: RabbitMQ cannot confirm and the spool cannot take more"),
    }
}

pub async fn metrics() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(service_kit::metrics::render())
}
