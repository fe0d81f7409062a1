//! Deduplication: which deliveries are the same status event. The store
//! inserts an event only if its key is new, so a broker redelivery, a Twilio
//! retry or a re-encoded body adds nothing.

use sha2::{Digest, Sha256};
use std::fmt;
use twilio_protocol::callback::StatusCallback;

/// The key of one status event: `KEY_BYTES` bytes of a SHA-256, stored as
/// `bytea` (`message_status_events.dedup_key`) and bound as bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DedupKey([u8; KEY_BYTES]);

impl DedupKey {
    pub fn as_bytes(&self) -> &[u8; KEY_BYTES] {
        &self.0
    }

    /// A transaction lock id for the key: its first 8 bytes (a hash already).
    pub fn lock_id(&self) -> i64 {
        let [a, b, c, d, e, f, g, h, ..] = self.0;
        i64::from_be_bytes([a, b, c, d, e, f, g, h])
    }
}

impl From<[u8; KEY_BYTES]> for DedupKey {
    fn from(bytes: [u8; KEY_BYTES]) -> Self {
        Self(bytes)
    }
}

/// In hex, as `encode(dedup_key, 'hex')` shows it in SQL.
impl fmt::Display for DedupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

impl fmt::Debug for DedupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DedupKey({self})")
    }
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
pub fn dedup_key(callback: &StatusCallback) -> DedupKey {
    let mut hasher = Sha256::new();
    // Versioned, so a future change of scheme can never collide with this one.
    hasher.update(b"twilio-signed-params/v2\n");
    twilio_protocol::signature::write_signed_params(&callback.params, |bytes| hasher.update(bytes));
    key_of(hasher)
}

/// Bytes of the digest kept as the key: the first 16 of the SHA-256. Keys are unique per message (`message_sid`, `dedup_key`),
/// and two events of one message colliding in 128 bits is out of reach; the
/// other 16 bytes would cost 16 bytes an event twice, in the row and the index.
pub const KEY_BYTES: usize = 16;

/// The key of a finished digest (for every kind of event).
pub fn key_of(hasher: Sha256) -> DedupKey {
    let digest = hasher.finalize();
    let mut key = [0; KEY_BYTES];
    key.copy_from_slice(&digest[..KEY_BYTES]);
    DedupKey(key)
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
    fn a_key_locks_by_its_first_bytes_and_prints_in_hex() {
        let mut bytes = [0u8; KEY_BYTES];
        bytes[0] = 0x80;
        bytes[7] = 0x01;
        bytes[15] = 0xff;
        let key = DedupKey::from(bytes);
        assert_eq!(key.lock_id(), i64::MIN + 1);
        assert_eq!(key.to_string(), "800000000000000100000000000000ff");
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
