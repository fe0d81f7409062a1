//! `worker dlq list | replay | purge`: operating the dead-letter queue.

use chrono::{DateTime, Utc};
use lapin::message::Delivery;
use lapin::options::{BasicGetOptions, ConfirmSelectOptions, QueuePurgeOptions};
use lapin::{BasicProperties, Channel, Connection};
use queue_wire::envelope::{header_text, CallbackEnvelope};
use serde::Serialize;

use crate::failure::attempts::{clear_failures, read_failures};
use queue_wire::topology::Topology;
use twilio_protocol::form::FormParams;

#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    #[error("RabbitMQ error: {0}")]
    Broker(#[from] lapin::Error),
    #[error(
        "a copied dead letter was not confirmed ({0}); the original stays in the dead-letter queue"
    )]
    NotConfirmed(queue_wire::broker::ConfirmError),
}

/// One dead letter, as `dlq list` prints it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct DeadLetterSummary {
    pub reason: String,
    pub attempts: u32,
    #[serde(rename = "MessageSid")]
    pub message_sid: Option<String>,
    pub first_failure_at: Option<DateTime<Utc>>,
    pub received_at: Option<DateTime<Utc>>,
    pub request_id: Option<uuid::Uuid>,
}

async fn open(amqp_url: &str, topology: &Topology) -> Result<(Connection, Channel), DlqError> {
    let connection =
        queue_wire::broker::connect_any(amqp_url, &format!("worker dlq {}", topology.prefix()))
            .await?;
    topology.declare(&connection).await?;
    let channel = connection.create_channel().await?;
    Ok((connection, channel))
}

async fn dead_letter_count(channel: &Channel, topology: &Topology) -> Result<u32, DlqError> {
    Ok(queue_wire::topology::ready_messages(channel, &topology.dead_letter_queue()).await?)
}

/// Takes the next dead letter, unacknowledged; `None` when the queue is empty.
async fn next_dead_letter(
    channel: &Channel,
    topology: &Topology,
) -> Result<Option<Delivery>, DlqError> {
    let message = channel
        .basic_get(
            topology.dead_letter_queue().into(),
            BasicGetOptions::default(),
        )
        .await?;
    Ok(message.map(|message| message.delivery))
}

/// Reads every dead letter, leaving the queue as it was.
///
/// Not get-and-requeue: a quorum queue counts every requeue as a delivery,
/// and RabbitMQ 4.x drops (or dead-letters) a message past its delivery
/// limit, 20 by default, so listing would eventually lose dead letters. Each
/// one is instead copied to the tail of the queue (confirmed) before the
/// original is acked: after a full pass the queue holds the same messages in
/// the same order, none of them ever redelivered. Interrupted half-way, a
/// letter can at worst be there twice, which a replay deduplicates.
pub async fn list(amqp_url: &str, topology: &Topology) -> Result<Vec<DeadLetterSummary>, DlqError> {
    let (connection, channel) = open(amqp_url, topology).await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let count = dead_letter_count(&channel, topology).await?;
    let mut summaries = Vec::new();
    for _ in 0..count {
        let Some(delivery) = next_dead_letter(&channel, topology).await? else {
            break;
        };
        summaries.push(summarize(&delivery.properties, &delivery.data));
        publish_confirmed(
            &channel,
            "",
            &topology.dead_letter_queue(),
            &delivery.data,
            without_delivery_count(&delivery.properties),
        )
        .await?;
        delivery
            .acker
            .ack(lapin::options::BasicAckOptions::default())
            .await?;
    }
    let _ = connection.close(200, "dlq list done".into()).await;
    Ok(summaries)
}

async fn publish_confirmed(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
) -> Result<(), DlqError> {
    queue_wire::broker::publish_confirmed(
        channel,
        exchange,
        routing_key,
        body,
        properties,
        CONFIRM_TIMEOUT,
    )
    .await
    .map_err(DlqError::NotConfirmed)
}

const CONFIRM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The broker's own redelivery counter is about the original, not the copy.
fn without_delivery_count(properties: &BasicProperties) -> BasicProperties {
    let mut kept = lapin::types::FieldTable::default();
    if let Some(headers) = properties.headers() {
        for (name, value) in headers {
            if name.as_str() != "x-delivery-count" {
                kept.insert(name.clone(), value.clone());
            }
        }
    }
    properties.clone().with_headers(kept)
}

/// Moves up to `limit` dead letters back to the main queue, failure history
/// cleared; each leaves the dead-letter queue only once its copy is confirmed.
pub async fn replay(
    amqp_url: &str,
    topology: &Topology,
    limit: Option<usize>,
) -> Result<usize, DlqError> {
    let (connection, channel) = open(amqp_url, topology).await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    // Counted first, so messages that fail again during the replay are not replayed twice.
    let count = dead_letter_count(&channel, topology).await? as usize;
    let mut replayed = 0;
    for _ in 0..limit.map_or(count, |l| l.min(count)) {
        let Some(delivery) = next_dead_letter(&channel, topology).await? else {
            break;
        };
        publish_confirmed(
            &channel,
            &topology.exchange(),
            topology.routing_key(),
            &delivery.data,
            clear_failures(&without_delivery_count(&delivery.properties)),
        )
        .await?;
        delivery
            .acker
            .ack(lapin::options::BasicAckOptions::default())
            .await?;
        replayed += 1;
    }
    let _ = connection.close(200, "dlq replay done".into()).await;
    Ok(replayed)
}

/// Deletes every dead letter; returns how many.
pub async fn purge(amqp_url: &str, topology: &Topology) -> Result<u32, DlqError> {
    let (connection, channel) = open(amqp_url, topology).await?;
    let purged = channel
        .queue_purge(
            topology.dead_letter_queue().into(),
            QueuePurgeOptions::default(),
        )
        .await?;
    let _ = connection.close(200, "dlq purge done".into()).await;
    Ok(purged)
}

fn summarize(properties: &BasicProperties, body: &[u8]) -> DeadLetterSummary {
    let history = read_failures(properties);
    let headers = properties.headers().clone().unwrap_or_default();
    // Dead-lettered by the broker itself (delivery limit) rather than by a worker.
    let broker_reason =
        header_text(&headers, "x-first-death-reason").map(|r| format!("broker: {r}"));
    let envelope = CallbackEnvelope::from_message(properties, body.to_vec()).ok();
    DeadLetterSummary {
        reason: history
            .as_ref()
            .map(|h| h.last_reason.clone())
            .or(broker_reason)
            .unwrap_or_else(|| "unknown".into()),
        attempts: history.as_ref().map_or(0, |h| h.attempts),
        message_sid: message_sid_of(body),
        first_failure_at: history.map(|h| h.first_failure_at),
        received_at: envelope.as_ref().map(|e| e.received_at),
        request_id: envelope.and_then(|e| e.request_id),
    }
}

/// The MessageSid in a body, however broken the rest of it is.
fn message_sid_of(body: &[u8]) -> Option<String> {
    if let Ok(serde_json::Value::Object(object)) = serde_json::from_slice::<serde_json::Value>(body)
    {
        return object
            .get("MessageSid")
            .and_then(|v| v.as_str())
            .map(str::to_owned);
    }
    let params = FormParams::parse(body).ok()?;
    params.get("MessageSid").map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_sid_in_form_and_json_bodies() {
        assert_eq!(message_sid_of(b"MessageSid=SM1&x=%ZZ").as_deref(), None);
        assert_eq!(
            message_sid_of(b"MessageStatus=sent&MessageSid=SM1").as_deref(),
            Some("SM1")
        );
        assert_eq!(
            message_sid_of(br#"{"MessageSid":"SM2"}"#).as_deref(),
            Some("SM2")
        );
        assert_eq!(message_sid_of(b"\xff\xfe"), None);
    }

    #[test]
    fn summarizes_a_message_without_any_metadata() {
        let summary = summarize(&BasicProperties::default(), b"garbage");
        assert_eq!(summary.reason, "unknown");
        assert_eq!(summary.attempts, 0);
        assert_eq!(summary.message_sid, None);
    }
}
