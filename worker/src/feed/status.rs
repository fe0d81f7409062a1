//! What the worker shows of the feed: on `/readyz` (`FeedStatus::detail`)
//! and as gauges. Every worker measures the outbox, leader or not, so it
//! is seen while the relay cannot publish (RabbitMQ away): that is when it
//! matters.

use sea_orm::DatabaseConnection;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use super::{outbox, ChangeFeed};
use crate::metrics::{CHANGE_OUTBOX_DEPTH, CHANGE_OUTBOX_OLDEST, CHANGE_RELAY_LEADER};

/// How often the outbox is measured.
const MEASURE_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
pub struct FeedStatus {
    feed: ChangeFeed,
    leader: AtomicBool,
    depth: AtomicU64,
    /// Seconds, as `f64` bits.
    oldest: AtomicU64,
    measured: AtomicBool,
}

impl FeedStatus {
    pub fn new(feed: ChangeFeed) -> Self {
        Self {
            feed,
            ..Self::default()
        }
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.store(leader, Ordering::SeqCst);
        metrics::gauge!(CHANGE_RELAY_LEADER.name).set(if leader { 1.0 } else { 0.0 });
    }

    fn set_outbox(&self, depth: u64, oldest: f64) {
        self.depth.store(depth, Ordering::SeqCst);
        self.oldest.store(oldest.to_bits(), Ordering::SeqCst);
        self.measured.store(true, Ordering::SeqCst);
        metrics::gauge!(CHANGE_OUTBOX_DEPTH.name).set(depth as f64);
        metrics::gauge!(CHANGE_OUTBOX_OLDEST.name).set(oldest);
    }

    /// `/readyz`'s `change_feed`: informative only; a feed that waits for
    /// RabbitMQ does not make the worker unready (callbacks are still
    /// stored, and the outbox keeps every change).
    pub fn detail(&self) -> serde_json::Value {
        if !self.feed.is_on() {
            return serde_json::json!({ "enabled": false });
        }
        let measured = self.measured.load(Ordering::SeqCst);
        serde_json::json!({
            "enabled": true,
            "relaying": self.leader.load(Ordering::SeqCst),
            "outbox_depth": measured.then(|| self.depth.load(Ordering::SeqCst)),
            "oldest_seconds": measured
                .then(|| (f64::from_bits(self.oldest.load(Ordering::SeqCst)) * 1000.0).round() / 1000.0),
        })
    }
}

/// Measures the outbox every few seconds until `stop`.
pub async fn measure_periodically(
    db: DatabaseConnection,
    status: std::sync::Arc<FeedStatus>,
    stop: CancellationToken,
) {
    crate::periodic::every(MEASURE_EVERY, stop, || async {
        match outbox::measure(&db).await {
            Ok((depth, oldest)) => status.set_outbox(depth, oldest),
            Err(error) => tracing::debug!(%error, "cannot measure the change outbox"),
        }
    })
    .await;
}
