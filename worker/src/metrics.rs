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
pub const RECONCILE_CHECKED: MetricDef = MetricDef::counter(
    "worker_reconcile_checked_total",
    "Messages without a final status looked up in Twilio's Messages API",
);
pub const RECONCILE_RECOVERED: MetricDef = MetricDef::counter(
    "worker_reconcile_recovered_total",
    "Statuses learned from Twilio's Messages API and recorded, by status",
);
pub const RECONCILE_API_ERRORS: MetricDef = MetricDef::counter(
    "worker_reconcile_api_errors_total",
    "Lookups in Twilio's Messages API that gave no status, by kind (not_found, rate_limited, \
     auth, server, unreachable, unexpected, no_credentials)",
);
pub const STALE_MESSAGES: MetricDef = MetricDef::gauge(
    "worker_stale_messages",
    "Messages without news for longer than WORKER_RECONCILE_AFTER allows their status, by \
     status (as of the last reconciliation run)",
);
pub const FINAL_OUTCOMES: MetricDef = MetricDef::counter(
    "worker_final_outcomes_total",
    "Messages reaching their first final status (counted once each), by their account, that \
     status and its error code (empty: none; other: a code not in Twilio's table, or a \
     malformed AccountSid)",
);
pub const TIME_TO_FINAL: MetricDef = MetricDef::histogram(
    "worker_time_to_final_seconds",
    "From a message's first event to its first final one, by outcome (the final status)",
);
pub const CONFLICTING_OUTCOMES: MetricDef = MetricDef::counter(
    "worker_conflicting_outcomes_total",
    "Messages that got a second, different outcome (delivered and undelivered, say); \
     divided by worker_final_outcomes_total, the share of conflicting messages",
);
pub const FOREIGN_ACCOUNT_EVENTS: MetricDef = MetricDef::counter(
    "worker_foreign_account_events_total",
    "Callbacks for a message signed by another account than the one it belongs to: kept in \
     the history, never applied to the message's state",
);

pub const HISTORY_PARTITIONS_DROPPED: MetricDef = MetricDef::counter(
    "worker_history_partitions_dropped_total",
    "Day partitions of the event history dropped past the retention horizon (WORKER_RETENTION_DAYS)",
);
pub const HISTORY_OLDEST_DAY: MetricDef = MetricDef::gauge(
    "worker_history_oldest_day_timestamp_seconds",
    "Start (Unix time) of the oldest day the event history still holds",
);

pub const CHANGES_PUBLISHED: MetricDef = MetricDef::counter(
    "worker_changes_published_total",
    "Changes of a message's status published to the change feed and confirmed by RabbitMQ, \
     by status",
);
pub const CHANGE_PUBLISH_FAILURES: MetricDef = MetricDef::counter(
    "worker_change_publish_failures_total",
    "Change-feed publishes that RabbitMQ did not confirm (kept in the outbox and published \
     again), by reason (nack, timeout, broker)",
);
pub const CHANGE_OUTBOX_DEPTH: MetricDef = MetricDef::gauge(
    "worker_change_outbox_depth",
    "Changes committed but not yet confirmed published (the outbox, message_changes)",
);
pub const CHANGE_OUTBOX_OLDEST: MetricDef = MetricDef::gauge(
    "worker_change_outbox_oldest_seconds",
    "Age of the oldest change not yet confirmed published (0: none waiting)",
);
pub const CHANGE_PUBLISH_LAG: MetricDef = MetricDef::histogram(
    "worker_change_publish_lag_seconds",
    "From a change's commit to RabbitMQ's confirm of its publish",
);
pub const CHANGE_ROUND_SIZE: MetricDef = MetricDef::histogram(
    "worker_change_round_size",
    "Changes the relay published together in one round (at most one per message)",
);
pub const CHANGE_RELAY_LEADER: MetricDef = MetricDef::gauge(
    "worker_change_relay_leader",
    "1 while this worker is the one that publishes the change feed",
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
    RECONCILE_CHECKED,
    RECONCILE_RECOVERED,
    RECONCILE_API_ERRORS,
    STALE_MESSAGES,
    FINAL_OUTCOMES,
    TIME_TO_FINAL,
    CONFLICTING_OUTCOMES,
    FOREIGN_ACCOUNT_EVENTS,
    HISTORY_PARTITIONS_DROPPED,
    HISTORY_OLDEST_DAY,
    CHANGES_PUBLISHED,
    CHANGE_PUBLISH_FAILURES,
    CHANGE_OUTBOX_DEPTH,
    CHANGE_OUTBOX_OLDEST,
    CHANGE_PUBLISH_LAG,
    CHANGE_ROUND_SIZE,
    CHANGE_RELAY_LEADER,
];
