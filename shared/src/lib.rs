//! What ingest and worker share: Twilio's protocol (signature, callback
//! fields, statuses, error codes), the queue message format and the RabbitMQ
//! topology.

pub mod broker;
pub mod callback;
pub mod cli;
pub mod envelope;
pub mod error_codes;
pub mod form;
pub mod metrics;
pub mod signature;
pub mod status;
pub mod telemetry;
pub mod topology;
pub mod vectors;
