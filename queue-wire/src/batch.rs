//! The batch message: several callbacks that ingest committed together, in
//! one persistent message with one publisher confirm (RabbitMQ's cost is per
//! message, not per byte).
//!
//! Identified by its content type and a version header, so the worker tells
//! it from today's single-callback message (`envelope`) and decodes both: a
//! rolling upgrade works, and old retry and dead-letter messages can still
//! be replayed. The retry and dead-letter queues keep holding one callback
//! per message.
//!
//! Body, version 1: for each callback, in the order they were accepted,
//!
//! ```text
//! u32 big-endian  length of the metadata
//! metadata        JSON: content_type, received_at, request_id,
//!                 idempotency_token, trace_context
//! u32 big-endian  length of the body
//! body            the callback's raw body, exactly as received
//! ```
//!
//! Length-prefixed, so a raw body is carried byte for byte whatever it holds.

use chrono::{DateTime, SecondsFormat, Utc};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::BasicProperties;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::envelope::{
    header_int, parse_request_id, request_id_text, BodyKind, CallbackEnvelope, EnvelopeError,
    PERSISTENT,
};

pub const BATCH_CONTENT_TYPE: &str = "application/vnd.twilio-status-batch";
pub const BATCH_VERSION_HEADER: &str = "x-batch-version";
pub const BATCH_VERSION: i64 = 1;
/// How many callbacks the message holds (for operators and the UI).
const BATCH_SIZE_HEADER: &str = "x-batch-size";

/// What a queue message carries, in either format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueMessage {
    /// Today's single-callback message (and every retry or dead letter).
    Single(CallbackEnvelope),
    Batch(Vec<CallbackEnvelope>),
}

impl QueueMessage {
    /// Reads a delivery in whichever format its content type says (a
    /// batch's callbacks each with a copy of its body: `batch_entries`
    /// reads them in place).
    pub fn decode(properties: &BasicProperties, body: Vec<u8>) -> Result<Self, EnvelopeError> {
        if !is_batch(properties)? {
            return CallbackEnvelope::from_message(properties, body).map(Self::Single);
        }
        let entries = batch_entries(&body)?;
        Ok(Self::Batch(
            entries.into_iter().map(BatchEntry::into_envelope).collect(),
        ))
    }
}

/// Whether a delivery is a batch message (`batch_entries` reads its body)
/// rather than a single callback (`CallbackEnvelope::from_message`). A
/// batch of a version this release does not know is refused.
pub fn is_batch(properties: &BasicProperties) -> Result<bool, EnvelopeError> {
    if !has_batch_content_type(properties) {
        return Ok(false);
    }
    let empty = FieldTable::default();
    let headers = properties.headers().as_ref().unwrap_or(&empty);
    match header_int(headers, BATCH_VERSION_HEADER) {
        Some(BATCH_VERSION) => Ok(true),
        _ => Err(EnvelopeError::Header(BATCH_VERSION_HEADER)),
    }
}

fn has_batch_content_type(properties: &BasicProperties) -> bool {
    properties
        .content_type()
        .as_ref()
        .is_some_and(|ct| ct.as_str() == BATCH_CONTENT_TYPE)
}

/// One callback of a batch message, read in place: its raw body is a slice
/// of the message's, not a copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchEntry<'a> {
    pub body: &'a [u8],
    pub body_kind: BodyKind,
    pub received_at: DateTime<Utc>,
    pub request_id: Option<Uuid>,
    pub idempotency_token: Option<String>,
    pub trace_context: Vec<(String, String)>,
}

impl BatchEntry<'_> {
    /// This callback as an envelope of its own (its body copied, once).
    pub fn into_envelope(self) -> CallbackEnvelope {
        CallbackEnvelope {
            body: self.body.to_vec(),
            body_kind: self.body_kind,
            received_at: self.received_at,
            request_id: self.request_id,
            idempotency_token: self.idempotency_token,
            trace_context: self.trace_context,
        }
    }
}

/// How many callbacks a delivery declares it carries, without decoding it:
/// a batch's `x-batch-size`, otherwise one.
pub fn declared_callbacks(properties: &BasicProperties) -> usize {
    let declared = has_batch_content_type(properties)
        .then(|| properties.headers().as_ref())
        .flatten()
        .and_then(|headers| header_int(headers, BATCH_SIZE_HEADER))
        .and_then(|n| usize::try_from(n).ok());
    declared.unwrap_or(1).max(1)
}

/// A batch message: its body and properties (persistent; the message id and
/// timestamp are the first callback's).
pub fn encode_batch(entries: &[CallbackEnvelope]) -> (Vec<u8>, BasicProperties) {
    let size: usize = entries.iter().map(|e| e.body.len() + 256).sum();
    let mut body = Vec::with_capacity(size);
    for entry in entries {
        let metadata = EntryMetadata {
            content_type: entry.body_kind.content_type(),
            received_at: entry
                .received_at
                .to_rfc3339_opts(SecondsFormat::Micros, true),
            request_id: request_id_text(entry.request_id),
            idempotency_token: entry.idempotency_token.as_deref(),
            trace_context: &entry.trace_context,
        };
        // Serialising these plain fields cannot fail.
        let metadata = serde_json::to_vec(&metadata).unwrap_or_default();
        put_chunk(&mut body, &metadata);
        put_chunk(&mut body, &entry.body);
    }
    (body, batch_properties(entries))
}

/// The properties of a batch message carrying `entries`.
pub fn batch_properties(entries: &[CallbackEnvelope]) -> BasicProperties {
    let first = entries.first();
    properties_of_batch(
        entries.len(),
        first.map(|e| e.received_at),
        first.and_then(|e| e.request_id),
    )
}

/// The properties of a batch message of `callbacks`, the first received at
/// `first_received_at` under `first_request_id`: what `batch_properties`
/// gives, from what the spool keeps of a batch without decoding it.
pub fn properties_of_batch(
    callbacks: usize,
    first_received_at: Option<DateTime<Utc>>,
    first_request_id: Option<Uuid>,
) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(
        ShortString::from(BATCH_VERSION_HEADER),
        AMQPValue::LongLongInt(BATCH_VERSION),
    );
    headers.insert(
        ShortString::from(BATCH_SIZE_HEADER),
        AMQPValue::LongLongInt(i64::try_from(callbacks).unwrap_or(i64::MAX)),
    );
    let mut properties = BasicProperties::default()
        .with_content_type(ShortString::from(BATCH_CONTENT_TYPE))
        .with_delivery_mode(PERSISTENT)
        .with_headers(headers);
    if let Some(received_at) = first_received_at {
        properties = properties.with_timestamp(u64::try_from(received_at.timestamp()).unwrap_or(0));
    }
    if let Some(request_id) = first_request_id {
        properties = properties.with_message_id(ShortString::from(request_id.to_string()));
    }
    properties
}

#[derive(Serialize)]
struct EntryMetadata<'a> {
    content_type: &'static str,
    received_at: String,
    request_id: String,
    idempotency_token: Option<&'a str>,
    trace_context: &'a [(String, String)],
}

#[derive(Deserialize)]
struct OwnedEntryMetadata {
    content_type: String,
    received_at: String,
    request_id: String,
    idempotency_token: Option<String>,
    #[serde(default)]
    trace_context: Vec<(String, String)>,
}

fn put_chunk(out: &mut Vec<u8>, chunk: &[u8]) {
    // Bodies are capped far below 4 GiB at the edge.
    let length = u32::try_from(chunk.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(chunk);
}

/// The callbacks of a batch message's body (see `is_batch`), each borrowing
/// its raw body from `body`.
pub fn batch_entries(mut body: &[u8]) -> Result<Vec<BatchEntry<'_>>, EnvelopeError> {
    let mut entries = Vec::new();
    while !body.is_empty() {
        let metadata = take_chunk(&mut body)?;
        let raw = take_chunk(&mut body)?;
        let metadata: OwnedEntryMetadata =
            serde_json::from_slice(metadata).map_err(|_| EnvelopeError::Batch("entry metadata"))?;
        let body_kind = BodyKind::from_content_type(&metadata.content_type)
            .ok_or(EnvelopeError::ContentType)?;
        let received_at = DateTime::parse_from_rfc3339(&metadata.received_at)
            .map_err(|_| EnvelopeError::Batch("entry received_at"))?
            .with_timezone(&Utc);
        entries.push(BatchEntry {
            body: raw,
            body_kind,
            received_at,
            request_id: parse_request_id(&metadata.request_id),
            idempotency_token: metadata.idempotency_token,
            trace_context: metadata.trace_context,
        });
    }
    if entries.is_empty() {
        return Err(EnvelopeError::Batch("no callbacks"));
    }
    Ok(entries)
}

fn take_chunk<'a>(body: &mut &'a [u8]) -> Result<&'a [u8], EnvelopeError> {
    let truncated = EnvelopeError::Batch("truncated");
    let (length, rest) = body.split_first_chunk::<4>().ok_or(truncated.clone())?;
    let length = usize::try_from(u32::from_be_bytes(*length)).map_err(|_| truncated.clone())?;
    if rest.len() < length {
        return Err(truncated);
    }
    let (chunk, rest) = rest.split_at(length);
    *body = rest;
    Ok(chunk)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8, body: &[u8], kind: BodyKind) -> CallbackEnvelope {
        CallbackEnvelope {
            body: body.to_vec(),
            body_kind: kind,
            received_at: DateTime::parse_from_rfc3339("2026-12-03T10:00:00.123456Z")
                .unwrap()
                .with_timezone(&Utc),
            // Entry 4 has none: an id that was not a UUID reads back as none.
            request_id: (n != 4).then(|| Uuid::from_u128(n.into())),
            idempotency_token: n.is_multiple_of(2).then(|| format!("tok-{n}")),
            trace_context: vec![("traceparent".into(), format!("00-{n}"))],
        }
    }

    #[test]
    fn a_batch_round_trips_byte_for_byte() {
        let entries = vec![
            entry(1, b"MessageSid=SM1&MessageStatus=sent", BodyKind::Form),
            entry(2, b"{\"MessageSid\": \"SM2\"}", BodyKind::Json),
            entry(3, &[0xff, 0x00, b'&', b'='], BodyKind::Form),
            entry(4, b"", BodyKind::Form),
        ];
        let (body, properties) = encode_batch(&entries);
        assert_eq!(properties.delivery_mode(), &Some(PERSISTENT));
        assert_eq!(declared_callbacks(&properties), 4);
        assert_eq!(declared_callbacks(&entries[0].to_properties()), 1);
        assert_eq!(
            QueueMessage::decode(&properties, body),
            Ok(QueueMessage::Batch(entries))
        );
    }

    #[test]
    fn entries_read_in_place_borrow_the_message_body() {
        let entries = vec![
            entry(1, b"MessageSid=SM1&MessageStatus=sent", BodyKind::Form),
            entry(2, b"", BodyKind::Json),
        ];
        let (body, properties) = encode_batch(&entries);
        assert_eq!(is_batch(&properties), Ok(true));
        assert_eq!(is_batch(&entries[0].to_properties()), Ok(false));
        let read = batch_entries(&body).unwrap();
        let range = body.as_ptr_range();
        assert!(read
            .iter()
            .all(|e| range.contains(&e.body.as_ptr()) || e.body.is_empty()));
        let owned: Vec<_> = read.into_iter().map(BatchEntry::into_envelope).collect();
        assert_eq!(owned, entries);
    }

    #[test]
    fn a_single_callback_message_still_decodes() {
        let single = entry(7, b"MessageSid=SM7&MessageStatus=sent", BodyKind::Form);
        let properties = single.to_properties();
        assert_eq!(
            QueueMessage::decode(&properties, single.body.clone()),
            Ok(QueueMessage::Single(single))
        );
    }

    #[test]
    fn an_unknown_version_or_a_broken_body_is_refused() {
        let (body, properties) = encode_batch(&[entry(1, b"x", BodyKind::Form)]);
        let mut headers = properties.headers().clone().unwrap_or_default();
        headers.insert(BATCH_VERSION_HEADER.into(), AMQPValue::LongLongInt(2));
        let future = properties.clone().with_headers(headers);
        assert_eq!(
            QueueMessage::decode(&future, body.clone()),
            Err(EnvelopeError::Header(BATCH_VERSION_HEADER))
        );
        for cut in [1, 4, body.len() - 1] {
            assert!(QueueMessage::decode(&properties, body[..cut].to_vec()).is_err());
        }
        assert_eq!(
            QueueMessage::decode(&properties, Vec::new()),
            Err(EnvelopeError::Batch("no callbacks"))
        );
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever a batch body holds, decoding answers instead of panicking.
        #[test]
        fn decoding_never_panics(body in prop::collection::vec(any::<u8>(), 0..512)) {
            let (_, properties) = encode_batch(&[]);
            let _ = QueueMessage::decode(&properties, body);
        }
    }
}
