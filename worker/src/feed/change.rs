//! One change as the outbox holds it, and as the feed publishes it: the
//! JSON body (version `CHANGE_VERSION`, in the `x-change-version` header),
//! routing key `message.<status>`, persistent, the change id as the AMQP
//! message id, and the trace of the callback that caused it.

use chrono::{DateTime, Utc};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::BasicProperties;
use sea_orm::sqlx::postgres::PgRow;
use sea_orm::sqlx::Row;
use serde::Serialize;
use twilio_protocol::status::MessageStatus;
use uuid::Uuid;

/// The body's format. A consumer that reads a version it does not know
/// should stop rather than guess; fields may be added within a version,
/// never removed or changed.
pub const CHANGE_VERSION: i32 = 1;

const PERSISTENT: u8 = 2;

/// A row of `message_changes`.
#[derive(Clone, Debug)]
pub struct OutboxRow {
    pub id: i64,
    pub change_id: Uuid,
    pub message_sid: String,
    pub sequence: i32,
    pub status: String,
    pub previous_status: Option<String>,
    pub error_code: Option<i32>,
    pub is_final: bool,
    pub account_sid: Option<String>,
    pub from_address: Option<String>,
    pub to_address: Option<String>,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub traceparent: Option<String>,
}

/// The published body of one change (see the README's "Change feed"),
/// borrowed from its outbox row: serialised straight from it.
#[derive(Debug, Serialize)]
pub struct ChangeBody<'a> {
    /// The same on every copy of one change: drop the ones seen.
    pub change_id: Uuid,
    pub message_sid: &'a str,
    pub account_sid: Option<&'a str>,
    pub status: &'a str,
    /// `None` for a message's first change.
    pub previous_status: Option<&'a str>,
    pub error_code: Option<i32>,
    /// Twilio's title of `error_code`.
    pub error_title: Option<&'static str>,
    /// The status is final (delivered, undelivered, failed, read, ...).
    #[serde(rename = "final")]
    pub is_final: bool,
    /// Strictly increasing per message, from 1.
    pub sequence: i32,
    /// When ingest received the callback that caused it.
    pub occurred_at: DateTime<Utc>,
    /// When it was committed.
    pub recorded_at: DateTime<Utc>,
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
}

impl OutboxRow {
    /// Reads a row selected with every column by name.
    pub fn from_row(row: &PgRow) -> sea_orm::sqlx::Result<Self> {
        Ok(Self {
            id: row.try_get("id")?,
            change_id: row.try_get("change_id")?,
            message_sid: row.try_get("message_sid")?,
            sequence: row.try_get("sequence")?,
            status: row.try_get("status")?,
            previous_status: row.try_get("previous_status")?,
            error_code: row.try_get("error_code")?,
            is_final: row.try_get("final")?,
            account_sid: row.try_get("account_sid")?,
            from_address: row.try_get("from_address")?,
            to_address: row.try_get("to_address")?,
            occurred_at: row.try_get("occurred_at")?,
            recorded_at: row.try_get("recorded_at")?,
            traceparent: row.try_get("traceparent")?,
        })
    }

    pub fn body(&self) -> ChangeBody<'_> {
        ChangeBody {
            change_id: self.change_id,
            message_sid: &self.message_sid,
            account_sid: self.account_sid.as_deref(),
            status: &self.status,
            previous_status: self.previous_status.as_deref(),
            error_code: self.error_code,
            error_title: self
                .error_code
                .map(|code| twilio_protocol::error_codes::describe(code).title),
            is_final: self.is_final,
            sequence: self.sequence,
            occurred_at: self.occurred_at,
            recorded_at: self.recorded_at,
            from: self.from_address.as_deref(),
            to: self.to_address.as_deref(),
        }
    }

    /// The status as a metric label: one of the statuses this release
    /// knows (only those change a message), else `unrecognised`.
    pub fn status_label(&self) -> &'static str {
        self.status
            .parse::<MessageStatus>()
            .map_or("unrecognised", MessageStatus::as_str)
    }

    /// `message.<status>`: a consumer binds `message.failed`, `message.*`, `#`.
    pub fn routing_key(&self) -> String {
        format!("message.{}", self.status)
    }

    /// Persistent JSON with the change id as message id, the version, and
    /// `trace` (the publish span's W3C headers).
    pub fn properties(&self, trace: Vec<(String, String)>) -> BasicProperties {
        let mut headers = FieldTable::default();
        headers.insert(
            ShortString::from("x-change-version"),
            AMQPValue::LongInt(CHANGE_VERSION),
        );
        for (name, value) in trace {
            headers.insert(
                ShortString::from(name),
                AMQPValue::LongString(LongString::from(value)),
            );
        }
        BasicProperties::default()
            .with_content_type(ShortString::from("application/json"))
            .with_delivery_mode(PERSISTENT)
            .with_message_id(ShortString::from(self.change_id.to_string()))
            .with_timestamp(u64::try_from(self.recorded_at.timestamp()).unwrap_or(0))
            .with_headers(headers)
    }
}

impl ChangeBody<'_> {
    /// Times in RFC 3339, UTC.
    pub fn to_json(&self) -> Vec<u8> {
        // Plain strings, numbers and times: serialising cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(status: &str, error_code: Option<i32>) -> OutboxRow {
        OutboxRow {
            id: 7,
            change_id: Uuid::nil(),
            message_sid: "SM1".into(),
            sequence: 2,
            status: status.into(),
            previous_status: Some("sent".into()),
            error_code,
            is_final: true,
            account_sid: Some("AC1".into()),
            from_address: Some("+15550001111".into()),
            to_address: Some("+15552223333".into()),
            occurred_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            recorded_at: DateTime::from_timestamp(1_700_000_001, 0).unwrap(),
            traceparent: None,
        }
    }

    #[test]
    fn the_body_is_the_documented_json() {
        let body: serde_json::Value =
            serde_json::from_slice(&row("undelivered", Some(30003)).body().to_json()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "change_id": "00000000-0000-0000-0000-000000000000",
                "message_sid": "SM1",
                "account_sid": "AC1",
                "status": "undelivered",
                "previous_status": "sent",
                "error_code": 30003,
                "error_title": "Unreachable destination handset",
                "final": true,
                "sequence": 2,
                "occurred_at": "2023-11-14T22:13:20Z",
                "recorded_at": "2023-11-14T22:13:21Z",
                "from": "+15550001111",
                "to": "+15552223333",
            })
        );
    }

    #[test]
    fn routing_key_and_headers_name_the_status_and_version() {
        let row = row("delivered", None);
        assert_eq!(row.routing_key(), "message.delivered");
        let properties = row.properties(vec![("traceparent".into(), "00-abc".into())]);
        let headers = properties.headers().as_ref().unwrap().inner();
        assert_eq!(
            headers.get("x-change-version"),
            Some(&AMQPValue::LongInt(CHANGE_VERSION))
        );
        assert!(headers.contains_key("traceparent"));
        assert_eq!(properties.delivery_mode(), &Some(PERSISTENT));
        assert_eq!(row.body().error_title, None);
    }
}
