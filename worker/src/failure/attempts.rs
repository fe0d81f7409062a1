//! The worker's retry bookkeeping, carried in a message's own headers: how
//! many times processing failed, since when, and the last reason. It rides
//! along with the callback into the retry and dead-letter queues, so
//! `dlq list` can show it, and a replay clears it.

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::BasicProperties;
use queue_wire::envelope::{header_int, header_text, header_time};

const HEADER_ATTEMPTS: &str = "x-attempts";
const HEADER_FIRST_FAILURE_AT: &str = "x-first-failure-at";
const HEADER_FAILURE_REASON: &str = "x-failure-reason";

/// Bookkeeping for a callback that failed processing at least once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailureHistory {
    /// Processing attempts so far.
    pub attempts: u32,
    pub first_failure_at: DateTime<Utc>,
    pub last_reason: String,
}

/// Reads the failure history recorded in a message's headers, if any.
pub fn read_failures(properties: &BasicProperties) -> Option<FailureHistory> {
    let headers = properties.headers().as_ref()?;
    let attempts = saturating_attempts(header_int(headers, HEADER_ATTEMPTS)?);
    Some(FailureHistory {
        attempts,
        first_failure_at: header_time(headers, HEADER_FIRST_FAILURE_AT)
            .ok()
            .flatten()?,
        last_reason: header_text(headers, HEADER_FAILURE_REASON).unwrap_or_default(),
    })
}

/// A copy of `properties` with one more failed attempt recorded in its
/// headers. Works on any message, even one whose envelope is unreadable.
pub fn record_failure(
    properties: &BasicProperties,
    reason: &str,
    now: DateTime<Utc>,
) -> (BasicProperties, FailureHistory) {
    let history = match read_failures(properties) {
        Some(previous) => FailureHistory {
            attempts: previous.attempts.saturating_add(1),
            first_failure_at: previous.first_failure_at,
            last_reason: reason.to_owned(),
        },
        None => FailureHistory {
            attempts: 1,
            // Headers carry microseconds.
            first_failure_at: now.trunc_subsecs(6),
            last_reason: reason.to_owned(),
        },
    };
    let mut headers = properties.headers().clone().unwrap_or_default();
    write_failure_headers(&mut headers, &history);
    (properties.clone().with_headers(headers), history)
}

/// A copy of `properties` without failure history, for a replay.
pub fn clear_failures(properties: &BasicProperties) -> BasicProperties {
    let mut kept = FieldTable::default();
    if let Some(headers) = properties.headers() {
        for (name, value) in headers {
            let failure_header = [
                HEADER_ATTEMPTS,
                HEADER_FIRST_FAILURE_AT,
                HEADER_FAILURE_REASON,
            ]
            .contains(&name.as_str())
                || name.as_str().starts_with("x-death")
                || name.as_str().starts_with("x-first-death")
                || name.as_str().starts_with("x-last-death");
            if !failure_header {
                kept.insert(name.clone(), value.clone());
            }
        }
    }
    properties.clone().with_headers(kept)
}

fn write_failure_headers(headers: &mut FieldTable, history: &FailureHistory) {
    headers.insert(
        ShortString::from(HEADER_FIRST_FAILURE_AT),
        AMQPValue::LongString(LongString::from(
            history
                .first_failure_at
                .to_rfc3339_opts(SecondsFormat::Micros, true)
                .into_bytes(),
        )),
    );
    headers.insert(
        ShortString::from(HEADER_FAILURE_REASON),
        AMQPValue::LongString(LongString::from(history.last_reason.as_bytes())),
    );
    headers.insert(
        ShortString::from(HEADER_ATTEMPTS),
        AMQPValue::LongLongInt(i64::from(history.attempts)),
    );
}

/// An attempt counter from a header, clamped to `u32`: whatever a message
/// carries, counting saturates instead of overflowing.
fn saturating_attempts(raw: i64) -> u32 {
    u32::try_from(raw.max(0)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use queue_wire::envelope::CallbackEnvelope;

    #[test]
    fn failures_accumulate_in_headers_and_can_be_cleared() {
        let now = DateTime::parse_from_rfc3339("2026-11-26T21:00:01.5Z")
            .unwrap()
            .with_timezone(&Utc);
        let original = CallbackEnvelope::sample().to_properties();
        let (once, _) = record_failure(&original, "db timeout", now);
        let (twice, history) =
            record_failure(&once, "deadlock", now + chrono::Duration::seconds(5));
        assert_eq!(history.attempts, 2);
        assert_eq!(history.first_failure_at, now);
        assert_eq!(history.last_reason, "deadlock");
        assert_eq!(read_failures(&twice).map(|h| h.attempts), Some(2));
        let cleared = clear_failures(&twice);
        assert_eq!(read_failures(&cleared), None);
        let headers = cleared.headers().clone().unwrap();
        assert_eq!(
            header_text(&headers, "traceparent").as_deref(),
            Some("00-x")
        );
        assert_eq!(
            CallbackEnvelope::from_message(&cleared, CallbackEnvelope::sample().body).unwrap(),
            CallbackEnvelope::sample()
        );
    }

    #[test]
    fn failures_can_be_recorded_on_a_message_without_metadata() {
        let (properties, history) =
            record_failure(&BasicProperties::default(), "undecodable", Utc::now());
        assert_eq!(history.attempts, 1);
        assert_eq!(read_failures(&properties), Some(history));
    }

    #[test]
    fn attempt_counters_saturate() {
        let mut headers = FieldTable::default();
        headers.insert(
            HEADER_ATTEMPTS.into(),
            AMQPValue::LongLongInt(i64::from(u32::MAX)),
        );
        headers.insert(
            HEADER_FIRST_FAILURE_AT.into(),
            AMQPValue::LongString(LongString::from("2026-11-26T21:00:00Z")),
        );
        let properties = BasicProperties::default().with_headers(headers.clone());
        let (again, history) = record_failure(&properties, "again", Utc::now());
        assert_eq!(history.attempts, u32::MAX);
        assert_eq!(read_failures(&again).map(|h| h.attempts), Some(u32::MAX));
        headers.insert(HEADER_ATTEMPTS.into(), AMQPValue::LongLongInt(i64::MAX));
        let huge = BasicProperties::default().with_headers(headers.clone());
        assert_eq!(read_failures(&huge).map(|h| h.attempts), Some(u32::MAX));
        headers.insert(HEADER_ATTEMPTS.into(), AMQPValue::LongLongInt(-5));
        let negative = BasicProperties::default().with_headers(headers);
        assert_eq!(read_failures(&negative).map(|h| h.attempts), Some(0));
    }
}
