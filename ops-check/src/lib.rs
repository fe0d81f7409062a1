//! The operations files agree with the code. `docker-compose.yml`, every
//! manifest under `deploy/` and the `Dockerfile` may only set environment
//! variables the program in that container reads (taken from its clap
//! definition at run time), must listen on and probe the programs' default
//! ports, probe `/healthz` (liveness) and `/readyz` (readiness), and run the
//! real binaries. The monitoring files under `ops/` must parse and name only
//! metrics the code declares (`ingest::metrics::ALL`, `worker::metrics::ALL`).
//! The README's configuration table lists exactly the variables the
//! programs read, with their defaults (`readme`).
//!
//! One module per kind of file; each check collects every problem it finds
//! into [`Problems`]. The checks run as this crate's tests
//! (`tests/ops_files.rs`); they read files and start nothing.

pub mod compose;
pub mod dockerfile;
pub mod grafana;
pub mod kubernetes;
pub mod prometheus;

pub mod cargo;
pub mod container;
pub mod files;
pub mod metrics;
pub mod ops;
pub mod problems;
pub mod programs;
pub mod readme;
pub mod yaml;

pub use problems::Problems;
