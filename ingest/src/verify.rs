//! Verify first, parse second: a body is only interpreted once its
//! signature holds, so nothing unsigned is ever read as a callback, and
//! anything validly signed that carries a message id and status is taken.

use queue_wire::envelope::BodyKind;
use twilio_protocol::callback::StatusCallback;
use twilio_protocol::form::FormParams;
use twilio_protocol::signature::SignatureVerifier;

use crate::rejection::Rejection;

pub fn verified_callback(
    verifier: &SignatureVerifier,
    signed_url: &str,
    signature: &str,
    kind: BodyKind,
    body: &[u8],
) -> Result<StatusCallback, Rejection> {
    match kind {
        BodyKind::Form => {
            // Parsing the form is needed to compute its signature; it does
            // not yet interpret it.
            let params = FormParams::parse(body).map_err(|e| Rejection::Malformed(e.into()))?;
            if !verifier.verify_form(signed_url, &params, signature) {
                return Err(Rejection::BadSignature);
            }
            Ok(StatusCallback::from_params(params)?)
        }
        BodyKind::Json => {
            if !verifier.verify_json(signed_url, body, signature) {
                return Err(Rejection::BadSignature);
            }
            Ok(StatusCallback::from_json(body)?)
        }
    }
}
