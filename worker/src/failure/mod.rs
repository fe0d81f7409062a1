//! Where a delivery goes when it was not stored: the next retry queue
//! (a transient failure with attempts left) or the dead-letter queue.

pub mod attempts;

use chrono::Utc;
use lapin::{BasicProperties, Channel};
use queue_wire::topology::Topology;
use std::time::Duration;

use crate::metrics::{DEAD_LETTERED, RETRIES};
use attempts::record_failure;

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("the message to {queue} was not confirmed: {error}")]
    NotConfirmed {
        queue: String,
        error: queue_wire::broker::ConfirmError,
    },
}

/// How long a retry or dead-letter publish may wait for its confirm. Past it
/// the original stays unacknowledged and the session is renewed: the message
/// is never in neither place.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a delivery was dead-lettered (the `reason` label of
/// `worker_dead_lettered_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeadLetterReason {
    /// It can never be processed, however often it is retried.
    Poison,
    /// A transient failure outlasted every retry delay.
    RetriesExhausted,
}

impl DeadLetterReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Poison => "poison",
            Self::RetriesExhausted => "retries_exhausted",
        }
    }
}

/// Where a failed delivery was sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Routed {
    Retry {
        attempt: u32,
        queue: String,
    },
    DeadLetter {
        attempts: u32,
    },
    /// Put back at the tail of the main queue as a fresh copy, unchanged.
    Requeued,
}

/// Publishes on a confirm-mode channel; the caller acks the original only
/// once this returns `Ok`, so a failed delivery is never in neither place.
pub struct FailureRouter {
    channel: Channel,
    topology: Topology,
}

impl FailureRouter {
    pub fn new(channel: Channel, topology: Topology) -> Self {
        Self { channel, topology }
    }

    /// A transient failure: wait in the next retry queue, or dead-letter once
    /// every delay has been used.
    pub async fn retry_or_dead_letter(
        &self,
        properties: &BasicProperties,
        body: &[u8],
        reason: &str,
    ) -> Result<Routed, RouteError> {
        let (annotated, history) = record_failure(properties, reason, Utc::now());
        let delays = self.topology.retry_delays();
        let index = usize::try_from(history.attempts.saturating_sub(1)).unwrap_or(usize::MAX);
        match delays.get(index) {
            Some(delay) => {
                let queue = self.topology.retry_queue(*delay);
                self.publish(&queue, annotated, body).await?;
                metrics::counter!(RETRIES.name, "attempt" => history.attempts.to_string())
                    .increment(1);
                Ok(Routed::Retry {
                    attempt: history.attempts,
                    queue,
                })
            }
            None => {
                let dead_letter_reason = format!(
                    "retries exhausted after {} attempts: {reason}",
                    history.attempts
                );
                self.dead_letter(
                    properties,
                    body,
                    &dead_letter_reason,
                    DeadLetterReason::RetriesExhausted,
                )
                .await
            }
        }
    }

    /// A failure no retry can fix: straight to the dead-letter queue.
    pub async fn dead_letter(
        &self,
        properties: &BasicProperties,
        body: &[u8],
        reason: &str,
        kind: DeadLetterReason,
    ) -> Result<Routed, RouteError> {
        let (annotated, history) = record_failure(properties, reason, Utc::now());
        self.publish(&self.topology.dead_letter_queue(), annotated, body)
            .await?;
        metrics::counter!(DEAD_LETTERED.name, "reason" => kind.as_str()).increment(1);
        Ok(Routed::DeadLetter {
            attempts: history.attempts,
        })
    }

    /// A delivery held through a database outage: the same message again at
    /// the tail of the main queue, so the broker's delivery count and
    /// consumer_timeout start afresh. Not a failed attempt.
    pub async fn requeue(
        &self,
        properties: &BasicProperties,
        body: &[u8],
    ) -> Result<Routed, RouteError> {
        self.publish(&self.topology.main_queue(), properties.clone(), body)
            .await?;
        Ok(Routed::Requeued)
    }

    async fn publish(
        &self,
        queue: &str,
        properties: BasicProperties,
        body: &[u8],
    ) -> Result<(), RouteError> {
        queue_wire::broker::publish_confirmed(
            &self.channel,
            "",
            queue,
            body,
            properties,
            CONFIRM_TIMEOUT,
        )
        .await
        .map_err(|error| RouteError::NotConfirmed {
            queue: queue.to_owned(),
            error,
        })
    }
}
