//! The probes and the metrics page both services serve, mounted the same
//! way: `/healthz` (the process runs), `/readyz` (the service's own answer,
//! `Readiness`) and `/metrics` (Prometheus text).

use actix_web::{web, HttpResponse};

/// What a service answers on `/readyz`: ready or not, and a body saying
/// why (text or JSON, the service's choice).
pub trait Readiness: Send + Sync + 'static {
    fn readiness(&self) -> impl std::future::Future<Output = Probe>;
}

/// One `/readyz` answer.
pub struct Probe {
    pub ready: bool,
    pub body: ProbeBody,
}

pub enum ProbeBody {
    Text(String),
    Json(serde_json::Value),
}

/// Mounts `/healthz`, `/readyz` and `/metrics`; `R` must be registered as
/// app data (`web::Data<R>`).
pub fn mount<R: Readiness>(config: &mut web::ServiceConfig) {
    config
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz::<R>))
        .route("/metrics", web::get().to(metrics));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().body("ok")
}

async fn readyz<R: Readiness>(state: web::Data<R>) -> HttpResponse {
    let probe = state.readiness().await;
    let mut answer = if probe.ready {
        HttpResponse::Ok()
    } else {
        HttpResponse::ServiceUnavailable()
    };
    match probe.body {
        ProbeBody::Text(text) => answer.body(text),
        ProbeBody::Json(value) => answer.json(value),
    }
}

async fn metrics() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(crate::metrics::render())
}
