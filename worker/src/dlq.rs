//! `worker dlq list | replay | purge`: operating the dead-letter queue.
//! `list` and `replay` take a `LetterFilter`, so an operator (or the web
//! console) can look at and send back only some letters.

use chrono::{DateTime, Utc};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicGetOptions, ConfirmSelectOptions, QueuePurgeOptions};
use lapin::{BasicProperties, Channel, Connection};
use queue_wire::envelope::{header_text, CallbackEnvelope};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::fmt::Write as _;

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
    /// Which letter this is, for `--letter`: see `letter_id_of`.
    pub letter_id: String,
    pub reason: String,
    pub attempts: u32,
    #[serde(rename = "MessageSid")]
    pub message_sid: Option<String>,
    pub first_failure_at: Option<DateTime<Utc>>,
    pub received_at: Option<DateTime<Utc>>,
    pub request_id: Option<uuid::Uuid>,
}

/// Which dead letters `list` shows and `replay` sends back: those matching
/// every bound that is set. The empty filter matches every letter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LetterFilter {
    /// Part of the failure reason, in any case (`"MessageStatus"`, `"timeout"`).
    pub reason: Option<String>,
    /// The first failure at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// The first failure before this time.
    pub until: Option<DateTime<Utc>>,
    /// The callback's MessageSid, exactly.
    pub message_sid: Option<String>,
    /// The letter's `letter_id`, exactly.
    pub letter_id: Option<String>,
}

impl LetterFilter {
    /// True when no bound is set: every letter matches.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// A letter whose first failure time is unknown (dead-lettered by the
    /// broker, or headers lost) matches no time bound.
    pub fn matches(&self, letter: &DeadLetterSummary) -> bool {
        let reason = self
            .reason
            .as_ref()
            .is_none_or(|part| letter.reason.to_lowercase().contains(&part.to_lowercase()));
        let since = self
            .since
            .is_none_or(|since| letter.first_failure_at.is_some_and(|at| at >= since));
        let until = self
            .until
            .is_none_or(|until| letter.first_failure_at.is_some_and(|at| at < until));
        let message_sid = self
            .message_sid
            .as_ref()
            .is_none_or(|sid| letter.message_sid.as_ref() == Some(sid));
        let letter_id = self
            .letter_id
            .as_ref()
            .is_none_or(|id| &letter.letter_id == id);
        reason && since && until && message_sid && letter_id
    }
}

/// Bytes of the body's SHA-256 a `letter_id` keeps: 128 bits, as a dedup
/// key does, and 32 hex characters an operator can still paste.
const LETTER_ID_BYTES: usize = 16;

/// A letter's identity: what it carries, not where it sits or what happened
/// to it, so it is the same after `list` copies it to the tail, after a
/// replay and when it fails again. Two letters with the same body (a
/// callback dead-lettered twice) share it, and are replayed together.
fn letter_id_of(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    let mut id = String::with_capacity(2 * LETTER_ID_BYTES);
    for byte in &digest[..LETTER_ID_BYTES] {
        let _ = write!(id, "{byte:02x}");
    }
    id
}

async fn open(amqp_url: &str, topology: &Topology) -> Result<(Connection, Channel), DlqError> {
    let connection =
        queue_wire::broker::connect_any(amqp_url, &format!("worker dlq {}", topology.prefix()))
            .await?;
    topology.declare(&connection).await?;
    let channel = connection.create_channel().await?;
    Ok((connection, channel))
}

/// The same, with publisher confirms: every copy is confirmed before its
/// original is acked.
async fn open_confirming(
    amqp_url: &str,
    topology: &Topology,
) -> Result<(Connection, Channel), DlqError> {
    let (connection, channel) = open(amqp_url, topology).await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
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

/// The dead letters matching `filter`, in queue order, leaving the queue as
/// it was.
///
/// Not get-and-requeue: a quorum queue counts every requeue as a delivery,
/// and RabbitMQ 4.x drops (or dead-letters) a message past its delivery
/// limit, 20 by default, so listing would eventually lose dead letters. Each
/// one, matching or not, is instead copied to the tail of the queue
/// (confirmed) before the original is acked: after a full pass the queue
/// holds the same messages in the same order, none of them ever
/// redelivered. Interrupted half-way, a letter can at worst be there twice,
/// which a replay deduplicates.
pub async fn list(
    amqp_url: &str,
    topology: &Topology,
    filter: &LetterFilter,
) -> Result<Vec<DeadLetterSummary>, DlqError> {
    let (connection, channel) = open_confirming(amqp_url, topology).await?;
    let count = dead_letter_count(&channel, topology).await?;
    let mut matching = Vec::new();
    for _ in 0..count {
        let Some(delivery) = next_dead_letter(&channel, topology).await? else {
            break;
        };
        let letter = summarize(&delivery.properties, &delivery.data);
        keep(&channel, topology, delivery).await?;
        if filter.matches(&letter) {
            matching.push(letter);
        }
    }
    let _ = connection.close(200, "dlq list done".into()).await;
    Ok(matching)
}

/// Moves up to `limit` of the dead letters matching `filter` back to the
/// main queue, failure history cleared; returns how many.
///
/// One pass over the letters there when it starts (counted first, so a
/// letter that fails again during the replay is not replayed twice): a
/// matching one is republished to the main exchange, any other copied to
/// the tail as `list` does, and each original acked only once its copy is
/// confirmed. The letters left keep their order. Once the limit is reached
/// with nothing copied yet, the rest is already in place and the pass stops.
pub async fn replay(
    amqp_url: &str,
    topology: &Topology,
    filter: &LetterFilter,
    limit: Option<usize>,
) -> Result<usize, DlqError> {
    let (connection, channel) = open_confirming(amqp_url, topology).await?;
    let count = dead_letter_count(&channel, topology).await?;
    let limit = limit.unwrap_or(usize::MAX);
    let (mut replayed, mut kept) = (0, 0);
    for _ in 0..count {
        if replayed == limit && kept == 0 {
            break;
        }
        let Some(delivery) = next_dead_letter(&channel, topology).await? else {
            break;
        };
        let wanted = replayed < limit
            && (filter.is_empty()
                || filter.matches(&summarize(&delivery.properties, &delivery.data)));
        if wanted {
            send_back(&channel, topology, delivery).await?;
            replayed += 1;
        } else {
            keep(&channel, topology, delivery).await?;
            kept += 1;
        }
    }
    let _ = connection.close(200, "dlq replay done".into()).await;
    Ok(replayed)
}

/// Copies a letter to the tail of the dead-letter queue, then acks the original.
async fn keep(channel: &Channel, topology: &Topology, delivery: Delivery) -> Result<(), DlqError> {
    publish_confirmed(
        channel,
        "",
        &topology.dead_letter_queue(),
        &delivery.data,
        without_delivery_count(&delivery.properties),
    )
    .await?;
    delivery.acker.ack(BasicAckOptions::default()).await?;
    Ok(())
}

/// Republishes a letter to the main exchange, failure history cleared, then
/// acks the original.
async fn send_back(
    channel: &Channel,
    topology: &Topology,
    delivery: Delivery,
) -> Result<(), DlqError> {
    publish_confirmed(
        channel,
        &topology.exchange(),
        topology.routing_key(),
        &delivery.data,
        clear_failures(&without_delivery_count(&delivery.properties)),
    )
    .await?;
    delivery.acker.ack(BasicAckOptions::default()).await?;
    Ok(())
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
        letter_id: letter_id_of(body),
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
        assert_eq!(summary.letter_id, letter_id_of(b"garbage"));
    }

    #[test]
    fn a_letter_is_identified_by_its_body_alone() {
        let id = letter_id_of(b"MessageStatus=sent&MessageSid=SM1");
        assert_eq!(id.len(), 2 * LETTER_ID_BYTES);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        // SHA-256("abc") starts ba7816bf8f01cfea414140de5dae2223.
        assert_eq!(letter_id_of(b"abc"), "ba7816bf8f01cfea414140de5dae2223");
        let (failed, _) = crate::failure::attempts::record_failure(
            &BasicProperties::default(),
            "undecodable",
            Utc::now(),
        );
        assert_eq!(
            summarize(&failed, b"abc").letter_id,
            summarize(&BasicProperties::default(), b"abc").letter_id,
            "the failure history is not part of it"
        );
    }

    fn at(raw: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(raw)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn letter() -> DeadLetterSummary {
        DeadLetterSummary {
            letter_id: letter_id_of(b"MessageSid=SM1"),
            reason: "retries exhausted: Database Timeout".into(),
            attempts: 3,
            message_sid: Some("SM1".into()),
            first_failure_at: Some(at("2026-12-01T10:00:00Z")),
            received_at: None,
            request_id: None,
        }
    }

    fn matches(filter: LetterFilter) -> bool {
        filter.matches(&letter())
    }

    #[test]
    fn the_empty_filter_matches_every_letter() {
        assert!(LetterFilter::default().is_empty());
        assert!(matches(LetterFilter::default()));
        let unknown = summarize(&BasicProperties::default(), b"garbage");
        assert!(LetterFilter::default().matches(&unknown));
        let reason = LetterFilter {
            reason: Some("x".into()),
            ..LetterFilter::default()
        };
        assert!(!reason.is_empty());
    }

    #[test]
    fn dlq_filters_by_reason_in_any_case() {
        let reason = |part: &str| LetterFilter {
            reason: Some(part.into()),
            ..LetterFilter::default()
        };
        assert!(matches(reason("database timeout")));
        assert!(matches(reason("EXHAUSTED")));
        assert!(!matches(reason("undecodable")));
    }

    #[test]
    fn dlq_filters_by_first_failure_since_inclusive_until_exclusive() {
        let window = |since: Option<&str>, until: Option<&str>| LetterFilter {
            since: since.map(at),
            until: until.map(at),
            ..LetterFilter::default()
        };
        assert!(matches(window(Some("2026-12-01T10:00:00Z"), None)));
        assert!(!matches(window(Some("2026-12-01T10:00:00.000001Z"), None)));
        assert!(!matches(window(None, Some("2026-12-01T10:00:00Z"))));
        assert!(matches(window(None, Some("2026-12-01T10:00:00.000001Z"))));
        assert!(matches(window(
            Some("2026-12-01T00:00:00Z"),
            Some("2026-12-02T00:00:00+01:00")
        )));
        let mut unknown_time = letter();
        unknown_time.first_failure_at = None;
        assert!(!window(Some("2000-01-01T00:00:00Z"), None).matches(&unknown_time));
        assert!(!window(None, Some("2100-01-01T00:00:00Z")).matches(&unknown_time));
    }

    #[test]
    fn dlq_filters_by_exact_sid_and_letter_id() {
        let sid = |sid: &str| LetterFilter {
            message_sid: Some(sid.into()),
            ..LetterFilter::default()
        };
        assert!(matches(sid("SM1")));
        assert!(!matches(sid("SM")));
        assert!(!matches(sid("sm1")));
        let mut without_sid = letter();
        without_sid.message_sid = None;
        assert!(!sid("SM1").matches(&without_sid));
        let id = |id: String| LetterFilter {
            letter_id: Some(id),
            ..LetterFilter::default()
        };
        assert!(matches(id(letter_id_of(b"MessageSid=SM1"))));
        assert!(!matches(id(letter_id_of(b"MessageSid=SM2"))));
        assert!(!matches(
            id(letter_id_of(b"MessageSid=SM1")[..8].to_owned())
        ));
    }

    #[test]
    fn dlq_filter_bounds_must_all_match() {
        let both = LetterFilter {
            reason: Some("timeout".into()),
            message_sid: Some("SM1".into()),
            ..LetterFilter::default()
        };
        assert!(matches(both.clone()));
        assert!(!matches(LetterFilter {
            message_sid: Some("SM2".into()),
            ..both
        }));
    }
}
