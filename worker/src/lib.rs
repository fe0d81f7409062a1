//! The worker: consumes status callbacks from RabbitMQ and records them in
//! Postgres exactly once, with a current state per message.
//!
//! A callback's way through: `consume` (sessions, batches, the processing
//! policy) → `decode` → `store` (`dedup`, `projection`, told apart from an
//! outage by `outage`) → ack; what cannot be stored goes through `failure`
//! (retry queues, dead-letter queue), which `dlq` lists and replays. The
//! read API and sending are `http` and `twilio_api`; `reconcile` asks
//! Twilio's Messages API about messages whose final status never came;
//! `retention` keeps the history's day partitions (`store::partitions`).

pub mod app;
pub mod config;
pub mod consume;
pub mod decode;
pub mod dlq;
pub mod entity;
pub mod failure;
pub mod health;
pub mod http;
pub mod metrics;
pub mod periodic;
pub mod queue_depth;
pub mod reconcile;
pub mod retention;
pub mod stats;
pub mod store;
pub mod twilio_api;
