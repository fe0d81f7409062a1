//! `POST /twilio/status`: read → verify → publish → answer. Telemetry is
//! the middleware's (`request_telemetry`); this only says what happened.

use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use chrono::Utc;
use queue_wire::envelope::CallbackEnvelope;

use crate::body;
use crate::publisher::Committed;
use crate::rejection::Rejection;
use crate::request_telemetry::{Accepted, RequestId};
use crate::state::IngestState;
use crate::verify::{verified_callback, SignedRequest};
use twilio_protocol::keyring::SIGNATURE_SETTINGS_HEADER;

const SIGNATURE_HEADER: &str = "X-Twilio-Signature";
const IDEMPOTENCY_HEADER: &str = "I-Twilio-Idempotency-Token";

pub(crate) async fn receive_status(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<IngestState>,
) -> Result<HttpResponse, Rejection> {
    let raw = body::read(&request, payload, state.body_limits).await?;
    let signature = body::header(&request, SIGNATURE_HEADER).ok_or(Rejection::MissingSignature)?;
    let signed_url = state.signed_url.signed_url(&request);
    let signed = SignedRequest {
        url: &signed_url,
        signature,
        settings: body::header(&request, SIGNATURE_SETTINGS_HEADER),
    };
    let callback = verified_callback(&state.keyring, &signed, raw.kind, &raw.bytes)?;

    let span = tracing::Span::current();
    span.record("message_sid", callback.message_sid.as_str());
    span.record("twilio.message_sid", callback.message_sid.as_str());
    span.record("twilio.message_status", callback.status.as_str());

    // Set by the telemetry middleware around this route.
    let request_id = request.extensions().get::<RequestId>().map(|id| id.0);
    let envelope = CallbackEnvelope {
        body: raw.bytes.into(),
        body_kind: raw.kind,
        received_at: Utc::now(),
        request_id,
        idempotency_token: body::header(&request, IDEMPOTENCY_HEADER).map(str::to_owned),
        trace_context: Vec::new(),
    };
    let committed = state.publisher.publish(envelope, &callback).await?;

    let mut answer = HttpResponse::Ok().finish();
    answer.extensions_mut().insert(Accepted {
        message_sid: callback.message_sid.as_str().to_owned(),
        status: callback.status.as_str().to_owned(),
        spooled: committed == Committed::Spool,
    });
    Ok(answer)
}
