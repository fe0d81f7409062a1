//! Worker configuration and command line: read once, validated before
//! anything starts. `cli` holds the flags and subcommands, `common` what
//! every subcommand needs, `consumer` the consumer's settings and
//! `reconcile_run` the one-shot reconciliation's; `error` says why a
//! configuration is refused. Twilio's API, reconciliation and the history
//! each have their own module.

mod cli;
mod common;
mod consumer;
mod error;
mod history;
mod reconcile;
mod reconcile_run;
mod retired;
mod twilio;

#[cfg(test)]
mod tests;

pub use cli::{
    Command, CommonArgs, ConsumeArgs, DlqCommand, ReconcileCommand, RetentionCommand, WorkerCli,
};
pub use common::CommonConfig;
pub use consumer::WorkerConfig;
pub use error::ConfigError;
pub use history::{HistoryArgs, HistoryConfig};
pub use reconcile::{ReconcileArgs, ReconcileConfig};
pub use reconcile_run::ReconcileRunConfig;
pub use retired::RETIRED;
pub use twilio::{ApiCredentials, SendingConfig, TwilioApiConfig, TwilioArgs};
