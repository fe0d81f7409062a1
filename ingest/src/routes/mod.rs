//! HTTP routes of the ingest service.

pub mod probes;
pub mod status;
