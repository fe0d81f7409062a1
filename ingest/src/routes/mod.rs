//! HTTP routes of the ingest service (the probes and `/metrics` are
//! `service_kit::probes`, answering from `readiness`).

pub(crate) mod status;
