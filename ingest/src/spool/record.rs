//! One spool record: a batch message exactly as it is published (its body
//! and what its AMQP properties are made from), with the two facts the
//! spool keeps count of (how many callbacks, the oldest one's time). The
//! drainer republishes the body as it is, without decoding the callbacks.
//!
//! ```text
//! format 2  u32 LE length of the metadata | metadata (JSON, our own fields:
//!           callbacks, oldest, first_received_at, first_request_id) | body
//! format 1  body only (written by earlier releases: decoded once, to
//!           rebuild its properties, so that their segments still drain)
//! ```
//!
//! The metadata names only plain fields of ours, never a library's types,
//! so that a dependency upgrade cannot make a spooled record unreadable.

use chrono::{DateTime, Utc};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::BasicProperties;
use queue_wire::batch::{
    encode_batch, properties_of_batch, QueueMessage, BATCH_CONTENT_TYPE, BATCH_VERSION,
    BATCH_VERSION_HEADER,
};
use queue_wire::envelope::{CallbackEnvelope, EnvelopeError};
use uuid::Uuid;

use super::segment::Format;

/// A batch message as the spool keeps it.
#[derive(Debug)]
pub(crate) struct Record {
    pub body: Vec<u8>,
    pub callbacks: u64,
    /// When its oldest callback was received.
    pub oldest: DateTime<Utc>,
    /// The first callback's receipt and request id: the message's
    /// timestamp and message id.
    first_received_at: Option<DateTime<Utc>>,
    first_request_id: Option<Uuid>,
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
    first_received_at: Option<DateTime<Utc>>,
    first_request_id: Option<Uuid>,
}

impl Record {
    /// The batch message `envelopes` are published as.
    pub fn of_batch(envelopes: &[CallbackEnvelope]) -> Self {
        let (body, _) = encode_batch(envelopes);
        let first = envelopes.first();
        Self {
            body,
            callbacks: envelopes.len() as u64,
            oldest: oldest(envelopes),
            first_received_at: first.map(|e| e.received_at),
            first_request_id: first.and_then(|e| e.request_id),
        }
    }

    /// The properties it is published with: those the publisher gives the
    /// same batch (`queue_wire::batch::batch_properties`).
    pub fn properties(&self) -> BasicProperties {
        properties_of_batch(
            usize::try_from(self.callbacks).unwrap_or(usize::MAX),
            self.first_received_at,
            self.first_request_id,
        )
    }

    /// The record's payload, in the current format (2); an error only if
    /// its metadata could not be written, and then nothing is spooled.
    pub fn encode(&self) -> Result<Vec<u8>, serde_json::Error> {
        let metadata = serde_json::to_vec(&Metadata {
            callbacks: self.callbacks,
            oldest: self.oldest,
            first_received_at: self.first_received_at,
            first_request_id: self.first_request_id,
        })?;
        // A few dozen bytes of metadata.
        let length = u32::try_from(metadata.len()).unwrap_or(u32::MAX);
        let mut payload = Vec::with_capacity(4 + metadata.len() + self.body.len());
        payload.extend_from_slice(&length.to_le_bytes());
        payload.extend_from_slice(&metadata);
        payload.extend_from_slice(&self.body);
        Ok(payload)
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
            body,
            callbacks: metadata.callbacks,
            oldest: metadata.oldest,
            first_received_at: metadata.first_received_at,
            first_request_id: metadata.first_request_id,
        })
    }

    /// A format-1 payload is a version-1 batch body alone: what its
    /// properties are made from is read from its callbacks.
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
        let first = envelopes.first();
        Ok(Self {
            callbacks: envelopes.len() as u64,
            oldest: oldest(&envelopes),
            first_received_at: first.map(|e| e.received_at),
            first_request_id: first.and_then(|e| e.request_id),
            body: payload,
        })
    }

    /// The callbacks of its batch (tests read records back with this).
    #[cfg(any(test, feature = "test-support"))]
    pub fn envelopes(&self) -> Result<Vec<CallbackEnvelope>, EnvelopeError> {
        match QueueMessage::decode(&self.properties(), self.body.clone())? {
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
        let record = Record::decode(
            Format::Current,
            Record::of_batch(&envelopes).encode().unwrap(),
        )
        .unwrap();
        assert_eq!(record.body, body);
        assert_eq!(record.properties(), properties);
        assert_eq!(record.callbacks, 2);
        assert_eq!(record.oldest, envelopes[1].received_at);
        assert_eq!(record.envelopes().unwrap(), envelopes);
    }

    #[test]
    fn an_earlier_release_s_record_gets_the_properties_it_would_have_had() {
        let envelopes = vec![envelope(1), envelope(2)];
        let (body, properties) = encode_batch(&envelopes);
        let record = Record::decode(Format::Legacy, body.clone()).unwrap();
        assert_eq!((record.properties(), record.body), (properties, body));
        assert_eq!(record.callbacks, 2);
        assert!(Record::decode(Format::Legacy, b"garbage".to_vec()).is_err());
        assert!(Record::decode(Format::Current, vec![0xff, 0, 0, 0]).is_err());
    }

    /// The metadata as this release writes it, byte for byte: a record
    /// spooled now must drain after any upgrade, so its format changes only
    /// on purpose (and then format 3, with format 2 still read).
    #[test]
    fn format_2_metadata_is_fixed() {
        let envelopes = vec![envelope(2), envelope(1)];
        let payload = Record::of_batch(&envelopes).encode().unwrap();
        let length = u32::from_le_bytes(payload[..4].try_into().unwrap()) as usize;
        assert_eq!(
            std::str::from_utf8(&payload[4..4 + length]).unwrap(),
            "{\"callbacks\":2,\"oldest\":\"2027-01-15T08:00:01Z\",\
             \"first_received_at\":\"2027-01-15T08:00:02Z\",\
             \"first_request_id\":\"00000000-0000-0000-0000-000000000002\"}"
        );
        let golden = b"{\"callbacks\":1,\"oldest\":\"2027-01-15T08:00:01Z\",\"first_received_at\":null,\"first_request_id\":null}";
        let mut written = (golden.len() as u32).to_le_bytes().to_vec();
        written.extend_from_slice(golden);
        written.extend_from_slice(b"body");
        let record = Record::decode(Format::Current, written).unwrap();
        assert_eq!(
            (record.callbacks, record.body.as_slice()),
            (1, &b"body"[..])
        );
        assert_eq!(record.properties().message_id(), &None);
    }
}
