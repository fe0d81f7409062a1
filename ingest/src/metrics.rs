//! Every metric ingest records, declared once with its description.

use service_kit::metrics::MetricDef;

pub const CALLBACKS_RECEIVED: MetricDef = MetricDef::counter(
    "ingest_callbacks_received_total",
    "Requests to POST /twilio/status by outcome: accepted, bad_signature, bad_request, \
     too_large, unsupported_media_type, timeout, broker_unavailable",
);
pub const REQUEST_DURATION: MetricDef = MetricDef::histogram(
    "ingest_request_duration_seconds",
    "Time from request to answer on POST /twilio/status, by outcome",
);
pub const PUBLISH_CONFIRM_DURATION: MetricDef = MetricDef::histogram(
    "ingest_publish_confirm_duration_seconds",
    "Time from handing a verified callback to the publisher to RabbitMQ's confirm of its batch",
);
pub const PUBLISHES_IN_FLIGHT: MetricDef = MetricDef::gauge(
    "ingest_publishes_in_flight",
    "Callbacks waiting for their batch's confirm",
);
pub const BATCH_SIZE: MetricDef = MetricDef::histogram(
    "ingest_batch_size",
    "Callbacks published together in one broker message (group commit)",
);
pub const BATCHES_IN_FLIGHT: MetricDef = MetricDef::gauge(
    "ingest_batches_in_flight",
    "Batch messages published and waiting for their confirm",
);
pub const BROKER_BLOCKED: MetricDef = MetricDef::gauge(
    "ingest_broker_blocked",
    "1 while RabbitMQ blocks ingest's connection (memory or disk alarm)",
);

/// All of the above.
pub const ALL: &[MetricDef] = &[
    CALLBACKS_RECEIVED,
    REQUEST_DURATION,
    PUBLISH_CONFIRM_DURATION,
    PUBLISHES_IN_FLIGHT,
    BATCH_SIZE,
    BATCHES_IN_FLIGHT,
    BROKER_BLOCKED,
];
