//! Status callbacks as Twilio sends them and as ingest publishes them:
//! their parameters, their signature, the envelope.

use queue_wire::envelope::{BodyKind, CallbackEnvelope};
use twilio_protocol::form::FormParams;
use twilio_protocol::signature::{compute_signature, AuthToken};

/// The auth token every test app is configured with.
pub const TEST_TOKEN: &str = "12345";

/// The parameters Twilio sends for one status of one message.
pub fn status_params(message_sid: &str, status: &str, error_code: Option<i32>) -> FormParams {
    let mut pairs = vec![
        (
            "AccountSid",
            "AC00000000000000000000000000000000".to_owned(),
        ),
        ("ApiVersion", "2010-04-01".to_owned()),
    ];
    if let Some(code) = error_code {
        pairs.push(("ErrorCode", code.to_string()));
    }
    pairs.extend([
        ("From", "+15017122661".to_owned()),
        ("MessageSid", message_sid.to_owned()),
        ("MessageStatus", status.to_owned()),
        ("SmsSid", message_sid.to_owned()),
        ("SmsStatus", status.to_owned()),
        ("To", "+15558675310".to_owned()),
    ]);
    FormParams::from_pairs(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)))
}

/// A message SID for test message number `n`.
pub fn message_sid(n: u64) -> String {
    format!("SM{:032x}", u128::from(n) | (0xabcdef << 64))
}

/// Signs `params` for `url` with the test token, as Twilio would.
pub fn sign(url: &str, params: &FormParams) -> String {
    compute_signature(&AuthToken::new(TEST_TOKEN), url, params)
}

/// Posts a signed form callback to `base` (e.g. `http://127.0.0.1:1234`).
pub async fn post_signed(
    client: &reqwest::Client,
    base: &str,
    params: &FormParams,
) -> reqwest::Response {
    let url = format!("{base}/twilio/status");
    client
        .post(&url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("X-Twilio-Signature", sign(&url, params))
        .body(params.encode())
        .send()
        .await
        .unwrap()
}

/// The envelope ingest would publish for a form callback.
pub fn callback_envelope(
    params: &FormParams,
    received_at: chrono::DateTime<chrono::Utc>,
) -> CallbackEnvelope {
    CallbackEnvelope {
        body: params.encode().into_bytes(),
        body_kind: BodyKind::Form,
        received_at,
        request_id: Some(uuid::Uuid::new_v4()),
        idempotency_token: None,
        trace_context: Vec::new(),
    }
}
