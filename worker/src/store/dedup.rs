//! Deduplication: which deliveries are the same status event. The store
//! inserts an event only if its key is new, so a broker redelivery, a Twilio
//! retry or a re-encoded body adds nothing.

use sha2::{Digest, Sha256};
use twilio_protocol::callback::StatusCallback;

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
    key_of(hasher)
}

/// Bytes of the digest kept as the key: the first 16 of the SHA-256, in hex
/// (stored as `bytea`). Keys are unique per message (`message_sid`, `dedup_key`),
/// and two events of one message colliding in 128 bits is out of reach; the
/// other 16 bytes would cost 16 bytes an event twice, in the row and the index.
pub const KEY_BYTES: usize = 16;

/// The key of a finished digest (for every kind of event).
pub fn key_of(hasher: Sha256) -> String {
    hex::encode(&hasher.finalize()[..KEY_BYTES])
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
