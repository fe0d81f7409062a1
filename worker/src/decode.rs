//! Turning a queue message back into a callback the store can take, or
//! deciding it can never be processed.

use lapin::BasicProperties;
use queue_wire::envelope::{BodyKind, CallbackEnvelope};
use twilio_protocol::callback::StatusCallback;

/// A callback ready to be stored.
#[derive(Clone, Debug)]
pub struct DecodedCallback {
    pub envelope: CallbackEnvelope,
    pub callback: StatusCallback,
    pub dedup_key: String,
}

/// Why a message can never be processed, however often it is retried.
#[derive(Debug, thiserror::Error)]
pub enum Poison {
    #[error("undecodable queue message: {0}")]
    Envelope(#[from] queue_wire::envelope::EnvelopeError),
    #[error("invalid callback: {0}")]
    Callback(#[from] twilio_protocol::callback::CallbackError),
}

pub fn decode(properties: &BasicProperties, body: Vec<u8>) -> Result<DecodedCallback, Poison> {
    let envelope = CallbackEnvelope::from_message(properties, body)?;
    let callback = match envelope.body_kind {
        BodyKind::Form => StatusCallback::from_form(&envelope.body)?,
        BodyKind::Json => StatusCallback::from_json(&envelope.body)?,
    };
    let dedup_key = crate::store::dedup::dedup_key(&callback);
    Ok(DecodedCallback {
        envelope,
        callback,
        dedup_key,
    })
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
            let _ = decode(&properties, body);
        }
    }
}
