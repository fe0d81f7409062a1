//! Every metric the worker records, declared once with its description.

use service_kit::metrics::MetricDef;

pub const EVENTS_PERSISTED: MetricDef = MetricDef::counter(
    "worker_events_persisted_total",
    "Status events newly stored in the history",
);
pub const DUPLICATES_SKIPPED: MetricDef = MetricDef::counter(
    "worker_duplicates_skipped_total",
    "Callbacks already stored (broker redeliveries, Twilio retries), absorbed by the dedup key",
);
pub const UNRECOGNISED_STATUSES: MetricDef = MetricDef::counter(
    "worker_unrecognised_statuses_total",
    "Callbacks with a MessageStatus this release does not know (stored, not ranked)",
);
pub const DATABASE_PAUSES: MetricDef = MetricDef::counter(
    "worker_database_pauses_total",
    "Times consumption paused because the database refused writes",
);
pub const DELIVERIES_RECYCLED: MetricDef = MetricDef::counter(
    "worker_deliveries_recycled_total",
    "Deliveries held through a long database outage and re-enqueued as fresh copies",
);
pub const RETRIES: MetricDef = MetricDef::counter(
    "worker_retries_total",
    "Callbacks sent to a retry queue, by attempt",
);
pub const DEAD_LETTERED: MetricDef = MetricDef::counter(
    "worker_dead_lettered_total",
    "Callbacks dead-lettered, by reason (poison, retries_exhausted)",
);
pub const BATCH_SIZE: MetricDef = MetricDef::histogram(
    "worker_batch_size",
    "Callbacks stored together in one statement",
);
pub const CALLBACKS_PER_DELIVERY: MetricDef = MetricDef::histogram(
    "worker_delivery_size",
    "Callbacks carried by one delivery (ingest's group commit)",
);
pub const DB_BATCH_DURATION: MetricDef = MetricDef::histogram(
    "worker_db_batch_duration_seconds",
    "Time to store one batch, by outcome (committed, failed)",
);
pub const CONSUMING: MetricDef = MetricDef::gauge(
    "worker_consuming",
    "1 while the worker consumes from RabbitMQ",
);
pub const DATABASE_UP: MetricDef = MetricDef::gauge(
    "worker_database_up",
    "1 while the database answers and takes writes",
);
pub const QUEUE_MESSAGES: MetricDef = MetricDef::gauge(
    "rabbitmq_queue_messages",
    "Messages waiting, by queue (main, retry, dead_letter)",
);

/// All of the above.
pub const ALL: &[MetricDef] = &[
    EVENTS_PERSISTED,
    DUPLICATES_SKIPPED,
    UNRECOGNISED_STATUSES,
    DATABASE_PAUSES,
    DELIVERIES_RECYCLED,
    RETRIES,
    DEAD_LETTERED,
    BATCH_SIZE,
    CALLBACKS_PER_DELIVERY,
    DB_BATCH_DURATION,
    CONSUMING,
    DATABASE_UP,
    QUEUE_MESSAGES,
];
