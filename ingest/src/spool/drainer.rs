//! Republishing the spool: once RabbitMQ is connected and not blocking, the
//! oldest segment is read and each record published as the batch message it
//! holds, with confirms, several in flight. The segment is removed only when
//! every record in it is confirmed; on any failure draining pauses with
//! backoff and that segment is tried again later, whole (the records already
//! confirmed are published twice, and the worker's dedup keeps one).

use futures_util::stream::{FuturesUnordered, StreamExt};
use queue_wire::batch::{batch_properties, QueueMessage};
use queue_wire::broker::ConfirmError;
use service_kit::backoff::Backoff;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use super::{decode_payload, segment, SegmentInfo, Spool};
use crate::metrics::SPOOL_DRAINED;
use crate::publisher::{Destination, LinkSupervisor, PublishError};

/// How often an idle drainer looks for work and a ready broker.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How often the drainer looks for spools other processes left behind.
const ADOPTION_INTERVAL: Duration = Duration::from_secs(10);
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
        let mut next_adoption = Instant::now();
        while self.wait_for_work(&mut next_adoption).await {
            let Some(segment) = self.spool.next_to_drain().await else {
                continue;
            };
            match self.drain(&self.spool, &segment).await {
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
                    self.replace_link_after_nack(&error);
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
    /// it; `false` when stopping. While its own spool is empty and the
    /// broker ready, it drains the spools other processes left behind.
    async fn wait_for_work(&self, next_adoption: &mut Instant) -> bool {
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
            if ready && Instant::now() >= *next_adoption {
                for orphan in self.spool.adopt_orphans() {
                    self.drain_adopted(&orphan).await;
                }
                *next_adoption = Instant::now() + ADOPTION_INTERVAL;
            }
            tokio::select! {
                () = tokio::time::sleep(POLL_INTERVAL) => {}
                () = self.stop.cancelled() => return false,
            }
        }
    }

    /// A nack asks for a new link: retrying on the same channel can be
    /// nacked forever (a quorum queue whose leader was lost).
    fn replace_link_after_nack(&self, error: &DrainError) {
        if let DrainError::Publish(PublishError::NotConfirmed(ConfirmError::Nacked)) = error {
            self.link.nacked();
        }
    }

    /// Drains a spool another process left, segment by segment, until it is
    /// empty or a publish fails (the next look adopts it again).
    async fn drain_adopted(&self, orphan: &Spool) {
        let mut drained_here = 0;
        while let Some(segment) = orphan.next_to_drain().await {
            if self.stop.is_cancelled() {
                return;
            }
            match self.drain(orphan, &segment).await {
                Ok(drained) => {
                    drained_here += drained;
                    metrics::counter!(SPOOL_DRAINED.name).increment(drained);
                }
                Err(error) => {
                    self.replace_link_after_nack(&error);
                    tracing::warn!(%error, dir = %orphan.dir().display(), "draining an adopted spool paused");
                    return;
                }
            }
        }
        tracing::info!(
            dir = %orphan.dir().display(),
            drained = drained_here,
            "adopted spool drained: every callback in it is now confirmed by RabbitMQ"
        );
    }

    /// Publishes every record of `segment`, then removes it. Returns how
    /// many callbacks it held.
    async fn drain(&self, spool: &Spool, segment: &SegmentInfo) -> Result<u64, DrainError> {
        let path = segment::path(spool.dir(), segment.sequence);
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
        spool.remove(segment.sequence)?;
        Ok(drained)
    }
}
