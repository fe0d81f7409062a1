//! The position after the last message of a page: its `first_seen_at` and
//! `message_sid`, the listing's order. Opaque to callers (base64url), so the
//! order can change without breaking their code.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};

/// Marks the encoding, so a later one can tell old cursors apart.
const VERSION: &str = "v1";

/// Longer than any message SID: a cursor is never a way to send a large value.
const MAX_ENCODED: usize = 200;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub first_seen_at: DateTime<Utc>,
    pub message_sid: String,
}

impl Cursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!(
            "{VERSION}:{}:{}",
            self.first_seen_at.timestamp_micros(),
            self.message_sid
        ))
    }

    /// `None` for anything this API did not hand out.
    pub fn decode(raw: &str) -> Option<Self> {
        if raw.len() > MAX_ENCODED {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(raw).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let mut parts = text.splitn(3, ':');
        if parts.next()? != VERSION {
            return None;
        }
        let micros: i64 = parts.next()?.parse().ok()?;
        let message_sid = parts.next()?;
        if message_sid.is_empty() || message_sid.chars().any(char::is_control) {
            return None;
        }
        Some(Self {
            first_seen_at: DateTime::from_timestamp_micros(micros)?,
            message_sid: message_sid.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_survives_its_round_trip_to_the_microsecond() {
        let cursor = Cursor {
            first_seen_at: DateTime::from_timestamp_micros(1_796_000_000_123_456).unwrap(),
            message_sid: "SM0123456789abcdef0123456789abcdef".into(),
        };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
    }

    #[test]
    fn anything_else_is_refused() {
        for raw in [
            "",
            "not base64!",
            &URL_SAFE_NO_PAD.encode("v2:1:SM1"),
            &URL_SAFE_NO_PAD.encode("v1:soon:SM1"),
            &URL_SAFE_NO_PAD.encode("v1:1:"),
            &URL_SAFE_NO_PAD.encode("v1:1:SM\u{0}"),
            &URL_SAFE_NO_PAD.encode(b"v1:1:\xff"),
            &URL_SAFE_NO_PAD.encode("v1:99999999999999999999:SM1"),
            &URL_SAFE_NO_PAD.encode("v1:9223372036854775807:SM1"),
            &"A".repeat(MAX_ENCODED + 1),
        ] {
            assert_eq!(Cursor::decode(raw), None, "{raw:?}");
        }
    }
}
