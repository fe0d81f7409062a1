//! The search's parameters, as the query string gives them, and the typed
//! filter they make. Every refusal names its parameter; an empty value is
//! the same as none (an HTML form sends its empty fields).

use chrono::{DateTime, Utc};
use serde::Deserialize;
use twilio_protocol::callback::is_account_sid;
use twilio_protocol::status::MessageStatus;

use super::cursor::Cursor;
use crate::stats::{instant, instant_or_ago};

pub const DEFAULT_LIMIT: u64 = 50;
pub const MAX_LIMIT: u64 = 500;

/// Longer than any address Twilio sends (`whatsapp:+...`, `messenger:...`).
const MAX_ADDRESS: usize = 256;

/// The query string of `GET /messages` (and of the console's search).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    pub to: Option<String>,
    pub from: Option<String>,
    pub status: Option<String>,
    pub error_code: Option<String>,
    pub account_sid: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

/// Messages matching every field given, newest `first_seen_at` first,
/// from after `after`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SearchFilter {
    pub to: Option<String>,
    pub from: Option<String>,
    pub status: Option<MessageStatus>,
    pub error_code: Option<i32>,
    pub account_sid: Option<String>,
    /// `first_seen_at >= since`.
    pub since: Option<DateTime<Utc>>,
    /// `first_seen_at < until`.
    pub until: Option<DateTime<Utc>>,
    pub limit: u64,
    pub after: Option<Cursor>,
}

impl SearchParams {
    /// The filter, or a message naming the malformed parameter.
    pub fn parse(&self, now: DateTime<Utc>) -> Result<SearchFilter, String> {
        let filter = SearchFilter {
            to: given(&self.to).map(|raw| address("to", raw)).transpose()?,
            from: given(&self.from)
                .map(|raw| address("from", raw))
                .transpose()?,
            status: given(&self.status).map(status).transpose()?,
            error_code: given(&self.error_code).map(error_code).transpose()?,
            account_sid: given(&self.account_sid).map(account_sid).transpose()?,
            since: given(&self.since)
                .map(|raw| instant_or_ago("since", raw, now))
                .transpose()?,
            until: given(&self.until)
                .map(|raw| instant("until", raw))
                .transpose()?,
            limit: given(&self.limit).map_or(Ok(DEFAULT_LIMIT), limit)?,
            after: given(&self.cursor)
                .map(|raw| {
                    Cursor::decode(raw).ok_or_else(|| {
                        "cursor is not one this API handed out (use next_cursor as given)"
                            .to_owned()
                    })
                })
                .transpose()?,
        };
        if let (Some(since), Some(until)) = (filter.since, filter.until) {
            if since >= until {
                return Err("since must be before until".into());
            }
        }
        Ok(filter)
    }
}

fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|raw| !raw.trim().is_empty())
}

/// An address as Twilio sends it. A phone number typed the way people write
/// one (`+1 555 123-4567`), or whose `+` became a space in an unencoded
/// query string, is brought to E.164; anything else is kept as given
/// (alphanumeric sender IDs, `messenger:` ids).
fn address(name: &str, raw: &str) -> Result<String, String> {
    if raw.len() > MAX_ADDRESS || raw.chars().any(char::is_control) {
        return Err(format!(
            "{name} is not an address (at most {MAX_ADDRESS} characters, no control characters)"
        ));
    }
    let (scheme, number) = match raw.trim_start().split_once(':') {
        Some((scheme, number)) => (Some(scheme), number),
        None => (None, raw),
    };
    let looks_like_a_phone_number = number.chars().any(|c| c.is_ascii_digit())
        && number
            .chars()
            .all(|c| c.is_ascii_digit() || " +-().".contains(c));
    if !looks_like_a_phone_number {
        return Ok(raw.trim().to_owned());
    }
    let digits: String = number.chars().filter(char::is_ascii_digit).collect();
    // A leading `+`, or a leading space where an unencoded `+` was.
    let international = number.trim_end().starts_with(['+', ' ']);
    let number = if international {
        format!("+{digits}")
    } else {
        digits
    };
    Ok(match scheme {
        Some(scheme) => format!("{}:{number}", scheme.trim()),
        None => number,
    })
}

fn status(raw: &str) -> Result<MessageStatus, String> {
    raw.trim().parse().map_err(|_| {
        let known: Vec<&str> = MessageStatus::ALL.iter().map(|s| s.as_str()).collect();
        format!(
            "status={raw:?} is not a message status (one of {})",
            known.join(", ")
        )
    })
}

fn error_code(raw: &str) -> Result<i32, String> {
    raw.trim()
        .parse::<i32>()
        .ok()
        .filter(|code| *code >= 0)
        .ok_or_else(|| format!("error_code={raw:?} is not an error code (a number like 30007)"))
}

fn account_sid(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    if is_account_sid(raw) {
        Ok(raw.to_owned())
    } else {
        Err(format!(
            "account_sid={raw:?} is not an account SID (AC and 32 hexadecimal digits)"
        ))
    }
}

fn limit(raw: &str) -> Result<u64, String> {
    raw.trim()
        .parse::<u64>()
        .ok()
        .filter(|limit| (1..=MAX_LIMIT).contains(limit))
        .ok_or_else(|| format!("limit={raw:?} is not a number from 1 to {MAX_LIMIT}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-07T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn parse(query: &str) -> Result<SearchFilter, String> {
        actix_web::web::Query::<SearchParams>::from_query(query)
            .map_err(|error| error.to_string())?
            .parse(now())
    }

    #[test]
    fn no_parameters_is_every_message_fifty_at_a_time() {
        assert_eq!(
            parse("").unwrap(),
            SearchFilter {
                limit: DEFAULT_LIMIT,
                ..SearchFilter::default()
            }
        );
        assert_eq!(parse("to=&status=&limit=").unwrap(), parse("").unwrap());
    }

    #[test]
    fn every_filter_is_typed() {
        let filter = parse(
            "to=%2B15551234567&from=whatsapp%3A%2B15017122661&status=undelivered\
             &error_code=30003&account_sid=AC0123456789abcdef0123456789abcdef\
             &since=24h&until=2026-12-07T11:00:00Z&limit=500",
        )
        .unwrap();
        assert_eq!(filter.to.as_deref(), Some("+15551234567"));
        assert_eq!(filter.from.as_deref(), Some("whatsapp:+15017122661"));
        assert_eq!(filter.status, Some(MessageStatus::Undelivered));
        assert_eq!(filter.error_code, Some(30003));
        assert_eq!(
            filter.account_sid.as_deref(),
            Some("AC0123456789abcdef0123456789abcdef")
        );
        assert_eq!(filter.since, Some(now() - chrono::Duration::hours(24)));
        assert_eq!(
            filter.until.unwrap().to_rfc3339(),
            "2026-12-07T11:00:00+00:00"
        );
        assert_eq!(filter.limit, 500);
    }

    #[test]
    fn phone_numbers_are_read_the_way_people_write_them() {
        for (given, meant) in [
            ("%2B1%20555%20123-4567", "+15551234567"),
            ("+15551234567", "+15551234567"),
            (
                "whatsapp:%2B1%20(555)%20123%204567",
                "whatsapp:+15551234567",
            ),
            ("12345", "12345"),
            ("MyBrand", "MyBrand"),
            ("My%20Brand", "My Brand"),
            ("messenger:1234567890", "messenger:1234567890"),
        ] {
            assert_eq!(
                parse(&format!("to={given}")).unwrap().to.as_deref(),
                Some(meant),
                "{given}"
            );
        }
    }

    #[test]
    fn each_malformed_parameter_is_named() {
        for (query, named) in [
            ("status=bogus", "status="),
            ("error_code=abc", "error_code="),
            ("error_code=-1", "error_code="),
            ("account_sid=AC123", "account_sid="),
            ("since=yesterday", "since="),
            ("until=24h", "until="),
            ("limit=0", "limit="),
            ("limit=501", "limit="),
            ("limit=ten", "limit="),
            ("cursor=xyz", "cursor"),
            ("to=%01", "to is not"),
            (
                "since=2026-12-07T00:00:00Z&until=2026-12-06T00:00:00Z",
                "since must",
            ),
            ("stauts=failed", "stauts"),
        ] {
            let error = parse(query).unwrap_err();
            assert!(error.contains(named), "{query}: {error}");
        }
    }
}
