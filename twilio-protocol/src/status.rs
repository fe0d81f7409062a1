//! Twilio message statuses and their place in the lifecycle.
//!
//! Callbacks arrive in any order, so the current status of a message is the
//! one with the highest [`MessageStatus::precedence`] seen so far: the
//! lifecycle rank first, then a fixed tie-break between terminal statuses so
//! that the outcome does not depend on arrival order.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    Accepted,
    Scheduled,
    Canceled,
    Queued,
    Sending,
    Sent,
    Failed,
    Delivered,
    Undelivered,
    Read,
    PartiallyDelivered,
    Receiving,
    Received,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown message status {0:?}")]
pub struct UnknownStatus(pub String);

impl MessageStatus {
    pub const ALL: [MessageStatus; 13] = [
        Self::Accepted,
        Self::Scheduled,
        Self::Canceled,
        Self::Queued,
        Self::Sending,
        Self::Sent,
        Self::Failed,
        Self::Delivered,
        Self::Undelivered,
        Self::Read,
        Self::PartiallyDelivered,
        Self::Receiving,
        Self::Received,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Scheduled => "scheduled",
            Self::Canceled => "canceled",
            Self::Queued => "queued",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Failed => "failed",
            Self::Delivered => "delivered",
            Self::Undelivered => "undelivered",
            Self::Read => "read",
            Self::PartiallyDelivered => "partially_delivered",
            Self::Receiving => "receiving",
            Self::Received => "received",
        }
    }

    /// The lowest [`rank`](Self::rank) of a final status (`delivered`,
    /// `failed`, ...); `read` ranks above it.
    pub const FINAL_RANK: i16 = 4;

    /// Lifecycle rank from the protocol notes: a message never moves to a lower one.
    pub fn rank(self) -> i16 {
        match self {
            Self::Accepted | Self::Scheduled | Self::Receiving => 0,
            Self::Queued => 1,
            Self::Sending => 2,
            Self::Sent => 3,
            Self::Delivered
            | Self::Undelivered
            | Self::Failed
            | Self::Canceled
            | Self::PartiallyDelivered
            | Self::Received => Self::FINAL_RANK,
            Self::Read => 5,
        }
    }

    /// Whether the message's lifecycle has ended (`read` included).
    pub fn is_final(self) -> bool {
        self.rank() >= Self::FINAL_RANK
    }

    /// Rank, then a fixed tie-break within a rank. Between contradictory
    /// terminal receipts `delivered` wins: a handset receipt is the strongest
    /// evidence, and the contradiction is flagged separately.
    pub fn precedence(self) -> i16 {
        let tie_break = match self {
            Self::Delivered => 5,
            Self::PartiallyDelivered => 4,
            Self::Undelivered => 3,
            Self::Failed => 2,
            Self::Canceled => 1,
            Self::Scheduled => 1,
            _ => 0,
        };
        self.rank() * 10 + tie_break
    }

    /// The bit this status sets in a message's set of terminal outcomes, if
    /// it is an outcome that can contradict another one.
    pub fn terminal_outcome_bit(self) -> i16 {
        match self {
            Self::Delivered | Self::Read => 1,
            Self::Undelivered => 2,
            Self::Failed => 4,
            _ => 0,
        }
    }
}

impl FromStr for MessageStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

impl fmt::Display for MessageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `MessageStatus` a callback carried: one we know, or a value Twilio
/// added after this was written. An unrecognised value is captured, never
/// refused (Twilio does not retry a 4xx): it is stored in the history with
/// its raw text and ranks below every known status, so it never moves a
/// message's current status.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CallbackStatus {
    Known(MessageStatus),
    Unrecognised(String),
}

impl CallbackStatus {
    /// Rank and precedence of an unrecognised status: below every known one.
    pub const UNRANKED: i16 = -1;

    pub fn parse(raw: &str) -> Self {
        match raw.parse() {
            Ok(status) => Self::Known(status),
            Err(UnknownStatus(raw)) => Self::Unrecognised(raw),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Known(status) => status.as_str(),
            Self::Unrecognised(raw) => raw,
        }
    }

    pub fn known(&self) -> Option<MessageStatus> {
        match self {
            Self::Known(status) => Some(*status),
            Self::Unrecognised(_) => None,
        }
    }

    pub fn rank(&self) -> i16 {
        self.known().map_or(Self::UNRANKED, MessageStatus::rank)
    }

    pub fn precedence(&self) -> i16 {
        self.known()
            .map_or(Self::UNRANKED, MessageStatus::precedence)
    }

    pub fn terminal_outcome_bit(&self) -> i16 {
        self.known().map_or(0, MessageStatus::terminal_outcome_bit)
    }

    /// Whether this is a known final status; an unrecognised one never is.
    pub fn is_final(&self) -> bool {
        self.known().is_some_and(MessageStatus::is_final)
    }
}

impl From<MessageStatus> for CallbackStatus {
    fn from(status: MessageStatus) -> Self {
        Self::Known(status)
    }
}

impl FromStr for CallbackStatus {
    type Err = std::convert::Infallible;

    /// Every string is a status: the ones we know, or one kept as received.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::parse(s))
    }
}

impl Serialize for CallbackStatus {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl fmt::Display for CallbackStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a set of terminal outcome bits holds a contradiction.
pub fn outcomes_contradict(bits: i16) -> bool {
    bits & (bits - 1) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_status_and_round_trips() {
        for status in MessageStatus::ALL {
            assert_eq!(status.as_str().parse::<MessageStatus>(), Ok(status));
        }
        assert!("DELIVERED".parse::<MessageStatus>().is_err());
        assert!("".parse::<MessageStatus>().is_err());
    }

    #[test]
    fn lifecycle_ranks_follow_the_protocol_notes() {
        use MessageStatus::*;
        let order = [Queued, Sending, Sent, Delivered, Read];
        for pair in order.windows(2) {
            assert!(pair[0].rank() < pair[1].rank(), "{:?}", pair);
        }
        assert_eq!(Accepted.rank(), Scheduled.rank());
        assert!(Queued.rank() < Failed.rank());
        assert_eq!(Delivered.rank(), Undelivered.rank());
        let finals: Vec<MessageStatus> = MessageStatus::ALL
            .into_iter()
            .filter(|s| s.is_final())
            .collect();
        assert_eq!(
            finals,
            [
                Canceled,
                Failed,
                Delivered,
                Undelivered,
                Read,
                PartiallyDelivered,
                Received
            ]
        );
        assert!(!CallbackStatus::parse("delivered_to_wearable").is_final());
    }

    #[test]
    fn precedence_is_a_total_order_over_lifecycle_statuses() {
        use MessageStatus::*;
        // Every status an outbound message moves through.
        let lifecycle: Vec<MessageStatus> = MessageStatus::ALL
            .into_iter()
            .filter(|s| !matches!(s, PartiallyDelivered | Receiving | Received))
            .collect();
        assert_eq!(lifecycle.len(), 10);
        let mut values: Vec<i16> = lifecycle.iter().map(|s| s.precedence()).collect();
        values.sort_unstable();
        values.dedup();
        assert_eq!(values.len(), lifecycle.len());
        assert!(Delivered.precedence() > Undelivered.precedence());
        assert!(Read.precedence() > Delivered.precedence());
    }

    #[test]
    fn unrecognised_statuses_rank_below_every_known_one() {
        let future = CallbackStatus::parse("delivered_to_wearable");
        assert_eq!(
            future,
            CallbackStatus::Unrecognised("delivered_to_wearable".into())
        );
        assert_eq!(future.as_str(), "delivered_to_wearable");
        assert_eq!(future.terminal_outcome_bit(), 0);
        for known in MessageStatus::ALL {
            assert!(future.precedence() < known.precedence(), "{known}");
            assert!(future.rank() < known.rank(), "{known}");
            assert_eq!(
                CallbackStatus::parse(known.as_str()),
                CallbackStatus::Known(known)
            );
        }
    }

    #[test]
    fn contradiction_needs_two_different_outcomes() {
        use MessageStatus::*;
        assert!(!outcomes_contradict(0));
        assert!(!outcomes_contradict(
            Delivered.terminal_outcome_bit() | Read.terminal_outcome_bit()
        ));
        assert!(outcomes_contradict(
            Delivered.terminal_outcome_bit() | Undelivered.terminal_outcome_bit()
        ));
        assert!(outcomes_contradict(
            Failed.terminal_outcome_bit() | Delivered.terminal_outcome_bit()
        ));
    }
}
