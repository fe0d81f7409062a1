//! Ingest against the real RabbitMQ: the app runs in-process on port 0,
//! each test on a topology of its own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod accounts;
mod binary;
mod helpers;
mod hostile;
mod process;
mod publishing;
mod rejections;
mod resilience;
mod spool;
mod vectors;
