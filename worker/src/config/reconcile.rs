//! Reconciliation with Twilio's Messages API: when a message without a
//! final status is looked up, how often, and how hard Twilio is asked.

use clap::Args;
use std::time::Duration;
use twilio_protocol::status::MessageStatus;

use super::ConfigError;

/// Twilio's own timings: a message waits in Twilio's queue up to its
/// validity period (4 hours by default), and Twilio advises asking about
/// one still without a final status after 12 hours. `scheduled` is left
/// out: its send time can be weeks away.
pub const DEFAULT_AFTER: &str = "accepted=4h,queued=4h,sending=4h,sent=12h";

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// Seconds between reconciliation runs of the consumer; 0 turns them off.
    /// Runs only when Twilio API credentials are configured.
    #[arg(
        long,
        hide_env_values = true,
        env = "WORKER_RECONCILE_INTERVAL_SECS",
        value_parser = clap::value_parser!(u64).range(0..=604_800),
        default_value_t = 900
    )]
    pub reconcile_interval_secs: u64,

    /// Per status, how long a message may go without news before Twilio is
    /// asked: `status=duration,...` (durations like 30m, 4h, 2d). Statuses
    /// not listed are never asked about. Each further check of the same
    /// message waits twice as long as the one before.
    #[arg(long, hide_env_values = true, env = "WORKER_RECONCILE_AFTER", default_value = DEFAULT_AFTER)]
    pub reconcile_after: String,

    /// Most messages looked up in one run (oldest first).
    #[arg(
        long,
        hide_env_values = true,
        env = "WORKER_RECONCILE_MAX_PER_RUN",
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000),
        default_value_t = 1000
    )]
    pub reconcile_max_per_run: usize,

    /// Requests in flight to Twilio at once, per account.
    #[arg(
        long,
        hide_env_values = true,
        env = "WORKER_RECONCILE_CONCURRENCY",
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=64),
        default_value_t = 4
    )]
    pub reconcile_concurrency: usize,

    /// Times a message is looked up before it is left as it is.
    #[arg(
        long,
        hide_env_values = true,
        env = "WORKER_RECONCILE_MAX_CHECKS",
        value_parser = clap::value_parser!(i16).range(1..=100),
        default_value_t = 4
    )]
    pub reconcile_max_checks: i16,
}

#[derive(Clone, Debug)]
pub struct ReconcileConfig {
    /// `None`: no periodic runs (the one-shot `worker reconcile` still works).
    pub interval: Option<Duration>,
    /// Statuses looked up, with the time without news before the first check.
    pub after: Vec<(MessageStatus, Duration)>,
    pub max_per_run: usize,
    pub concurrency: usize,
    pub max_checks: i16,
}

impl ReconcileConfig {
    pub(super) fn from_args(args: ReconcileArgs) -> Result<Self, ConfigError> {
        if args.reconcile_max_per_run == 0
            || args.reconcile_concurrency == 0
            || args.reconcile_max_checks <= 0
        {
            return Err(ConfigError::Reconcile(
                "WORKER_RECONCILE_MAX_PER_RUN, _CONCURRENCY and _MAX_CHECKS must be above zero"
                    .into(),
            ));
        }
        Ok(Self {
            interval: (args.reconcile_interval_secs > 0)
                .then(|| Duration::from_secs(args.reconcile_interval_secs)),
            after: parse_after(&args.reconcile_after).map_err(ConfigError::Reconcile)?,
            max_per_run: args.reconcile_max_per_run,
            concurrency: args.reconcile_concurrency,
            max_checks: args.reconcile_max_checks,
        })
    }
}

/// `queued=4h,sent=12h`: only statuses that are not final can be listed.
fn parse_after(raw: &str) -> Result<Vec<(MessageStatus, Duration)>, String> {
    let mut after = Vec::new();
    for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (status, duration) = entry
            .split_once('=')
            .ok_or_else(|| format!("WORKER_RECONCILE_AFTER: {entry:?} is not status=duration"))?;
        let status: MessageStatus = status
            .trim()
            .parse()
            .map_err(|_| format!("WORKER_RECONCILE_AFTER: {status:?} is not a message status"))?;
        if status.rank() >= 4 {
            return Err(format!(
                "WORKER_RECONCILE_AFTER: {status} is final, nothing to reconcile"
            ));
        }
        let duration = humantime::parse_duration(duration.trim())
            .map_err(|e| format!("WORKER_RECONCILE_AFTER: {:?}: {e}", duration.trim()))?;
        after.retain(|(known, _)| *known != status);
        after.push((status, duration));
    }
    Ok(after)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_twilio_timings() {
        let after = parse_after(DEFAULT_AFTER).unwrap();
        assert_eq!(after.len(), 4);
        assert!(after.contains(&(MessageStatus::Sent, Duration::from_secs(12 * 3600))));
        assert!(after.contains(&(MessageStatus::Queued, Duration::from_secs(4 * 3600))));
    }

    #[test]
    fn refuses_final_and_unknown_statuses_and_bad_durations() {
        assert!(parse_after("delivered=1h").unwrap_err().contains("final"));
        assert!(parse_after("nope=1h")
            .unwrap_err()
            .contains("not a message status"));
        assert!(parse_after("sent=soon").is_err());
        assert!(parse_after("sent").is_err());
        assert_eq!(
            parse_after("sent=1h, sent=2m").unwrap(),
            [(MessageStatus::Sent, Duration::from_secs(120))]
        );
    }
}
