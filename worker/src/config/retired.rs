//! The settings earlier releases read that are constants now, with what
//! took their place: a deployment that still sets one is warned at start
//! (`service_kit::cli::warn_retired_settings`), not refused, so that an
//! upgrade never stops on an old variable.

use service_kit::cli::Retired;

pub const RETIRED: &[Retired] = &[
    retired(
        "DATABASE_POOL_SIZE",
        "the writers' pool is WORKER_CONCURRENCY + 6 connections",
    ),
    retired("WORKER_PREFETCH", "512 deliveries in hand per consumer"),
    retired("WORKER_MAX_BATCH", "256 callbacks a statement"),
    retired(
        "WORKER_HOLD_LIMIT_SECS",
        "deliveries held through an outage are re-enqueued after 600 s",
    ),
    retired("WORKER_HISTORY_UPKEEP_SECS", "the history upkeep runs every hour"),
    retired(
        "WORKER_RECONCILE_INTERVAL_SECS",
        "reconciliation runs every 15 minutes; an empty WORKER_RECONCILE_AFTER turns it off (an interval of 0 still does, until a later release)",
    ),
    retired("WORKER_RECONCILE_MAX_PER_RUN", "1000 lookups a run"),
    retired("WORKER_RECONCILE_CONCURRENCY", "4 lookups in flight per account"),
    retired("WORKER_RECONCILE_MAX_CHECKS", "4 lookups of one message"),
];

const fn retired(variable: &'static str, now: &'static str) -> Retired {
    Retired { variable, now }
}
