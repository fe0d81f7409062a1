//! The parameters of Twilio's published signature vectors TV4 and TV5
//! (`twilio-protocol.md`): status callbacks signed for
//! `https://example.com/twilio/status`. Data, not logic: the protocol crate's signature
//! tests and ingest's end-to-end tests check the same callbacks.

use twilio_protocol::form::FormParams;

/// TV4: an `undelivered` callback with error 30003.
pub fn tv4() -> FormParams {
    pairs(&[
        ("AccountSid", "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"),
        ("ApiVersion", "2010-04-01"),
        ("ErrorCode", "30003"),
        ("From", "+15017122661"),
        ("MessageSid", "SM1234567890abcdef1234567890abcdef"),
        ("MessageStatus", "undelivered"),
        ("SmsSid", "SM1234567890abcdef1234567890abcdef"),
        ("SmsStatus", "undelivered"),
        ("To", "+15558675310"),
    ])
}

/// TV5: a `delivered` callback with `RawDlrDoneDate`, parameters not in
/// sorted order.
pub fn tv5() -> FormParams {
    pairs(&[
        ("AccountSid", "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"),
        ("ApiVersion", "2010-04-01"),
        ("From", "+15017122661"),
        ("MessageSid", "SM1234567890abcdef1234567890abcdef"),
        ("MessageStatus", "delivered"),
        ("SmsSid", "SM1234567890abcdef1234567890abcdef"),
        ("SmsStatus", "delivered"),
        ("To", "+15558675310"),
        ("RawDlrDoneDate", "2404151230"),
    ])
}

fn pairs(pairs: &[(&str, &str)]) -> FormParams {
    FormParams::from_pairs(pairs.iter().map(|&(k, v)| (k.to_owned(), v.to_owned())))
}
