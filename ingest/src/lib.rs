//! The ingest service: the public HTTP edge that verifies Twilio status
//! callbacks and hands them to RabbitMQ before answering.
//!
//! A callback's way through: `request_telemetry` (span, request id, metrics,
//! log line) → `routes::status` → `body` (read within limits) →
//! `signed_url` + `verify` (signature first, then parse) → `publisher`
//! (group commit, a confirmed publish over the `link` to RabbitMQ; the
//! durable `spool` while RabbitMQ cannot confirm) → answer. `readiness`
//! says on `/readyz` whether a callback accepted now would be kept.

pub mod app;
mod body;
pub mod config;
mod link;
pub mod metrics;
mod publisher;
mod readiness;
mod rejection;
mod request_telemetry;
mod routes;
mod signed_url;
mod spool;
mod state;
mod verify;

/// What the integration tests need beyond the public API: the spool's
/// on-disk format, to write a segment as an earlier release did and to
/// read back what this one wrote.
#[cfg(feature = "test-support")]
pub mod test_support {
    pub use crate::spool::segment::{encode_record, file_name, read, LEGACY_HEADER};

    /// The callbacks of every record in a segment that reads back whole,
    /// record by record.
    pub fn spooled_batches(
        path: &std::path::Path,
    ) -> std::io::Result<Vec<Vec<queue_wire::envelope::CallbackEnvelope>>> {
        let contents = read(path)?;
        contents
            .payloads
            .into_iter()
            .map(|payload| {
                crate::spool::record::Record::decode(contents.format, payload)
                    .map_err(std::io::Error::other)?
                    .envelopes()
                    .map_err(std::io::Error::other)
            })
            .collect()
    }
}
