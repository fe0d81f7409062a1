//! Turning a queue message back into a callback the store can take, or
//! deciding it can never be processed.

use lapin::BasicProperties;
use queue_wire::envelope::{BodyKind, CallbackEnvelope};
use sha2::{Digest, Sha256};
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
    let dedup_key = dedup_key(&callback);
    Ok(DecodedCallback {
        envelope,
        callback,
        dedup_key,
    })
}

/// Identifies a status event by what Twilio signed, not by how or when it
/// arrived: SHA-256 over the parameters exactly as they enter the signed
/// string (`twilio_protocol::signature::write_signed_params`). Any body that verifies
/// with the same signature as a stored one, however it was re-encoded
/// (an appended `&=`, a repeated pair, a moved name/value boundary), is the
/// same event; a different status, error code or any other differing value
/// is a different one. The URL is left out (a callback is about its message,
/// not the address it was sent to), and so is the idempotency token: Twilio
/// does not promise it is stable across retries.
pub fn dedup_key(callback: &StatusCallback) -> String {
    let mut hasher = Sha256::new();
    // Versioned, so a future change of scheme can never collide with this one.
    hasher.update(b"twilio-signed-params/v2\n");
    twilio_protocol::signature::write_signed_params(&callback.params, |bytes| hasher.update(bytes));
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn callback(body: &str) -> StatusCallback {
        StatusCallback::from_form(body.as_bytes()).unwrap()
    }

    const SID: &str = "SM1234567890abcdef1234567890abcdef";

    #[test]
    fn same_parameters_in_another_order_are_the_same_event() {
        let a = callback(&format!("MessageSid={SID}&MessageStatus=sent&To=%2B1"));
        let b = callback(&format!("To=%2B1&MessageStatus=sent&MessageSid={SID}"));
        assert_eq!(dedup_key(&a), dedup_key(&b));
    }

    #[test]
    fn another_status_or_parameter_is_another_event() {
        let sent = callback(&format!("MessageSid={SID}&MessageStatus=sent"));
        let delivered = callback(&format!("MessageSid={SID}&MessageStatus=delivered"));
        let extra = callback(&format!(
            "MessageSid={SID}&MessageStatus=sent&EventType=READ"
        ));
        assert_ne!(dedup_key(&sent), dedup_key(&delivered));
        assert_ne!(dedup_key(&sent), dedup_key(&extra));
    }

    /// Each re-encoding that Twilio's signature cannot tell apart (and
    /// combinations of them) is the same event; each one really verifies
    /// with the original's signature.
    #[test]
    fn bodies_that_sign_the_same_are_the_same_event() {
        use twilio_protocol::signature::{compute_signature, AuthToken};
        let token = AuthToken::new("12345");
        let url = "https://example.com/twilio/status";
        let original =
            format!("AccountSid=AC1&ErrorCode=30003&MessageSid={SID}&MessageStatus=undelivered");
        let variants = [
            format!("{original}&="),
            format!("{original}&MessageStatus=undelivered"),
            format!("AccountSid=AC1&ErrorCod=e30003&MessageSid={SID}&MessageStatus=undelivered"),
            format!("AccountSid=AC1&ErrorCod=e30003&MessageSid={SID}&MessageStatus=undelivered&=&AccountSid=AC1"),
        ];
        let stored = callback(&original);
        let signature = compute_signature(&token, url, &stored.params);
        for variant in &variants {
            let variant = callback(variant);
            assert_eq!(compute_signature(&token, url, &variant.params), signature);
            assert_eq!(
                dedup_key(&variant),
                dedup_key(&stored),
                "{:?}",
                variant.params
            );
        }
    }

    #[test]
    fn a_changed_value_is_another_event() {
        let a = callback(&format!(
            "MessageSid={SID}&MessageStatus=failed&ErrorCode=30003"
        ));
        let b = callback(&format!(
            "MessageSid={SID}&MessageStatus=failed&ErrorCode=30004"
        ));
        assert_ne!(dedup_key(&a), dedup_key(&b));
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
            let _ = decode(&properties, body);
        }
    }
}
