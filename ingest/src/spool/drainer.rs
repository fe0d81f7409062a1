//! Republishing the spool: once RabbitMQ is connected and not blocking, the
//! oldest segment is read and each record published as the batch message it
//! holds, with confirms, several in flight. The segment is removed only when
//! every record in it is confirmed; on any failure draining pauses with
//! backoff and that segment is tried again later, whole (the records already
//! confirmed are published twice, and the worker's dedup keeps one).

use futures_util::stream::{FuturesUnordered, StreamExt};
use queue_wire::batch::{batch_properties, QueueMessage};
use service_kit::backoff::Backoff;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use super::{decode_payload, segment, SegmentInfo, Spool};
use crate::metrics::SPOOL_DRAINED;
use crate::publisher::{Destination, LinkSupervisor, PublishError};

/// How often an idle drainer looks for work and a ready broker.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Records published and waiting for their confirm at once.
const IN_FLIGHT: usize = 8;

#[derive(Debug, thiserror::Error)]
enum DrainError {
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("cannot read or remove a spool segment: {0}")]
    Io(#[from] std::io::Error),
}

pub struct Drainer {
    pub spool: Spool,
    pub link: Arc<LinkSupervisor>,
    pub destination: Arc<Destination>,
    pub confirm_timeout: Duration,
    pub stop: CancellationToken,
}

impl Drainer {
    pub async fn run(self) {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        let mut drained_since_empty = 0u64;
        while self.wait_for_work().await {
            let Some(segment) = self.spool.next_to_drain().await else {
                continue;
            };
            match self.drain(&segment).await {
                Ok(drained) => {
                    backoff.reset();
                    drained_since_empty += drained;
                    metrics::counter!(SPOOL_DRAINED.name).increment(drained);
                    tracing::info!(
                        segment = segment.sequence,
                        drained,
                        "spool segment drained into RabbitMQ"
                    );
                    if self.spool.is_empty() {
                        tracing::info!(
                            drained = drained_since_empty,
                            "spool drained: every spooled callback is now confirmed by RabbitMQ"
                        );
                        drained_since_empty = 0;
                    }
                }
                Err(error) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(
                        %error,
                        retry_in_ms = delay.as_millis() as u64,
                        "draining the spool paused"
                    );
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = self.stop.cancelled() => return,
                    }
                }
            }
        }
    }

    /// Waits until the spool holds something and the broker could confirm
    /// it; `false` when stopping.
    async fn wait_for_work(&self) -> bool {
        loop {
            if self.stop.is_cancelled() {
                return false;
            }
            // Keeps the age of the oldest spooled callback current.
            self.spool.publish_metrics();
            let ready = self.link.current().is_some_and(|link| link.is_ready());
            if ready && !self.spool.is_empty() {
                return true;
            }
            tokio::select! {
                () = tokio::time::sleep(POLL_INTERVAL) => {}
                () = self.stop.cancelled() => return false,
            }
        }
    }

    /// Publishes every record of `segment`, then removes it. Returns how
    /// many callbacks it held.
    async fn drain(&self, segment: &SegmentInfo) -> Result<u64, DrainError> {
        let path = segment::path(self.spool.dir(), segment.sequence);
        let read_path = path.clone();
        let contents = tokio::task::spawn_blocking(move || segment::read(&read_path))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))??;
        if let Some(damage) = contents.damage {
            tracing::warn!(
                segment = %path.display(),
                skipped_bytes = contents.skipped_bytes,
                damage,
                "skipped the part of a spool segment that cannot be read"
            );
        }
        let mut drained = 0;
        let mut in_flight = FuturesUnordered::new();
        for payload in contents.payloads {
            let envelopes = match decode_payload(&payload) {
                Ok(QueueMessage::Batch(envelopes)) => envelopes,
                Ok(QueueMessage::Single(_)) | Err(_) => {
                    tracing::warn!(segment = %path.display(), "skipped a spool record that is not a batch");
                    continue;
                }
            };
            drained += envelopes.len() as u64;
            let properties = batch_properties(&envelopes);
            let link = self.link.current().ok_or(PublishError::NotConnected)?;
            if link.is_blocked() {
                return Err(PublishError::Blocked.into());
            }
            let destination = self.destination.clone();
            let deadline = self.confirm_timeout;
            in_flight.push(async move {
                queue_wire::broker::publish_confirmed(
                    link.channel(),
                    &destination.exchange,
                    &destination.routing_key,
                    &payload,
                    properties,
                    deadline,
                )
                .await
            });
            if in_flight.len() >= IN_FLIGHT {
                if let Some(confirmed) = in_flight.next().await {
                    confirmed.map_err(PublishError::from)?;
                }
            }
        }
        while let Some(confirmed) = in_flight.next().await {
            confirmed.map_err(PublishError::from)?;
        }
        // Confirms came in time: new batches may go to the broker again.
        self.link.mark_responsive();
        self.spool.remove(segment.sequence)?;
        Ok(drained)
    }
}
