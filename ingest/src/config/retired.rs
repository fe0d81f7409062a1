//! The settings earlier releases read that are constants now, with what
//! took their place: a deployment that still sets one is warned at start
//! (`service_kit::cli::warn_retired_settings`), not refused, so that an
//! upgrade never stops on an old variable.

use service_kit::cli::Retired;

pub const RETIRED: &[Retired] = &[
    retired(
        "INGEST_BATCH_MAX_CALLBACKS",
        "64 callbacks a broker message",
    ),
    retired(
        "INGEST_BATCH_MAX_BYTES",
        "512 KiB of bodies a broker message",
    ),
    retired(
        "INGEST_BATCHES_IN_FLIGHT",
        "4 batch messages awaiting confirms",
    ),
    retired("INGEST_BATCH_LINGER_US", "a batch closes at once"),
    retired("INGEST_BODY_TIMEOUT_MS", "a body has 10 s to arrive"),
    retired("INGEST_KEEP_ALIVE_SECS", "idle connections are kept 120 s"),
    retired(
        "INGEST_SHUTDOWN_TIMEOUT_SECS",
        "in-flight requests get 20 s after SIGTERM",
    ),
    retired(
        "INGEST_SPOOL_AFTER_MS",
        "a batch is spooled after the smaller of 1 s and half of INGEST_CONFIRM_TIMEOUT_MS",
    ),
    retired("INGEST_SPOOL_SEGMENT_BYTES", "spool segments of 16 MiB"),
    retired("INGEST_WORKERS", "one HTTP worker per core"),
];

const fn retired(variable: &'static str, now: &'static str) -> Retired {
    Retired { variable, now }
}
