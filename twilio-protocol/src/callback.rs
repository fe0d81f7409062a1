//! A parsed status callback: the fields the pipeline reasons about, typed,
//! plus every parameter Twilio sent, untouched.
//!
//! Capture first, interpret second: a callback is refused only when it
//! cannot be stored at all (no `MessageSid`/`MessageStatus` to file it
//! under, or a NUL that Postgres cannot hold). A status or error code we do
//! not understand is kept as sent. Ingest and worker parse with this same
//! code, so whatever ingest answered 2xx, the worker can store.

use serde_json::Value;
use std::fmt;
use std::str::FromStr;

use crate::form::{FormError, FormParams};
use crate::status::CallbackStatus;

/// A Twilio message SID: two letters (`SM`, `MM`, ...) and 32 hex digits.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageSid(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed message SID {0:?}: expected two letters and 32 hex digits")]
pub struct MalformedSid(pub String);

impl MessageSid {
    pub fn parse(raw: &str) -> Result<Self, MalformedSid> {
        let bytes = raw.as_bytes();
        let well_formed = bytes.len() == 34
            && bytes[..2].iter().all(u8::is_ascii_uppercase)
            && bytes[2..].iter().all(u8::is_ascii_hexdigit);
        if well_formed {
            Ok(Self(raw.to_owned()))
        } else {
            Err(MalformedSid(raw.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether `raw` is an account SID as Twilio writes them: `AC` and 32 hex
/// digits. Checked before an account SID from a callback reaches a URL.
pub fn is_account_sid(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    bytes.len() == 34 && bytes.starts_with(b"AC") && bytes[2..].iter().all(u8::is_ascii_hexdigit)
}

impl fmt::Display for MessageSid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for MessageSid {
    type Err = MalformedSid;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CallbackError {
    #[error("body is not a valid form: {0}")]
    Form(#[from] FormError),
    #[error("body is not a JSON object of parameters")]
    Json,
    #[error("missing parameter {0}")]
    Missing(&'static str),
    #[error("parameter {0} was sent more than once with different values")]
    Repeated(&'static str),
    #[error(transparent)]
    Sid(#[from] MalformedSid),
    #[error("parameter {index} holds a NUL character, which Postgres cannot store")]
    Nul { index: usize },
}

/// A status callback whose required fields are present and well-formed.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusCallback {
    pub message_sid: MessageSid,
    pub status: CallbackStatus,
    /// `ErrorCode` when it is an integer; any other value stays in `params` only.
    pub error_code: Option<i32>,
    /// Every parameter as sent, in order, repeated names kept.
    pub params: FormParams,
}

impl StatusCallback {
    /// Parses a form-encoded body.
    pub fn from_form(body: &[u8]) -> Result<Self, CallbackError> {
        Self::from_params(FormParams::parse(body)?)
    }

    /// Parses a JSON body: an object whose values are strings (or numbers and
    /// booleans, kept as their text), arrays of those for repeated names.
    pub fn from_json(body: &[u8]) -> Result<Self, CallbackError> {
        JsonBody::parse(body)?.into_callback()
    }

    pub fn from_params(params: FormParams) -> Result<Self, CallbackError> {
        if let Some(index) = params
            .iter()
            .position(|(name, value)| name.contains('\0') || value.contains('\0'))
        {
            return Err(CallbackError::Nul { index });
        }
        let message_sid = MessageSid::parse(single(&params, "MessageSid")?)?;
        let status = CallbackStatus::parse(single(&params, "MessageStatus")?);
        let error_code = params
            .get("ErrorCode")
            .and_then(|code| code.parse::<i32>().ok());
        Ok(Self {
            message_sid,
            status,
            error_code,
            params,
        })
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).filter(|v| !v.is_empty())
    }
}

/// A JSON callback body, parsed once: its `AccountSid` is read before the
/// signature is checked (to choose the account's token), the callback after.
#[derive(Debug)]
pub struct JsonBody(serde_json::Map<String, Value>);

impl JsonBody {
    pub fn parse(body: &[u8]) -> Result<Self, CallbackError> {
        match serde_json::from_slice(body) {
            Ok(Value::Object(object)) => Ok(Self(object)),
            _ => Err(CallbackError::Json),
        }
    }

    /// The top-level `AccountSid`, when it is a string.
    pub fn account_sid(&self) -> Option<&str> {
        self.0.get("AccountSid")?.as_str()
    }

    pub fn into_callback(self) -> Result<StatusCallback, CallbackError> {
        let mut pairs = Vec::with_capacity(self.0.len());
        for (name, value) in self.0 {
            match value {
                Value::Array(values) => {
                    for v in values {
                        pairs.push((name.clone(), scalar_text(v)?));
                    }
                }
                v => pairs.push((name, scalar_text(v)?)),
            }
        }
        StatusCallback::from_params(FormParams::from_pairs(pairs))
    }
}

/// A required field must have one value: two different `MessageSid`s in one
/// callback would make it ambiguous which message it is about. The same pair
/// repeated is unambiguous (and signs the same as one), so it is accepted.
fn single<'a>(params: &'a FormParams, name: &'static str) -> Result<&'a str, CallbackError> {
    let first = params.get(name).ok_or(CallbackError::Missing(name))?;
    if params.iter().any(|(n, v)| n == name && v != first) {
        return Err(CallbackError::Repeated(name));
    }
    Ok(first)
}

fn scalar_text(value: Value) -> Result<String, CallbackError> {
    match value {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Ok(String::new()),
        Value::Array(_) | Value::Object(_) => Err(CallbackError::Json),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::MessageStatus;

    const SID: &str = "SM1234567890abcdef1234567890abcdef";

    /// Parses a form body of `MessageSid=SID` followed by `rest`.
    fn with_sid(rest: &str) -> Result<StatusCallback, CallbackError> {
        StatusCallback::from_form(format!("MessageSid={SID}&{rest}").as_bytes())
    }

    const TV4_BODY: &[u8] = b"AccountSid=ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX&ApiVersion=2010-04-01&ErrorCode=30003&From=%2B15017122661&MessageSid=SM1234567890abcdef1234567890abcdef&MessageStatus=undelivered&SmsSid=SM1234567890abcdef1234567890abcdef&SmsStatus=undelivered&To=%2B15558675310";

    #[test]
    fn parses_an_undelivered_callback() {
        let cb = StatusCallback::from_form(TV4_BODY).unwrap();
        assert_eq!(
            cb.message_sid.as_str(),
            "SM1234567890abcdef1234567890abcdef"
        );
        assert_eq!(cb.status, MessageStatus::Undelivered.into());
        assert_eq!(cb.error_code, Some(30003));
        assert_eq!(cb.param("To"), Some("+15558675310"));
        assert_eq!(cb.params.len(), 9);
    }

    #[test]
    fn keeps_unknown_parameters() {
        let body = [TV4_BODY, b"&BrandNewParam=x&MediaUrl=1&MediaUrl=2"].concat();
        let cb = StatusCallback::from_form(&body).unwrap();
        assert_eq!(cb.params.get("BrandNewParam"), Some("x"));
        assert_eq!(cb.params.count("MediaUrl"), 2);
    }

    #[test]
    fn refuses_missing_or_repeated_required_fields() {
        assert_eq!(
            StatusCallback::from_form(b"MessageStatus=sent"),
            Err(CallbackError::Missing("MessageSid"))
        );
        assert_eq!(
            StatusCallback::from_form(b"MessageSid=SM1234567890abcdef1234567890abcdef"),
            Err(CallbackError::Missing("MessageStatus"))
        );
        let twice = b"MessageSid=SM1234567890abcdef1234567890abcdef&MessageSid=SM1234567890abcdef1234567890abcdee&MessageStatus=sent";
        assert_eq!(
            StatusCallback::from_form(twice),
            Err(CallbackError::Repeated("MessageSid"))
        );
    }

    #[test]
    fn refuses_a_malformed_sid() {
        let bad_sid = StatusCallback::from_form(b"MessageSid=SM123&MessageStatus=sent");
        assert!(matches!(bad_sid, Err(CallbackError::Sid(_))));
    }

    #[test]
    fn captures_values_it_does_not_understand() {
        let future = with_sid("MessageStatus=exploded&ErrorCode=x").unwrap();
        assert_eq!(
            future.status,
            CallbackStatus::Unrecognised("exploded".into())
        );
        assert_eq!(future.error_code, None);
        assert_eq!(future.params.get("ErrorCode"), Some("x"));
        let huge_code = with_sid("MessageStatus=failed&ErrorCode=99999999999").unwrap();
        assert_eq!(huge_code.error_code, None);
    }

    #[test]
    fn accepts_a_required_pair_sent_twice_with_the_same_value() {
        let cb = with_sid("MessageStatus=sent&MessageStatus=sent").unwrap();
        assert_eq!(cb.status, MessageStatus::Sent.into());
    }

    #[test]
    fn refuses_a_nul_anywhere() {
        for extra in ["&Body=a%00b", "&%00=x", "&To=%00"] {
            assert_eq!(
                with_sid(&format!("MessageStatus=sent{extra}")),
                Err(CallbackError::Nul { index: 2 }),
                "{extra}"
            );
        }
        assert!(matches!(
            StatusCallback::from_json(
                br#"{"MessageSid":"SM1234567890abcdef1234567890abcdef","MessageStatus":"sent","Body":"a\u0000"}"#
            ),
            Err(CallbackError::Nul { .. })
        ));
    }

    #[test]
    fn empty_error_code_means_none() {
        let cb = with_sid("MessageStatus=sent&ErrorCode=").unwrap();
        assert_eq!(cb.error_code, None);
    }

    #[test]
    fn parses_json_bodies() {
        let cb = StatusCallback::from_json(
            br#"{"MessageSid":"MM1234567890abcdef1234567890abcdef","MessageStatus":"read","ErrorCode":63016,"MediaUrl":["a","b"]}"#,
        )
        .unwrap();
        assert_eq!(cb.status, MessageStatus::Read.into());
        assert_eq!(cb.error_code, Some(63016));
        assert_eq!(cb.params.count("MediaUrl"), 2);
        assert_eq!(StatusCallback::from_json(b"[1]"), Err(CallbackError::Json));
        assert_eq!(StatusCallback::from_json(b"{"), Err(CallbackError::Json));
    }

    #[test]
    fn sid_shape() {
        assert!(MessageSid::parse("SM1234567890abcdef1234567890abcdef").is_ok());
        assert!(MessageSid::parse("MM1234567890ABCDEF1234567890abcdef").is_ok());
        assert!(MessageSid::parse("sm1234567890abcdef1234567890abcdef").is_err());
        assert!(MessageSid::parse("SM1234567890abcdef1234567890abcdeg").is_err());
        assert!(MessageSid::parse("SM1234567890abcdef1234567890abcdef0").is_err());
        assert!(MessageSid::parse("").is_err());
    }
}
