//! How long the event history is kept, and how often its partitions are
//! looked after.

use clap::Args;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Days of event history kept: whole days older than this are dropped
    /// (a partition at a time). 0 keeps everything. The `messages` rows
    /// (each message's current state) are kept either way.
    #[arg(
        long,
        hide_env_values = true,
        env = "WORKER_RETENTION_DAYS",
        value_parser = clap::value_parser!(u32).range(0..=36_500),
        default_value_t = 0
    )]
    pub retention_days: u32,

    /// Seconds between the consumer's history upkeep runs: create the day
    /// partitions ahead of need, and drop those past the retention.
    #[arg(
        long,
        hide_env_values = true,
        env = "WORKER_HISTORY_UPKEEP_SECS",
        value_parser = clap::value_parser!(u64).range(60..=86_400),
        default_value_t = 3600
    )]
    pub history_upkeep_secs: u64,
}

#[derive(Clone, Debug)]
pub struct HistoryConfig {
    /// `None`: keep the history for ever.
    pub retention_days: Option<u32>,
    pub upkeep_interval: Duration,
}

impl HistoryConfig {
    pub fn from_args(args: &HistoryArgs) -> Self {
        Self {
            retention_days: (args.retention_days > 0).then_some(args.retention_days),
            upkeep_interval: Duration::from_secs(args.history_upkeep_secs.max(1)),
        }
    }
}
