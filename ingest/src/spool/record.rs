//! One spool record: a batch message exactly as it is published, its AMQP
//! properties and its body, with the two facts the spool keeps count of
//! (how many callbacks, the oldest one's time). The drainer republishes
//! the body and properties as they are, without decoding the callbacks.
//!
//! ```text
//! format 2  u32 LE length of the metadata | metadata (JSON: callbacks,
//!           oldest, properties) | body (the batch message's body)
//! format 1  body only (written by earlier releases: decoded once, to
//!           rebuild its properties, so that their segments still drain)
//! ```

use chrono::{DateTime, Utc};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::BasicProperties;
use queue_wire::batch::{
    batch_properties, encode_batch, QueueMessage, BATCH_CONTENT_TYPE, BATCH_VERSION,
    BATCH_VERSION_HEADER,
};
use queue_wire::envelope::{CallbackEnvelope, EnvelopeError};

use super::segment::Format;

/// A batch message as the spool keeps it.
#[derive(Debug)]
pub(crate) struct Record {
    pub properties: BasicProperties,
    pub body: Vec<u8>,
    pub callbacks: u64,
    /// When its oldest callback was received.
    pub oldest: DateTime<Utc>,
}

/// Why a record could not be read back as a batch message.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RecordError {
    #[error("record metadata cut short")]
    Truncated,
    #[error("unreadable record metadata: {0}")]
    Metadata(#[from] serde_json::Error),
    #[error("a format-1 record that is not a batch of callbacks: {0}")]
    NotABatch(#[from] EnvelopeError),
    #[error("a format-1 record holding a single callback, not a batch")]
    Single,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Metadata {
    callbacks: u64,
    oldest: DateTime<Utc>,
    properties: BasicProperties,
}

impl Record {
    /// The batch message `envelopes` are published as.
    pub fn of_batch(envelopes: &[CallbackEnvelope]) -> Self {
        let (body, properties) = encode_batch(envelopes);
        Self {
            properties,
            body,
            callbacks: envelopes.len() as u64,
            oldest: oldest(envelopes),
        }
    }

    /// The record's payload, in the current format (2).
    pub fn encode(&self) -> Vec<u8> {
        let metadata = Metadata {
            callbacks: self.callbacks,
            oldest: self.oldest,
            properties: self.properties.clone(),
        };
        // Serialising plain fields and AMQP values to JSON cannot fail.
        let metadata = serde_json::to_vec(&metadata).unwrap_or_default();
        let length = u32::try_from(metadata.len()).unwrap_or(u32::MAX);
        let mut payload = Vec::with_capacity(4 + metadata.len() + self.body.len());
        payload.extend_from_slice(&length.to_le_bytes());
        payload.extend_from_slice(&metadata);
        payload.extend_from_slice(&self.body);
        payload
    }

    /// Reads a record's payload, in the format of the segment holding it.
    pub fn decode(format: Format, payload: Vec<u8>) -> Result<Self, RecordError> {
        match format {
            Format::Current => Self::decode_current(payload),
            Format::Legacy => Self::decode_legacy(payload),
        }
    }

    fn decode_current(mut payload: Vec<u8>) -> Result<Self, RecordError> {
        let (length, rest) = payload
            .split_first_chunk::<4>()
            .ok_or(RecordError::Truncated)?;
        let length = usize::try_from(u32::from_le_bytes(*length)).unwrap_or(usize::MAX);
        let metadata = rest.get(..length).ok_or(RecordError::Truncated)?;
        let metadata: Metadata = serde_json::from_slice(metadata)?;
        let body = payload.split_off(4 + length);
        Ok(Self {
            properties: metadata.properties,
            body,
            callbacks: metadata.callbacks,
            oldest: metadata.oldest,
        })
    }

    /// A format-1 payload is a version-1 batch body alone: its properties
    /// are rebuilt from its callbacks, as the publisher built them.
    fn decode_legacy(payload: Vec<u8>) -> Result<Self, RecordError> {
        let mut headers = FieldTable::default();
        headers.insert(
            ShortString::from(BATCH_VERSION_HEADER),
            AMQPValue::LongLongInt(BATCH_VERSION),
        );
        let version_1 = BasicProperties::default()
            .with_content_type(ShortString::from(BATCH_CONTENT_TYPE))
            .with_headers(headers);
        let QueueMessage::Batch(envelopes) = QueueMessage::decode(&version_1, payload.clone())?
        else {
            return Err(RecordError::Single);
        };
        Ok(Self {
            properties: batch_properties(&envelopes),
            callbacks: envelopes.len() as u64,
            oldest: oldest(&envelopes),
            body: payload,
        })
    }

    /// The callbacks of its batch (tests read records back with this).
    #[cfg(any(test, feature = "test-support"))]
    pub fn envelopes(&self) -> Result<Vec<CallbackEnvelope>, EnvelopeError> {
        match QueueMessage::decode(&self.properties, self.body.clone())? {
            QueueMessage::Batch(envelopes) => Ok(envelopes),
            QueueMessage::Single(_) => Err(EnvelopeError::Batch("a single callback, not a batch")),
        }
    }
}

/// When the oldest of `envelopes` was received.
fn oldest(envelopes: &[CallbackEnvelope]) -> DateTime<Utc> {
    envelopes
        .iter()
        .map(|e| e.received_at)
        .min()
        .unwrap_or_else(Utc::now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use queue_wire::envelope::BodyKind;

    fn envelope(n: u64) -> CallbackEnvelope {
        CallbackEnvelope {
            body: format!("MessageSid=SM{n}&MessageStatus=sent").into_bytes(),
            body_kind: BodyKind::Form,
            received_at: DateTime::from_timestamp(1_800_000_000 + n as i64, 0).unwrap(),
            request_id: Some(uuid::Uuid::from_u128(n.into())),
            idempotency_token: Some("tok".into()),
            trace_context: vec![("traceparent".into(), "00-x".into())],
        }
    }

    #[test]
    fn a_record_republishes_the_batch_message_as_published() {
        let envelopes = vec![envelope(2), envelope(1)];
        let (body, properties) = encode_batch(&envelopes);
        let record =
            Record::decode(Format::Current, Record::of_batch(&envelopes).encode()).unwrap();
        assert_eq!(record.body, body);
        assert_eq!(record.properties, properties);
        assert_eq!(record.callbacks, 2);
        assert_eq!(record.oldest, envelopes[1].received_at);
        assert_eq!(record.envelopes().unwrap(), envelopes);
    }

    #[test]
    fn an_earlier_release_s_record_gets_the_properties_it_would_have_had() {
        let envelopes = vec![envelope(1), envelope(2)];
        let (body, properties) = encode_batch(&envelopes);
        let record = Record::decode(Format::Legacy, body.clone()).unwrap();
        assert_eq!((record.body, record.properties), (body, properties));
        assert_eq!(record.callbacks, 2);
        assert!(Record::decode(Format::Legacy, b"garbage".to_vec()).is_err());
        assert!(Record::decode(Format::Current, vec![0xff, 0, 0, 0]).is_err());
    }
}
