//! Reconciliation with Twilio's Messages API: when a message without a
//! final status is looked up, how often, and how hard Twilio is asked.

use clap::Args;
use std::time::Duration;
use twilio_protocol::status::MessageStatus;

use super::error::{AfterError, ConfigError};

/// Twilio's own timings: a message waits in Twilio's queue up to its
/// validity period (4 hours by default), and Twilio advises asking about
/// one still without a final status after 12 hours. `scheduled` is left
/// out: its send time can be weeks away.
pub const DEFAULT_AFTER: &str = "accepted=4h,queued=4h,sending=4h,sent=12h";

/// How often the consumer reconciles: a message is due hours after its
/// last news (`DEFAULT_AFTER`), so a quarter of an hour late is no matter.
const RECONCILE_INTERVAL: Duration = Duration::from_secs(900);

/// Most messages looked up in one run (oldest first): bounds a run to
/// minutes, well within `RECONCILE_INTERVAL`.
const RECONCILE_MAX_PER_RUN: usize = 1000;

/// Requests in flight to Twilio at once, per account: a few, well inside
/// Twilio's per-account concurrency limit.
const RECONCILE_CONCURRENCY: usize = 4;

/// Times a message is looked up before it is left as it is (each check
/// waits twice as long as the one before).
const RECONCILE_MAX_CHECKS: i16 = 4;

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// Per status, how long a message may go without news before Twilio is
    /// asked: `status=duration,...` (durations like 30m, 4h, 2d). Statuses
    /// not listed are never asked about; empty turns the consumer's periodic
    /// reconciliation off. Each further check of the same message waits
    /// twice as long as the one before. Runs only when Twilio API
    /// credentials are configured.
    #[arg(long, env = "WORKER_RECONCILE_AFTER", default_value = DEFAULT_AFTER)]
    pub reconcile_after: String,
}

#[derive(Clone, Debug)]
pub struct ReconcileConfig {
    /// `None`: no periodic runs (no status to look up). The fields below
    /// are set from constants; tests change them in process.
    pub interval: Option<Duration>,
    /// Statuses looked up, with the time without news before the first check.
    pub after: Vec<(MessageStatus, Duration)>,
    pub max_per_run: usize,
    pub concurrency: usize,
    pub max_checks: i16,
}

impl ReconcileConfig {
    pub(super) fn from_args(args: ReconcileArgs) -> Result<Self, ConfigError> {
        let after = parse_after(&args.reconcile_after)?;
        // An earlier release turned the periodic runs off with an interval
        // of 0; a deployment that still says so is obeyed (and warned, see
        // `RETIRED`) rather than starting to call Twilio's API.
        let turned_off = std::env::var("WORKER_RECONCILE_INTERVAL_SECS")
            .is_ok_and(|interval| interval.trim() == "0");
        Ok(Self {
            interval: (!after.is_empty() && !turned_off).then_some(RECONCILE_INTERVAL),
            after,
            max_per_run: RECONCILE_MAX_PER_RUN,
            concurrency: RECONCILE_CONCURRENCY,
            max_checks: RECONCILE_MAX_CHECKS,
        })
    }

    /// For the one-shot `worker reconcile`, an explicit ask: an empty
    /// `WORKER_RECONCILE_AFTER` (the consumer's off switch) means the defaults.
    pub(super) fn for_one_run(args: ReconcileArgs) -> Result<Self, ConfigError> {
        let mut config = Self::from_args(args)?;
        if config.after.is_empty() {
            config.after = parse_after(DEFAULT_AFTER)?;
        }
        Ok(config)
    }
}

/// `queued=4h,sent=12h`: only statuses that are not final can be listed.
fn parse_after(raw: &str) -> Result<Vec<(MessageStatus, Duration)>, AfterError> {
    let mut after = Vec::new();
    for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (status, duration) = entry
            .split_once('=')
            .ok_or_else(|| AfterError::NotStatusDuration(entry.to_owned()))?;
        let status = status.trim();
        let status: MessageStatus = status
            .parse()
            .map_err(|e| AfterError::UnknownStatus(status.to_owned(), e))?;
        if status.is_final() {
            return Err(AfterError::FinalStatus(status));
        }
        let duration = duration.trim();
        let duration = humantime::parse_duration(duration)
            .map_err(|e| AfterError::Duration(duration.to_owned(), e))?;
        after.retain(|(known, _)| *known != status);
        after.push((status, duration));
    }
    Ok(after)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_list_turns_the_runs_off_but_not_a_run_asked_for() {
        let empty = || ReconcileArgs {
            reconcile_after: String::new(),
        };
        let consumer = ReconcileConfig::from_args(empty()).unwrap();
        assert_eq!((consumer.interval, consumer.after.len()), (None, 0));
        let one_run = ReconcileConfig::for_one_run(empty()).unwrap();
        assert_eq!(one_run.after, parse_after(DEFAULT_AFTER).unwrap());
    }

    #[test]
    fn defaults_follow_twilio_timings() {
        let after = parse_after(DEFAULT_AFTER).unwrap();
        assert_eq!(after.len(), 4);
        assert!(after.contains(&(MessageStatus::Sent, Duration::from_secs(12 * 3600))));
        assert!(after.contains(&(MessageStatus::Queued, Duration::from_secs(4 * 3600))));
    }

    #[test]
    fn refuses_final_and_unknown_statuses_and_bad_durations() {
        let final_status = parse_after("delivered=1h").unwrap_err().to_string();
        assert!(final_status.contains("final"), "{final_status}");
        let unknown = parse_after("nope=1h").unwrap_err().to_string();
        assert!(unknown.contains("not a message status"), "{unknown}");
        assert!(parse_after("sent=soon").is_err());
        assert!(parse_after("sent").is_err());
        assert_eq!(
            parse_after("sent=1h, sent=2m").unwrap(),
            [(MessageStatus::Sent, Duration::from_secs(120))]
        );
    }
}
