//! What the broker and database ceilings measure with: realistic callbacks
//! (the generator `run` uses), as ingest would publish them.

use queue_wire::envelope::{BodyKind, CallbackEnvelope};
use std::sync::Arc;
use twilio_protocol::form::FormParams;
use twilio_protocol::signature::AuthToken;

use crate::workload::{Generator, Mix, RunId, Workload};

/// Genuine callbacks of a fresh run, one lane; their signatures are never
/// checked.
pub fn callbacks() -> Generator {
    let workload = Arc::new(Workload::new(
        "http://127.0.0.1:8080/twilio/status".into(),
        AuthToken::new("ceiling"),
        Mix::default(),
        RunId::random(),
    ));
    Generator::new(workload, 0, 1)
}

/// The envelope ingest publishes for a form callback received now, with an
/// idempotency token as Twilio sends one.
pub fn envelope(
    params: &FormParams,
    request_id: uuid::Uuid,
    trace_context: Vec<(String, String)>,
) -> CallbackEnvelope {
    CallbackEnvelope {
        body: params.encode().into_bytes(),
        body_kind: BodyKind::Form,
        received_at: chrono::Utc::now(),
        request_id: Some(request_id),
        idempotency_token: Some(uuid::Uuid::new_v4().to_string()),
        trace_context,
    }
}
