//! `POST /twilio/status`: request → verify → publish → confirm → answer.

use actix_web::http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use futures_util::StreamExt;
use queue_wire::envelope::{BodyKind, CallbackEnvelope};
use service_kit::telemetry::{parent_from_headers, record_trace_ids, trace_headers};
use std::time::Instant;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use twilio_protocol::callback::StatusCallback;
use twilio_protocol::form::FormParams;

use crate::app::IngestState;
use crate::rejection::Rejection;

const SIGNATURE_HEADER: &str = "X-Twilio-Signature";
const IDEMPOTENCY_HEADER: &str = "I-Twilio-Idempotency-Token";
/// Twilio's headers are a few hundred bytes; actix's own cap is 128 KiB.
const HEADER_LIMIT_BYTES: usize = 64 * 1024;

pub async fn receive_status(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<IngestState>,
) -> HttpResponse {
    let request_id = uuid::Uuid::new_v4().to_string();
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
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    // Continue the caller's trace when it sent a traceparent.
    let parent = parent_from_headers(|name| header(&request, name).map(str::to_owned));
    let _ = span.set_parent(parent);
    record_trace_ids(&span);
    handle(request, payload, state, request_id)
        .instrument(span)
        .await
}

async fn handle(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<IngestState>,
    request_id: String,
) -> HttpResponse {
    let started = Instant::now();
    let result = accept(&request, payload, &state, &request_id).await;
    let latency = started.elapsed();

    let (outcome, response) = match &result {
        Ok(_) => ("accepted", HttpResponse::Ok().finish()),
        Err(rejection) => (
            rejection.outcome(),
            actix_web::ResponseError::error_response(rejection),
        ),
    };
    metrics::counter!("ingest_callbacks_received_total", "outcome" => outcome).increment(1);
    metrics::histogram!("ingest_request_duration_seconds", "outcome" => outcome)
        .record(latency.as_secs_f64());

    let latency_ms = latency.as_secs_f64() * 1000.0;
    match &result {
        Ok(callback) => tracing::info!(
            message_sid = %callback.message_sid,
            status = %callback.status,
            outcome,
            latency_ms,
            request_id,
            "callback accepted"
        ),
        Err(rejection) => tracing::warn!(
            outcome,
            latency_ms,
            request_id,
            reason = %rejection,
            "callback rejected"
        ),
    }
    tracing::Span::current().record("http.response.status_code", response.status().as_u16());
    let mut response = response;
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static("x-request-id"), value);
    }
    response
}

async fn accept(
    request: &HttpRequest,
    payload: web::Payload,
    state: &IngestState,
    request_id: &str,
) -> Result<StatusCallback, Rejection> {
    // actix refuses most oversized heads itself, but not one that arrives in
    // a single read after a partial one; this makes the limit exact.
    let header_bytes: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if header_bytes > HEADER_LIMIT_BYTES {
        return Err(Rejection::HeadersTooLarge {
            limit: HEADER_LIMIT_BYTES,
        });
    }
    let body_kind = header(request, CONTENT_TYPE.as_str())
        .and_then(BodyKind::from_content_type)
        .ok_or(Rejection::UnsupportedMediaType)?;
    let body = tokio::time::timeout(
        state.body_timeout,
        read_body(request, payload, state.body_limit_bytes),
    )
    .await
    .map_err(|_| Rejection::BodyTimeout(state.body_timeout))??;
    let signature = header(request, SIGNATURE_HEADER).ok_or(Rejection::MissingSignature)?;
    let url = signed_url(
        request,
        state.public_base_url.as_deref(),
        state.trust_forwarded_headers,
    );

    let callback = match body_kind {
        BodyKind::Form => {
            let params = FormParams::parse(&body).map_err(|e| Rejection::Malformed(e.into()))?;
            if !state.verifier.verify_form(&url, &params, signature) {
                return Err(Rejection::BadSignature);
            }
            StatusCallback::from_params(params)?
        }
        BodyKind::Json => {
            if !state.verifier.verify_json(&url, &body, signature) {
                return Err(Rejection::BadSignature);
            }
            StatusCallback::from_json(&body)?
        }
    };

    let span = tracing::Span::current();
    span.record("message_sid", callback.message_sid.as_str());
    span.record("twilio.message_sid", callback.message_sid.as_str());
    span.record("twilio.message_status", callback.status.as_str());

    let envelope = CallbackEnvelope {
        body: body.into(),
        body_kind,
        received_at: Utc::now(),
        request_id: request_id.to_owned(),
        idempotency_token: header(request, IDEMPOTENCY_HEADER).map(str::to_owned),
    };
    let publish_span = tracing::info_span!(
        "twilio.status publish",
        otel.kind = "producer",
        messaging.system = "rabbitmq",
        messaging.operation.type = "send",
        messaging.destination.name = %state.exchange,
        messaging.message.id = %request_id,
        twilio.message_sid = %callback.message_sid,
        twilio.message_status = %callback.status,
    );
    // The worker's spans continue from the publish span.
    let trace_context = trace_headers(&publish_span);
    metrics::gauge!("ingest_publishes_in_flight").increment(1.0);
    let published = state
        .publisher
        .publish(&envelope, trace_context)
        .instrument(publish_span)
        .await;
    metrics::gauge!("ingest_publishes_in_flight").decrement(1.0);
    let confirm_latency = published?;
    metrics::histogram!("ingest_publish_confirm_duration_seconds")
        .record(confirm_latency.as_secs_f64());
    Ok(callback)
}

fn header<'a>(request: &'a HttpRequest, name: &str) -> Option<&'a str> {
    request.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Reads the whole body, refusing it as soon as it passes `limit`.
async fn read_body(
    request: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::BytesMut, Rejection> {
    let declared = header(request, CONTENT_LENGTH.as_str()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(Rejection::TooLarge { limit });
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(1024).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| Rejection::BodyRead(e.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(Rejection::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The URL Twilio signed: the configured public base followed by the path
/// and query exactly as received. Without a public base: the forwarded
/// scheme and host when trusted, else `http://` + the Host header.
fn signed_url(
    request: &HttpRequest,
    public_base_url: Option<&str>,
    trust_forwarded: bool,
) -> String {
    let path_and_query = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    if let Some(base) = public_base_url {
        return format!("{base}{path_and_query}");
    }
    let forwarded = trust_forwarded.then(|| forwarded_origin(request)).flatten();
    let (scheme, host) = forwarded.unwrap_or_else(|| {
        let host = header(request, HOST.as_str()).unwrap_or("localhost");
        ("http".to_owned(), host.to_owned())
    });
    format!("{scheme}://{host}{path_and_query}")
}

/// Scheme and host from `Forwarded` (RFC 7239) or `X-Forwarded-Proto` /
/// `X-Forwarded-Host`, first hop only; the Host header fills a missing host.
fn forwarded_origin(request: &HttpRequest) -> Option<(String, String)> {
    let mut proto = None;
    let mut host = None;
    if let Some(forwarded) = header(request, "Forwarded") {
        let first_hop = forwarded.split(',').next().unwrap_or("");
        for pair in first_hop.split(';') {
            if let Some((key, value)) = pair.trim().split_once('=') {
                let value = value.trim_matches('"').to_owned();
                match key.trim().to_ascii_lowercase().as_str() {
                    "proto" => proto = Some(value),
                    "host" => host = Some(value),
                    _ => {}
                }
            }
        }
    }
    let first = |name: &str| {
        header(request, name)
            .and_then(|v| v.split(',').next())
            .map(|v| v.trim().to_owned())
    };
    let proto = proto
        .or_else(|| first("X-Forwarded-Proto"))?
        .to_ascii_lowercase();
    let host = host
        .or_else(|| first("X-Forwarded-Host"))
        .or_else(|| header(request, HOST.as_str()).map(str::to_owned))?;
    (proto == "http" || proto == "https").then_some((proto, host))
}
