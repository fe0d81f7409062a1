//! Folding newly stored events into one change per message, applied to the
//! `messages` table by an upsert whose rules (highest precedence wins, counts
//! add up, outcome bits OR together) are commutative: the result is the same
//! whatever order callbacks arrive in and however batches are split.

use chrono::{DateTime, Utc};
use shared::status::outcomes_contradict;
use std::collections::BTreeMap;

use crate::decode::DecodedCallback;

/// The change a batch makes to one message's row.
#[derive(Clone, Debug, PartialEq)]
pub struct MessageDelta {
    pub message_sid: String,
    pub status: &'static str,
    pub status_rank: i16,
    pub status_precedence: i16,
    /// The error code of the event that carries the winning status.
    pub error_code: Option<i32>,
    pub account_sid: Option<String>,
    pub from_address: Option<String>,
    pub to_address: Option<String>,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub event_count: i32,
    pub terminal_outcomes: i16,
}

impl MessageDelta {
    pub fn conflicting_outcomes(&self) -> bool {
        outcomes_contradict(self.terminal_outcomes)
    }
}

/// One delta per message, ordered by SID (a fixed lock order for the upsert,
/// so concurrent workers do not deadlock).
pub fn fold<'a>(events: impl IntoIterator<Item = &'a DecodedCallback>) -> Vec<MessageDelta> {
    let mut deltas: BTreeMap<&str, MessageDelta> = BTreeMap::new();
    for event in events {
        let callback = &event.callback;
        let received_at = event.envelope.received_at;
        let status = callback.status;
        let delta = deltas
            .entry(callback.message_sid.as_str())
            .or_insert_with(|| MessageDelta {
                message_sid: callback.message_sid.as_str().to_owned(),
                status: status.as_str(),
                status_rank: status.rank(),
                status_precedence: status.precedence(),
                error_code: callback.error_code,
                account_sid: None,
                from_address: None,
                to_address: None,
                first_seen_at: received_at,
                last_seen_at: received_at,
                event_count: 0,
                terminal_outcomes: 0,
            });
        if status.precedence() > delta.status_precedence {
            delta.status = status.as_str();
            delta.status_rank = status.rank();
            delta.status_precedence = status.precedence();
            delta.error_code = callback.error_code;
        }
        delta.account_sid = delta
            .account_sid
            .take()
            .or_else(|| callback.param("AccountSid").map(str::to_owned));
        delta.from_address = delta
            .from_address
            .take()
            .or_else(|| callback.param("From").map(str::to_owned));
        delta.to_address = delta
            .to_address
            .take()
            .or_else(|| callback.param("To").map(str::to_owned));
        delta.first_seen_at = delta.first_seen_at.min(received_at);
        delta.last_seen_at = delta.last_seen_at.max(received_at);
        delta.event_count += 1;
        delta.terminal_outcomes |= status.terminal_outcome_bit();
    }
    deltas.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::callback::StatusCallback;
    use shared::envelope::{BodyKind, CallbackEnvelope};

    fn event(sid: &str, status: &str, error: Option<i32>, second: i64) -> DecodedCallback {
        let mut body = format!("MessageSid={sid}&MessageStatus={status}&To=%2B1");
        if let Some(code) = error {
            body.push_str(&format!("&ErrorCode={code}"));
        }
        let callback = StatusCallback::from_form(body.as_bytes()).unwrap();
        DecodedCallback {
            dedup_key: crate::decode::dedup_key(&callback),
            envelope: CallbackEnvelope {
                body: body.into_bytes(),
                body_kind: BodyKind::Form,
                received_at: DateTime::from_timestamp(1_800_000_000 + second, 0).unwrap(),
                request_id: "r".into(),
                idempotency_token: None,
                failures: None,
            },
            callback,
        }
    }

    const A: &str = "SM000000000000000000000000000000aa";
    const B: &str = "SM000000000000000000000000000000bb";

    #[test]
    fn highest_precedence_wins_with_its_error_code() {
        let events = [
            event(A, "undelivered", Some(30003), 3),
            event(A, "sent", None, 1),
            event(A, "queued", None, 2),
        ];
        let deltas = fold(&events);
        assert_eq!(deltas.len(), 1);
        let d = &deltas[0];
        assert_eq!(d.status, "undelivered");
        assert_eq!(d.error_code, Some(30003));
        assert_eq!(d.event_count, 3);
        assert_eq!(d.first_seen_at.timestamp(), 1_800_000_001);
        assert_eq!(d.last_seen_at.timestamp(), 1_800_000_003);
        assert_eq!(d.to_address.as_deref(), Some("+1"));
        assert!(!d.conflicting_outcomes());
    }

    #[test]
    fn contradictory_outcomes_are_flagged_and_delivered_wins() {
        let events = [
            event(A, "delivered", None, 1),
            event(A, "undelivered", Some(30005), 2),
        ];
        let d = &fold(&events)[0];
        assert_eq!(d.status, "delivered");
        assert_eq!(d.error_code, None);
        assert!(d.conflicting_outcomes());
    }

    #[test]
    fn one_delta_per_message_in_sid_order() {
        let events = [
            event(B, "sent", None, 1),
            event(A, "sent", None, 2),
            event(B, "delivered", None, 3),
        ];
        let sids: Vec<String> = fold(&events).into_iter().map(|d| d.message_sid).collect();
        assert_eq!(sids, [A, B]);
    }
}
