//! The consumer's background jobs (reconciliation, history upkeep): run at
//! start, then on a fixed interval, until the worker stops.

use std::future::Future;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Runs `job` at once, then every `interval` (a run that overruns delays the
/// next instead of piling up), until `stop`, which also abandons a run in
/// progress. A job reports its own outcome: a failed run is followed by the
/// next one on schedule.
pub async fn every<F, Fut>(interval: Duration, stop: CancellationToken, mut job: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            () = job() => {}
        }
    }
}
