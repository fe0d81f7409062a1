//! How long the event history is kept, and how often its partitions are
//! looked after.

use clap::Args;
use std::time::Duration;

/// How often the consumer looks after the history (creates the day
/// partitions ahead of need, drops those past the retention): partitions
/// are whole days, so hourly is ample.
const HISTORY_UPKEEP_INTERVAL: Duration = Duration::from_secs(3600);

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Days of event history kept: whole days older than this are dropped
    /// (a partition at a time). 0 keeps everything. The `messages` rows
    /// (each message's current state) are kept either way.
    #[arg(
        long,
        env = "WORKER_RETENTION_DAYS",
        value_parser = clap::value_parser!(u32).range(0..=36_500),
        default_value_t = 0
    )]
    pub retention_days: u32,
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
            upkeep_interval: HISTORY_UPKEEP_INTERVAL,
        }
    }
}
