//! Turning a delivery back into the callbacks it carries, in either queue
//! format (one callback, or a batch that ingest committed together), and
//! telling which can never be processed.

use lapin::message::Delivery;
use lapin::BasicProperties;
use queue_wire::batch::{batch_entries, is_batch};
use queue_wire::envelope::{BodyKind, CallbackEnvelope};
use std::borrow::Cow;
use twilio_protocol::callback::StatusCallback;

pub mod dedup;

use dedup::{dedup_key, DedupKey};

/// A callback ready to be stored.
#[derive(Clone, Debug)]
pub struct DecodedCallback {
    pub envelope: CallbackEnvelope,
    pub callback: StatusCallback,
    pub dedup_key: DedupKey,
    /// Whether it came in a batch message (rather than a message of its own).
    pub from_batch: bool,
}

impl DecodedCallback {
    /// This callback as a message of its own, for a retry or dead-letter
    /// queue (which hold one callback per message): a callback that came
    /// alone keeps its message, failure history included; one from a batch
    /// gets the single-callback format with its own metadata.
    pub fn as_single_message<'a>(
        &'a self,
        delivery: &'a Delivery,
    ) -> (Cow<'a, BasicProperties>, &'a [u8]) {
        if self.from_batch {
            (
                Cow::Owned(self.envelope.to_properties()),
                &self.envelope.body,
            )
        } else {
            (Cow::Borrowed(&delivery.properties), &delivery.data)
        }
    }
}

/// Why a message, or one callback in a batch, can never be processed,
/// however often it is retried.
#[derive(Debug, thiserror::Error)]
pub enum Poison {
    #[error("undecodable queue message: {0}")]
    Envelope(#[from] queue_wire::envelope::EnvelopeError),
    #[error("invalid callback: {0}")]
    Callback(#[from] twilio_protocol::callback::CallbackError),
}

/// A callback of a batch that cannot be processed, kept whole so that it can
/// be dead-lettered alone while its neighbours are stored.
#[derive(Debug)]
pub struct PoisonEntry {
    pub envelope: CallbackEnvelope,
    pub poison: Poison,
}

/// What one delivery holds.
#[derive(Debug, Default)]
pub struct DecodedDelivery {
    pub callbacks: Vec<DecodedCallback>,
    pub poison_entries: Vec<PoisonEntry>,
}

/// `Err`: the whole message cannot be processed (its format is broken, or it
/// is a single callback that is invalid). Read in place: each callback's
/// body is copied once, into its own envelope.
pub fn decode(properties: &BasicProperties, body: &[u8]) -> Result<DecodedDelivery, Poison> {
    if !is_batch(properties)? {
        let envelope = CallbackEnvelope::from_message(properties, body.to_vec())?;
        let callback = parse(envelope.body_kind, &envelope.body)?;
        return Ok(DecodedDelivery {
            callbacks: vec![with_key(envelope, callback, false)],
            poison_entries: Vec::new(),
        });
    }
    let mut decoded = DecodedDelivery::default();
    for entry in batch_entries(body)? {
        match parse(entry.body_kind, entry.body) {
            Ok(callback) => decoded
                .callbacks
                .push(with_key(entry.into_envelope(), callback, true)),
            Err(poison) => decoded.poison_entries.push(PoisonEntry {
                envelope: entry.into_envelope(),
                poison: poison.into(),
            }),
        }
    }
    Ok(decoded)
}

fn parse(
    kind: BodyKind,
    body: &[u8],
) -> Result<StatusCallback, twilio_protocol::callback::CallbackError> {
    match kind {
        BodyKind::Form => StatusCallback::from_form(body),
        BodyKind::Json => StatusCallback::from_json(body),
    }
}

fn with_key(
    envelope: CallbackEnvelope,
    callback: StatusCallback,
    from_batch: bool,
) -> DecodedCallback {
    DecodedCallback {
        dedup_key: dedup_key(&callback),
        envelope,
        callback,
        from_batch,
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use lapin::types::{AMQPValue, FieldTable, LongString};
    use proptest::prelude::*;

    proptest! {
        /// Whatever sits in the queue, decoding answers instead of panicking.
        #[test]
        fn decoding_never_panics(
            body in prop::collection::vec(any::<u8>(), 0..256),
            content_type in prop::option::of("\\PC{0,40}"),
            received_at in prop::option::of("\\PC{0,40}"),
            attempts in prop::option::of(any::<i64>()),
        ) {
            let mut headers = FieldTable::default();
            if let Some(text) = received_at {
                headers.insert("x-received-at".into(), AMQPValue::LongString(LongString::from(text)));
            }
            if let Some(n) = attempts {
                headers.insert("x-attempts".into(), AMQPValue::LongLongInt(n));
            }
            let mut properties = BasicProperties::default().with_headers(headers);
            if let Some(content_type) = content_type.and_then(|c| lapin::types::ShortString::try_new(c).ok()) {
                properties = properties.with_content_type(content_type);
            }
            let _ = decode(&properties, &body);
        }
    }
}
