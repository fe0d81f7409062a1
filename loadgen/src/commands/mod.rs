//! The subcommands: each module owns its arguments (`#[derive(Args)]`), its
//! `run` (which drives one of the measurement modules at the crate root) and
//! its report, and answers whether everything was as expected.

pub mod ceiling_broker;
pub mod ceiling_db;
pub mod ceiling_http;
pub mod check;
pub mod delete_topology;
pub mod read;
pub mod run;
pub mod search;
pub mod send;
pub mod watch_changes;

mod common;
mod report;
