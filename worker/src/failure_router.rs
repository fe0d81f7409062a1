//! Where a delivery goes when it was not stored: the next retry queue
//! (a transient failure with attempts left) or the dead-letter queue.

use chrono::Utc;
use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Channel, Confirmation};
use shared::envelope::record_failure;
use shared::topology::Topology;

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("RabbitMQ error: {0}")]
    Broker(#[from] lapin::Error),
    #[error("RabbitMQ did not confirm the message to {0}")]
    NotConfirmed(String),
}

/// Where a failed delivery was sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Routed {
    Retry { attempt: u32, queue: String },
    DeadLetter { attempts: u32 },
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
        match delays.get(history.attempts as usize - 1) {
            Some(delay) => {
                let queue = self.topology.retry_queue(*delay);
                self.publish(&queue, annotated, body).await?;
                metrics::counter!("worker_retries_total", "attempt" => history.attempts.to_string()).increment(1);
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
                self.dead_letter(properties, body, &dead_letter_reason, "retries_exhausted")
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
        reason_label: &'static str,
    ) -> Result<Routed, RouteError> {
        let (annotated, history) = record_failure(properties, reason, Utc::now());
        self.publish(&self.topology.dead_letter_queue(), annotated, body)
            .await?;
        metrics::counter!("worker_dead_lettered_total", "reason" => reason_label).increment(1);
        Ok(Routed::DeadLetter {
            attempts: history.attempts,
        })
    }

    async fn publish(
        &self,
        queue: &str,
        properties: BasicProperties,
        body: &[u8],
    ) -> Result<(), RouteError> {
        let confirmation = self
            .channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                body,
                properties,
            )
            .await?
            .await?;
        match confirmation {
            Confirmation::Ack(None) => Ok(()),
            _ => Err(RouteError::NotConfirmed(queue.to_owned())),
        }
    }
}
