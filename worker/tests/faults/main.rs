//! Fault injection: the real binaries under load while something breaks,
//! then an exact accounting of every callback.
//!
//! The scenarios that stop the machine's RabbitMQ or Postgres are `#[ignore]`d
//! so they never disturb the parallel suite; `.ci/run` runs them afterwards,
//! one at a time (`cargo test -p worker --test faults -- --ignored --test-threads=1`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod accounting;
mod processes;
mod scenarios;
