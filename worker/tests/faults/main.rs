//! Fault injection: the real binaries under load while something breaks,
//! then an exact accounting of every callback.
//!
//! The scenarios that stop the machine's RabbitMQ or Postgres are `#[ignore]`d
//! so they never disturb the parallel suite; `.ci/run` runs them afterwards,
//! one at a time (`cargo test -p worker --test faults -- --ignored --test-threads=1`),
//! and so does it with the scenarios on a three-node RabbitMQ cluster of
//! their own (`cluster`), which are heavy on the machine's two cores.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod accounting;
mod cluster;
mod outages;
mod processes;
mod rig;
mod scenarios;
