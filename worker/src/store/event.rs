//! One status event as the store writes it, whatever it came from: a
//! callback off the queue, or a status learned from Twilio's Messages API.
//! Borrowed from what the caller holds; `columns` turns a batch of them into
//! the statement's input.

use chrono::{DateTime, DurationRound, Utc};
use queue_wire::envelope::BodyKind;
use serde::ser::{Serialize, SerializeMap, Serializer};
use twilio_protocol::form::FormParams;
use twilio_protocol::status::CallbackStatus;
use uuid::Uuid;

use crate::decode::dedup::DedupKey;
use crate::decode::DecodedCallback;

/// Where an event came from (`message_status_events.source`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventSource {
    /// A status callback Twilio sent.
    Callback,
    /// Twilio's Messages API, asked about a message whose callbacks stalled.
    Reconciliation,
}

impl EventSource {
    /// The text stored in `message_status_events.source`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Callback => "callback",
            Self::Reconciliation => "reconciliation",
        }
    }
}

/// How close to a UTC midnight (the history's partition boundary) an event
/// must be received for the store to look for its copy across it. Two
/// copies of one callback received less than this apart are always one
/// event; copies received the same UTC day are, however far apart.
pub const DAY_EDGE: chrono::TimeDelta = chrono::TimeDelta::hours(1);

/// Whether `at` is within `DAY_EDGE` of a UTC midnight.
pub fn near_midnight(at: DateTime<Utc>) -> bool {
    let since_midnight = at - at.duration_trunc(chrono::TimeDelta::days(1)).unwrap_or(at);
    since_midnight < DAY_EDGE || since_midnight > chrono::TimeDelta::days(1) - DAY_EDGE
}

/// One event to store.
pub struct EventRow<'a> {
    pub(super) dedup_key: DedupKey,
    pub(super) message_sid: &'a str,
    pub(super) status: &'a CallbackStatus,
    pub(super) error_code: Option<i32>,
    pub(super) raw_payload: RawPayload<'a>,
    /// The callback's body was JSON (otherwise a form).
    pub(super) json_body: bool,
    pub(super) idempotency_token: Option<&'a str>,
    pub(super) request_id: Option<Uuid>,
    pub(super) received_at: DateTime<Utc>,
    pub(super) account_sid: Option<&'a str>,
    pub(super) from_address: Option<&'a str>,
    pub(super) to_address: Option<&'a str>,
    pub(super) source: EventSource,
    /// The trace of the callback that carried it, for the change it may make.
    pub(super) traceparent: Option<&'a str>,
}

impl<'a> EventRow<'a> {
    pub fn new(event: &'a DecodedCallback) -> Self {
        let callback = &event.callback;
        Self {
            dedup_key: event.dedup_key,
            message_sid: callback.message_sid.as_str(),
            status: &callback.status,
            error_code: callback.error_code,
            raw_payload: RawPayload::Params(&callback.params),
            json_body: matches!(event.envelope.body_kind, BodyKind::Json),
            idempotency_token: event.envelope.idempotency_token.as_deref(),
            request_id: event.envelope.request_id,
            received_at: event.envelope.received_at,
            account_sid: callback.param("AccountSid"),
            from_address: callback.param("From"),
            to_address: callback.param("To"),
            source: EventSource::Callback,
            traceparent: event.envelope.traceparent(),
        }
    }

    /// A status learned from Twilio's Messages API: `raw_payload` is the
    /// API's answer, `source` says so.
    pub fn reconciled(event: &'a ReconciledEvent) -> Self {
        Self {
            dedup_key: event.dedup_key,
            message_sid: &event.message_sid,
            status: &event.status,
            error_code: event.error_code,
            raw_payload: RawPayload::Answer(&event.api_answer),
            json_body: true,
            idempotency_token: None,
            request_id: Some(event.request_id),
            received_at: event.received_at,
            account_sid: event.account_sid.as_deref(),
            from_address: event.from_address.as_deref(),
            to_address: event.to_address.as_deref(),
            source: EventSource::Reconciliation,
            traceparent: None,
        }
    }

    pub fn dedup_key(&self) -> DedupKey {
        self.dedup_key
    }

    pub fn message_sid(&self) -> &str {
        self.message_sid
    }

    pub fn received_at(&self) -> DateTime<Utc> {
        self.received_at
    }

    /// Received within `DAY_EDGE` of a UTC midnight: its copy may sit in the
    /// neighbouring day's partition (see `projection::INSERT_EVENTS`).
    pub fn near_midnight(&self) -> bool {
        near_midnight(self.received_at)
    }
}

/// What a reconciliation learned about one message, as an event.
#[derive(Clone, Debug)]
pub struct ReconciledEvent {
    pub dedup_key: DedupKey,
    pub message_sid: String,
    pub status: CallbackStatus,
    pub error_code: Option<i32>,
    pub api_answer: serde_json::Value,
    /// The reconciliation run that learned it.
    pub request_id: Uuid,
    pub received_at: DateTime<Utc>,
    pub account_sid: Option<String>,
    pub from_address: Option<String>,
    pub to_address: Option<String>,
}

/// An event's `raw_payload`, serialised straight into the statement's
/// input: a callback's parameters as one JSON object (one string per name,
/// an array of strings in the order sent for a name sent more than once, as
/// `FormParams::to_json`), or the API's answer as it came.
#[derive(Clone, Copy)]
pub enum RawPayload<'a> {
    Params(&'a FormParams),
    Answer(&'a serde_json::Value),
}

impl Serialize for RawPayload<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let params = match self {
            Self::Answer(answer) => return answer.serialize(serializer),
            Self::Params(params) => params,
        };
        // By name, keeping each name's values in the order sent.
        let mut pairs: Vec<(&str, &str)> = params.iter().collect();
        pairs.sort_by_key(|&(name, _)| name);
        let mut map = serializer.serialize_map(None)?;
        for group in pairs.chunk_by(|a, b| a.0 == b.0) {
            match group {
                [(name, value)] => map.serialize_entry(name, value)?,
                _ => {
                    let values: Vec<&str> = group.iter().map(|&(_, value)| value).collect();
                    map.serialize_entry(group[0].0, &values)?;
                }
            }
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_is_the_parameters_json() {
        for body in [
            "MessageSid=SM1&MessageStatus=sent&To=%2B1",
            "To=%2B1&MessageStatus=sent&To=%2B2&MessageSid=SM1&To=%2B3",
            "",
        ] {
            let params = FormParams::parse(body.as_bytes()).unwrap();
            let written = serde_json::to_value(RawPayload::Params(&params)).unwrap();
            assert_eq!(written, params.to_json(), "{body}");
        }
    }

    #[test]
    fn sources_keep_their_stored_names() {
        assert_eq!(EventSource::Callback.as_str(), "callback");
        assert_eq!(EventSource::Reconciliation.as_str(), "reconciliation");
    }
}
