//! The ingest service: the public HTTP edge that verifies Twilio status
//! callbacks and hands them to RabbitMQ before answering.
//!
//! A callback's way through: `request_telemetry` (span, request id, metrics,
//! log line) → `routes::status` → `body` (read within limits) →
//! `signed_url` + `verify` (signature first, then parse) → `publisher`
//! (group commit, a confirmed publish; the durable `spool` while RabbitMQ
//! cannot confirm) → answer.

pub mod app;
pub mod body;
pub mod config;
pub mod metrics;
pub mod publisher;
pub mod rejection;
pub mod request_telemetry;
pub mod routes;
pub mod signed_url;
pub mod spool;
pub mod state;
pub mod verify;
