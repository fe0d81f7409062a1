//! The worker: consumes status callbacks from RabbitMQ and records them in
//! Postgres exactly once, with a current state per message.
//!
//! A callback's way through: `consume` (sessions, batches, the processing
//! policy) → `decode` → `store` (`dedup`, `projection`, told apart from an
//! outage by `outage`) → ack; what cannot be stored goes through `failure`
//! (retry queues, dead-letter queue), which `dlq` lists and replays. The
//! HTTP port is `http` (probes, reads, `stats`, sending through
//! `twilio_api`); `reconcile` asks Twilio's Messages API about messages
//! whose final status never came; `retention` keeps the history's day
//! partitions (`store::partitions`); `commands` runs the subcommands.
//!
//! Public: what the binary, `ops-check` and embedding tests need (`run`,
//! `app`, `config`, `metrics`). The rest is the crate's own; its tests and
//! benches reach it through `test_support` (feature `test-support`).

pub mod app;
mod commands;
pub mod config;
mod console;
mod consume;
mod decode;
mod dlq;
mod entity;
mod failure;
mod feed;
mod health;
mod http;
pub mod metrics;
mod periodic;
mod queue_depth;
mod reconcile;
mod retention;
mod search;
mod stats;
mod store;
mod twilio_api;

pub use commands::run;

/// The internals the integration tests, `loadgen`'s database ceiling and the
/// `store_statement` example use, by the module they live in. Not part of
/// the program's interface: only built with the `test-support` feature.
#[cfg(feature = "test-support")]
pub mod test_support {
    pub mod decode {
        pub use crate::decode::{decode, dedup, DecodedCallback};
    }
    pub mod dlq {
        pub use crate::dlq::{list, purge, replay, DeadLetterSummary, LetterFilter};
    }
    pub mod feed {
        pub use crate::feed::ChangeFeed;
    }
    pub mod entity {
        pub use crate::entity::{message, message_status_event, StoredStatus};
    }
    pub mod reconcile {
        pub use crate::reconcile::{Action, Reconciler, RunSummary};
    }
    pub mod retention {
        pub use crate::retention::run_once;
    }
    pub mod stats {
        pub use crate::stats::REUSE_FOR;
    }
    pub mod store {
        pub use crate::store::{
            columns, database, event, outcomes, partitions, persist_batch, projection,
            record_sent_message, socket_options,
        };
    }
    pub mod twilio_api {
        pub use crate::twilio_api::TwilioClient;
    }
}
