//! Every metric ingest records, declared once with its description.

use chrono::{DateTime, Utc};
use service_kit::metrics::MetricDef;

pub const CALLBACKS_RECEIVED: MetricDef = MetricDef::counter(
    "ingest_callbacks_received_total",
    "Requests to POST /twilio/status by outcome: accepted, spooled, bad_signature, \
     unknown_account, unknown_signing_key, unsupported_algorithm, bad_request, too_large, \
     unsupported_media_type, timeout, broker_unavailable, spool_unavailable",
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

pub const SPOOLING: MetricDef = MetricDef::gauge(
    "ingest_spooling",
    "1 while the local spool holds callbacks RabbitMQ has not confirmed yet",
);
pub const SPOOLED_CALLBACKS: MetricDef = MetricDef::gauge(
    "ingest_spool_callbacks",
    "Callbacks in the local spool, waiting to be drained into RabbitMQ",
);
pub const SPOOLED_BYTES: MetricDef =
    MetricDef::gauge("ingest_spool_bytes", "Bytes of spool segments on disk");
pub const SPOOL_OLDEST_AGE: MetricDef = MetricDef::gauge(
    "ingest_spool_oldest_age_seconds",
    "Age of the oldest callback in the spool (0 when empty)",
);
pub const SPOOL_WRITES: MetricDef = MetricDef::counter(
    "ingest_spool_writes_total",
    "Group-committed spool writes by outcome: written, full, error",
);
pub const SPOOL_DRAINED: MetricDef = MetricDef::counter(
    "ingest_spool_drained_callbacks_total",
    "Spooled callbacks republished to RabbitMQ and confirmed",
);
pub const SPOOL_DAMAGED_RECORDS: MetricDef = MetricDef::counter(
    "ingest_spool_damaged_records_total",
    "Spool records that could not be read back (a checksum mismatch, a record that is not a \
     batch; a remainder that cannot be framed counts as one), skipped while draining; their \
     segment is kept aside as *.damaged",
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
    SPOOLING,
    SPOOLED_CALLBACKS,
    SPOOLED_BYTES,
    SPOOL_OLDEST_AGE,
    SPOOL_WRITES,
    SPOOL_DRAINED,
    SPOOL_DAMAGED_RECORDS,
];

/// Sets the spool gauges from what the spool holds.
pub(crate) fn record_spool_stock(bytes: u64, callbacks: u64, oldest: Option<DateTime<Utc>>) {
    metrics::gauge!(SPOOLED_BYTES.name).set(bytes as f64);
    metrics::gauge!(SPOOLED_CALLBACKS.name).set(callbacks as f64);
    metrics::gauge!(SPOOLING.name).set(if callbacks > 0 { 1.0 } else { 0.0 });
    let age = oldest.map_or(0.0, |at| (Utc::now() - at).as_seconds_f64().max(0.0));
    metrics::gauge!(SPOOL_OLDEST_AGE.name).set(age);
}
