//! Verify first, parse second: a body is only interpreted once its
//! signature holds, so nothing unsigned is ever read as a callback, and
//! anything validly signed that carries a message id and status is taken.
//! The one thing read before verifying is the `AccountSid`, which chooses
//! the token to verify with (the keyring's rules).

use queue_wire::envelope::BodyKind;
use twilio_protocol::callback::{JsonBody, StatusCallback};
use twilio_protocol::form::FormParams;
use twilio_protocol::keyring::Keyring;

use crate::rejection::Rejection;

/// What the request says about how it was signed.
pub struct SignedRequest<'a> {
    pub url: &'a str,
    pub signature: &'a str,
    /// `X-Twilio-Webhooks-Signature-Settings`, when sent.
    pub settings: Option<&'a str>,
}

pub fn verified_callback(
    keyring: &Keyring,
    signed: &SignedRequest<'_>,
    kind: BodyKind,
    body: &[u8],
) -> Result<StatusCallback, Rejection> {
    match kind {
        BodyKind::Form => {
            // Parsing the form is needed to compute its signature; it does
            // not yet interpret it.
            let params = FormParams::parse(body).map_err(|e| Rejection::Malformed(e.into()))?;
            let key = keyring.select(params.get("AccountSid"), signed.settings)?;
            if !key
                .verifier
                .verify_form_with(key.algorithm, signed.url, &params, signed.signature)
            {
                return Err(Rejection::BadSignature);
            }
            Ok(StatusCallback::from_params(params)?)
        }
        BodyKind::Json => {
            // Parsed once: the account before verifying, the callback after.
            let parsed = JsonBody::parse(body);
            let account_sid = parsed.as_ref().ok().and_then(JsonBody::account_sid);
            let key = keyring.select(account_sid, signed.settings)?;
            if !key
                .verifier
                .verify_json_with(key.algorithm, signed.url, body, signed.signature)
            {
                return Err(Rejection::BadSignature);
            }
            Ok(parsed?.into_callback()?)
        }
    }
}
