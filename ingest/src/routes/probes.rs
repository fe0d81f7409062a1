//! Liveness, readiness and metrics.

use actix_web::{web, HttpResponse};

use crate::state::IngestState;

/// 200 while the process runs.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().body("ok")
}

/// 200 only when a publish issued now could be confirmed.
pub async fn readyz(state: web::Data<IngestState>) -> HttpResponse {
    if state.publisher.is_ready() {
        HttpResponse::Ok().body("ready")
    } else {
        HttpResponse::ServiceUnavailable().body("not connected to RabbitMQ")
    }
}

pub async fn metrics() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(service_kit::metrics::render())
}
