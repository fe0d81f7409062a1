//! What both services run on: structured logs and traces (`telemetry`), the
//! Prometheus recorder (`metrics`), one backoff for every reconnect loop
//! (`backoff`), the stop signal (`shutdown`), and the command-line exit
//! conventions (`cli`), the probes and metrics routes (`probes`) and locks
//! that outlive a panic (`sync`).

pub mod backoff;
pub mod cli;
pub mod metrics;
pub mod probes;
pub mod shutdown;
pub mod sync;
pub mod telemetry;
