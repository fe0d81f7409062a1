//! Each callback's spans in the worker, continuing the trace ingest started
//! (its W3C context rides with the callback): a consumer span per callback,
//! and a persist span under it for the statement that stores its batch.

use lapin::message::Delivery;
use service_kit::telemetry::parent_from_headers;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::decode::DecodedCallback;

/// The consumer span of one callback.
pub fn process_span(delivery: &Delivery, event: &DecodedCallback, queue: &str) -> tracing::Span {
    let span = tracing::info_span!(
        parent: None,
        "twilio.status process",
        otel.kind = "consumer",
        messaging.system = "rabbitmq",
        messaging.operation.type = "process",
        messaging.destination.name = %queue,
        messaging.message.id = event.envelope.request_id.map(tracing::field::display),
        messaging.rabbitmq.message.delivery_tag = delivery.delivery_tag,
        message_sid = %event.callback.message_sid,
        twilio.message_sid = %event.callback.message_sid,
        twilio.message_status = %event.callback.status,
    );
    let context = &event.envelope.trace_context;
    if !context.is_empty() {
        let _ = span.set_parent(parent_from_headers(|name| {
            context
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        }));
    }
    span
}

/// The persist span of one callback stored in a batch of `batch_size`.
pub fn persist_span(parent: &tracing::Span, batch_size: usize) -> tracing::Span {
    tracing::info_span!(
        parent: parent,
        "twilio.status persist",
        db.system.name = "postgresql",
        db.operation.name = "INSERT",
        db.collection.name = "message_status_events",
        batch.size = batch_size,
    )
}
