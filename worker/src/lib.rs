//! The worker: consumes status callbacks from RabbitMQ and records them in
//! Postgres exactly once, with a current state per message.

pub mod app;
pub mod config;
pub mod consumer;
pub mod db_failure;
pub mod decode;
pub mod dlq;
pub mod entity;
pub mod failure_headers;
pub mod failure_router;
pub mod health;
pub mod http;
pub mod nodelay;
pub mod queue_depth;
pub mod store;
pub mod twilio_api;
