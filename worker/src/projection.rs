//! A change to one message's current-state row, as `store` applies it
//! without an event (the status Twilio answers when we send a message).
//! Batches of callbacks are folded into such changes in SQL, by `store`.

use chrono::{DateTime, Utc};
use shared::status::outcomes_contradict;

/// The change made to one message's row.
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
