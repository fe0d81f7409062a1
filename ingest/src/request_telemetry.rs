//! Telemetry of each `POST /twilio/status`, as middleware around the route:
//! the root span (continuing a caller's `traceparent`), the request id
//! (`X-Request-Id` on every answer), the outcome counter and latency
//! histogram, and one log line per request. The route only says what
//! happened: `Accepted` on its answer, or a `Rejection` as its error.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage};
use service_kit::telemetry::parent_from_headers;
use std::time::Instant;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::metrics::{CALLBACKS_RECEIVED, REQUEST_DURATION};
use crate::rejection::Rejection;

/// This request's id, in the request's extensions for the route to use.
#[derive(Clone, Debug)]
pub(crate) struct RequestId(pub uuid::Uuid);

/// What the route accepted, in the answer's extensions for the log line.
#[derive(Clone, Debug)]
pub(crate) struct Accepted {
    pub message_sid: String,
    pub status: String,
    /// Kept in the local spool because RabbitMQ could not confirm it in time.
    pub spooled: bool,
}

pub(crate) async fn callback_telemetry(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let request_id = uuid::Uuid::new_v4();
    let span = tracing::info_span!(
        "POST /twilio/status",
        otel.kind = "server",
        http.request.method = "POST",
        http.route = "/twilio/status",
        http.response.status_code = tracing::field::Empty,
        request_id = %request_id,
        message_sid = tracing::field::Empty,
        twilio.message_sid = tracing::field::Empty,
        twilio.message_status = tracing::field::Empty,
    );
    let parent = parent_from_headers(|name| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    let _ = span.set_parent(parent);
    request.extensions_mut().insert(RequestId(request_id));

    let started = Instant::now();
    let mut response = next.call(request).instrument(span.clone()).await?;
    let latency = started.elapsed();

    let _in_span = span.enter();
    let status_code = response.status().as_u16();
    span.record("http.response.status_code", status_code);
    if let Some(outcome) = log_outcome(response.response(), latency, request_id) {
        metrics::counter!(CALLBACKS_RECEIVED.name, "outcome" => outcome).increment(1);
        metrics::histogram!(REQUEST_DURATION.name, "outcome" => outcome)
            .record(latency.as_secs_f64());
    }
    if let Ok(value) = HeaderValue::from_str(&request_id.to_string()) {
        response
            .headers_mut()
            .insert(HeaderName::from_static("x-request-id"), value);
    }
    Ok(response)
}

/// Logs what became of the callback (the route's `Rejection` or
/// `Accepted`) and returns its `outcome` label; `None` for an answer actix
/// gave before the route ran (a broken request).
fn log_outcome<B>(
    response: &actix_web::HttpResponse<B>,
    latency: std::time::Duration,
    request_id: uuid::Uuid,
) -> Option<&'static str> {
    let latency_ms = latency.as_secs_f64() * 1000.0;
    if let Some(rejection) = response
        .error()
        .and_then(|error| error.as_error::<Rejection>())
    {
        tracing::warn!(
            outcome = rejection.outcome(),
            latency_ms,
            %request_id,
            reason = %rejection,
            "callback rejected"
        );
        return Some(rejection.outcome());
    }
    let extensions = response.extensions();
    let accepted = extensions.get::<Accepted>()?;
    let outcome = if accepted.spooled {
        "spooled"
    } else {
        "accepted"
    };
    // DEBUG: at thousands a second a line each would cost as much CPU as the
    // callbacks themselves. Accepted callbacks are counted and traced;
    // rejections, outages and state changes keep their lines.
    tracing::debug!(
        message_sid = %accepted.message_sid,
        status = %accepted.status,
        outcome,
        latency_ms,
        %request_id,
        "callback accepted"
    );
    Some(outcome)
}
