//! The queue message that carries one accepted callback from ingest to the
//! worker: the raw body, unchanged, and its metadata in AMQP properties and
//! headers. (The worker's retry bookkeeping rides in the same headers; it is
//! the worker's own, in `worker::failure::attempts`.)

use chrono::{DateTime, SecondsFormat, Utc};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::BasicProperties;
use uuid::Uuid;

const HEADER_RECEIVED_AT: &str = "x-received-at";
const HEADER_REQUEST_ID: &str = "x-request-id";
const HEADER_IDEMPOTENCY_TOKEN: &str = "x-twilio-idempotency-token";
/// W3C trace context headers, carried so the worker's spans continue the
/// callback's trace.
const TRACE_HEADERS: [&str; 2] = ["traceparent", "tracestate"];

/// AMQP delivery mode for messages that survive a broker restart.
pub(crate) const PERSISTENT: u8 = 2;

/// How the callback body is encoded, from its `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    Form,
    Json,
}

impl BodyKind {
    pub const FORM_CONTENT_TYPE: &'static str = "application/x-www-form-urlencoded";
    pub const JSON_CONTENT_TYPE: &'static str = "application/json";

    /// Recognises a `Content-Type` header value (parameters such as charset ignored).
    pub fn from_content_type(header: &str) -> Option<Self> {
        let media_type = header.split(';').next().unwrap_or("").trim();
        if media_type.eq_ignore_ascii_case(Self::FORM_CONTENT_TYPE) {
            Some(Self::Form)
        } else if media_type.eq_ignore_ascii_case(Self::JSON_CONTENT_TYPE) {
            Some(Self::Json)
        } else {
            None
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Form => Self::FORM_CONTENT_TYPE,
            Self::Json => Self::JSON_CONTENT_TYPE,
        }
    }
}

/// Why a queue message could not be read back as an envelope.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("missing or unsupported content type")]
    ContentType,
    #[error("missing or malformed header {0}")]
    Header(&'static str),
    #[error("malformed batch message: {0}")]
    Batch(&'static str),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallbackEnvelope {
    pub body: Vec<u8>,
    pub body_kind: BodyKind,
    /// When ingest accepted the request.
    pub received_at: DateTime<Utc>,
    /// Ingest's request id; `None` when the header holds something else (a
    /// message made by hand or by an old release): it is kept, not refused.
    pub request_id: Option<Uuid>,
    /// `I-Twilio-Idempotency-Token`, if Twilio sent one.
    pub idempotency_token: Option<String>,
    /// The publish span's W3C trace context (`traceparent`, `tracestate`).
    pub trace_context: Vec<(String, String)>,
}

/// `00-<trace id: 32 hex>-<parent id: 16 hex>-<flags: 2 hex>`.
fn is_w3c_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    matches!(parts.as_slice(), [version, trace, parent, flags]
        if [(version, 2), (trace, 32), (parent, 16), (flags, 2)]
            .iter()
            .all(|(part, len)| part.len() == *len && part.bytes().all(|b| b.is_ascii_hexdigit())))
}

impl CallbackEnvelope {
    /// The W3C `traceparent` of the publish span, if it came with a
    /// well-formed one (`00-<32 hex>-<16 hex>-<2 hex>`). Anything else (a
    /// message made by hand, a header with a NUL Postgres cannot store) is
    /// none: a callback is never held up by its trace header.
    pub fn traceparent(&self) -> Option<&str> {
        self.trace_context
            .iter()
            .find(|(name, _)| name == "traceparent")
            .map(|(_, value)| value.as_str())
            .filter(|value| is_w3c_traceparent(value))
    }

    /// AMQP properties for a persistent message carrying this envelope.
    pub fn to_properties(&self) -> BasicProperties {
        let mut headers = FieldTable::default();
        let mut put = |name: &str, value: &str| {
            headers.insert(
                ShortString::from(name),
                AMQPValue::LongString(LongString::from(value.as_bytes())),
            );
        };
        put(
            HEADER_RECEIVED_AT,
            &self
                .received_at
                .to_rfc3339_opts(SecondsFormat::Micros, true),
        );
        put(HEADER_REQUEST_ID, &request_id_text(self.request_id));
        if let Some(token) = &self.idempotency_token {
            put(HEADER_IDEMPOTENCY_TOKEN, token);
        }
        for (name, value) in &self.trace_context {
            if TRACE_HEADERS.contains(&name.as_str()) {
                put(name, value);
            }
        }
        let timestamp = u64::try_from(self.received_at.timestamp()).unwrap_or(0);
        let mut properties = BasicProperties::default()
            .with_content_type(ShortString::from(self.body_kind.content_type()))
            .with_delivery_mode(PERSISTENT)
            .with_timestamp(timestamp)
            .with_headers(headers);
        if let Some(request_id) = self.request_id {
            properties = properties.with_message_id(ShortString::from(request_id.to_string()));
        }
        properties
    }

    /// Reads an envelope back from a delivery's properties and body.
    pub fn from_message(
        properties: &BasicProperties,
        body: Vec<u8>,
    ) -> Result<Self, EnvelopeError> {
        let body_kind = properties
            .content_type()
            .as_ref()
            .and_then(|ct| BodyKind::from_content_type(ct.as_str()))
            .ok_or(EnvelopeError::ContentType)?;
        let empty = FieldTable::default();
        let headers = properties.headers().as_ref().unwrap_or(&empty);
        let received_at = header_time(headers, HEADER_RECEIVED_AT)?
            .ok_or(EnvelopeError::Header(HEADER_RECEIVED_AT))?;
        let request_id = header_text(headers, HEADER_REQUEST_ID)
            .ok_or(EnvelopeError::Header(HEADER_REQUEST_ID))?;
        let request_id = parse_request_id(&request_id);
        Ok(Self {
            body,
            body_kind,
            received_at,
            request_id,
            idempotency_token: header_text(headers, HEADER_IDEMPOTENCY_TOKEN),
            trace_context: TRACE_HEADERS
                .iter()
                .filter_map(|name| Some(((*name).to_owned(), header_text(headers, name)?)))
                .collect(),
        })
    }
}

#[cfg(any(test, feature = "test-support"))]
impl CallbackEnvelope {
    /// A form callback with every field set, received at
    /// 2026-11-26T21:00:00.123456Z, for tests.
    pub fn sample() -> Self {
        Self {
            body: b"MessageSid=SM1&MessageStatus=sent".to_vec(),
            body_kind: BodyKind::Form,
            received_at: DateTime::from_timestamp_micros(1_795_726_800_123_456).unwrap_or_default(),
            request_id: Some(Uuid::from_u128(1)),
            idempotency_token: Some("tok".into()),
            trace_context: vec![("traceparent".to_owned(), "00-x".to_owned())],
        }
    }
}

/// A request id as the wire carries it: the UUID's text, or empty for none.
pub fn request_id_text(request_id: Option<Uuid>) -> String {
    request_id.map(|id| id.to_string()).unwrap_or_default()
}

/// A request id read from the wire: `None` unless it is a UUID.
pub fn parse_request_id(text: &str) -> Option<Uuid> {
    Uuid::parse_str(text).ok()
}

/// A string header, if present and text.
pub fn header_text(headers: &FieldTable, name: &str) -> Option<String> {
    match headers.inner().get(name)? {
        AMQPValue::LongString(s) => String::from_utf8(s.as_bytes().to_vec()).ok(),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// An integer header, if present and an integer.
pub fn header_int(headers: &FieldTable, name: &str) -> Option<i64> {
    match headers.inner().get(name)? {
        AMQPValue::LongLongInt(n) => Some(*n),
        AMQPValue::LongInt(n) => Some(i64::from(*n)),
        AMQPValue::LongUInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortInt(n) => Some(i64::from(*n)),
        _ => None,
    }
}

/// A timestamp header: absent is `None`, present but not RFC 3339 an error.
pub fn header_time(
    headers: &FieldTable,
    name: &'static str,
) -> Result<Option<DateTime<Utc>>, EnvelopeError> {
    header_text(headers, name)
        .map(|text| {
            DateTime::parse_from_rfc3339(&text)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| EnvelopeError::Header(name))
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_a_well_formed_traceparent_is_kept() {
        let mut envelope = CallbackEnvelope {
            body: Vec::new(),
            body_kind: BodyKind::Form,
            received_at: Utc::now(),
            request_id: None,
            idempotency_token: None,
            trace_context: Vec::new(),
        };
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        for (value, kept) in [
            (good, true),
            ("00-x", false),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0\u{0}",
                false,
            ),
            ("", false),
        ] {
            envelope.trace_context = vec![("traceparent".into(), value.into())];
            assert_eq!(envelope.traceparent().is_some(), kept, "{value:?}");
        }
    }

    use super::*;

    #[test]
    fn round_trips_through_amqp_properties() {
        let original = CallbackEnvelope::sample();
        assert_eq!(
            original
                .received_at
                .to_rfc3339_opts(SecondsFormat::Micros, true),
            "2026-11-26T21:00:00.123456Z"
        );
        let properties = original.to_properties();
        let decoded = CallbackEnvelope::from_message(&properties, original.body.clone()).unwrap();
        assert_eq!(decoded, original);
        let headers = properties.headers().clone().unwrap();
        assert_eq!(
            header_text(&headers, "traceparent").as_deref(),
            Some("00-x")
        );
        assert_eq!(properties.delivery_mode(), &Some(PERSISTENT));
        assert_eq!(
            properties.message_id().as_ref().map(|id| id.as_str()),
            Some("00000000-0000-0000-0000-000000000001")
        );
    }

    #[test]
    fn a_request_id_that_is_not_a_uuid_is_kept_as_none() {
        let original = CallbackEnvelope::sample();
        let mut headers = original.to_properties().headers().clone().unwrap();
        headers.insert(
            ShortString::from(HEADER_REQUEST_ID),
            AMQPValue::LongString(LongString::from(&b"req-from-an-old-release"[..])),
        );
        let properties = original.to_properties().with_headers(headers);
        let decoded = CallbackEnvelope::from_message(&properties, original.body.clone()).unwrap();
        assert_eq!(decoded.request_id, None);
        assert_eq!(decoded.body, original.body);
    }

    #[test]
    fn refuses_messages_without_metadata() {
        let bare = BasicProperties::default();
        assert_eq!(
            CallbackEnvelope::from_message(&bare, vec![]),
            Err(EnvelopeError::ContentType)
        );
        let no_headers = BasicProperties::default().with_content_type("application/json".into());
        assert_eq!(
            CallbackEnvelope::from_message(&no_headers, vec![]),
            Err(EnvelopeError::Header(HEADER_RECEIVED_AT))
        );
    }

    #[test]
    fn content_type_recognition() {
        assert_eq!(
            BodyKind::from_content_type("application/x-www-form-urlencoded; charset=utf-8"),
            Some(BodyKind::Form)
        );
        assert_eq!(
            BodyKind::from_content_type("Application/JSON"),
            Some(BodyKind::Json)
        );
        assert_eq!(BodyKind::from_content_type("text/plain"), None);
    }
}
