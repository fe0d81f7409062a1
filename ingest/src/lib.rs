//! The ingest service: the public HTTP edge that verifies Twilio status
//! callbacks and hands them to RabbitMQ before answering.

pub mod app;
pub mod config;
pub mod publisher;
pub mod rejection;
pub mod routes;
