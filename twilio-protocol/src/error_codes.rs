//! Twilio's `ErrorCode` values for failed and undelivered messages.
//!
//! Twilio changes these over time, so an unknown code gets a safe default
//! rather than an error: it is described as unknown and not retried blindly.

use serde::Serialize;

/// Whether sending the message again can help.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryAdvice {
    /// A passing condition; a later send may succeed.
    Transient,
    /// Will fail again for this recipient.
    Permanent,
    /// Needs a change on the sender's side (account, registration, content).
    FixConfiguration,
    /// Not about an outbound send.
    NotApplicable,
    /// Unknown code: do not retry automatically.
    Unknown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ErrorCodeInfo {
    pub code: i32,
    pub title: &'static str,
    pub retry: RetryAdvice,
    pub advice: &'static str,
}

use RetryAdvice::*;

const TABLE: &[(i32, &str, RetryAdvice, &str)] = &[
    (30001, "Queue overflow", Transient, "slow down and retry"),
    (
        30002,
        "Account suspended",
        FixConfiguration,
        "not until the account is fixed",
    ),
    (
        30003,
        "Unreachable destination handset",
        Transient,
        "retry a limited number of times",
    ),
    (
        30004,
        "Message blocked",
        Permanent,
        "permanent for that recipient",
    ),
    (30005, "Unknown destination handset", Permanent, "permanent"),
    (
        30006,
        "Landline or unreachable carrier",
        Permanent,
        "permanent",
    ),
    (
        30007,
        "Message filtered",
        FixConfiguration,
        "fix content or compliance before sending again",
    ),
    (30008, "Unknown error", Transient, "probably transient"),
    (
        30009,
        "Missing inbound segment",
        NotApplicable,
        "inbound only",
    ),
    (
        30010,
        "Message price exceeds max price",
        NotApplicable,
        "obsolete",
    ),
    (
        30024,
        "Numeric sender ID not provisioned on carrier",
        FixConfiguration,
        "configuration",
    ),
    (
        30032,
        "Toll-free number not verified",
        FixConfiguration,
        "registration (title unconfirmed)",
    ),
    (
        30034,
        "US A2P 10DLC unregistered number",
        FixConfiguration,
        "registration (title unconfirmed)",
    ),
    (
        30036,
        "Validity period expired",
        Transient,
        "retry with a longer validity period",
    ),
    (
        30450,
        "Message delivery blocked (SMS pumping protection)",
        Transient,
        "retry after 15-30 minutes",
    ),
    (30500, "Twilio internal error", Transient, "retry once"),
    (21211, "Invalid 'To' phone number", Permanent, "permanent"),
    (
        21408,
        "Permission to send to this region not enabled",
        FixConfiguration,
        "configuration",
    ),
    (
        21610,
        "Recipient unsubscribed",
        Permanent,
        "permanent until the recipient sends START",
    ),
    (
        21611,
        "'From' exceeded max queued messages",
        Transient,
        "slow down and retry",
    ),
    (
        21614,
        "'To' is not a valid mobile number",
        Permanent,
        "permanent",
    ),
    (21635, "'To' cannot be a landline", Permanent, "permanent"),
    (
        63014,
        "Blocked by user action",
        Permanent,
        "permanent until the user re-engages",
    ),
    (
        63016,
        "Outside the WhatsApp 24 h window",
        FixConfiguration,
        "send a template message",
    ),
    (
        63017,
        "Rate limit exceeded",
        Transient,
        "slow down and retry",
    ),
    (20429, "Too many requests", Transient, "slow down and retry"),
];

/// Whether the table above knows `code` (the codes a metric label may name).
pub fn is_known(code: i32) -> bool {
    TABLE.iter().any(|(c, ..)| *c == code)
}

/// Describes a code; unknown codes get [`RetryAdvice::Unknown`].
pub fn describe(code: i32) -> ErrorCodeInfo {
    TABLE
        .iter()
        .find(|(c, ..)| *c == code)
        .map(|&(code, title, retry, advice)| ErrorCodeInfo {
            code,
            title,
            retry,
            advice,
        })
        .unwrap_or(ErrorCodeInfo {
            code,
            title: "Unknown error code",
            retry: Unknown,
            advice: "not in this service's table; see Twilio's error reference",
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_codes_are_described() {
        assert_eq!(describe(30003).title, "Unreachable destination handset");
        assert_eq!(describe(30003).retry, Transient);
        assert_eq!(describe(21610).retry, Permanent);
        assert_eq!(describe(30007).retry, FixConfiguration);
    }

    #[test]
    fn unknown_codes_get_a_safe_default() {
        let info = describe(99999);
        assert_eq!(info.code, 99999);
        assert_eq!(info.retry, Unknown);
        assert!(!is_known(99999));
        assert!(is_known(30003));
    }

    #[test]
    fn table_has_no_duplicate_codes() {
        let mut codes: Vec<i32> = TABLE.iter().map(|(c, ..)| *c).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), TABLE.len());
    }
}
