//! What `/readyz` answers: 200 while a callback accepted now would be
//! kept (RabbitMQ could confirm it, or the spool could take it); the body
//! says which, or why neither.

use service_kit::probes::{Probe, ProbeBody, Readiness};

use crate::spool::SpoolHealth;
use crate::state::IngestState;

impl Readiness for IngestState {
    async fn readiness(&self) -> Probe {
        let (ready, text) = self.readiness_text();
        Probe {
            ready,
            body: ProbeBody::Text(text),
        }
    }
}

impl IngestState {
    fn readiness_text(&self) -> (bool, String) {
        let publisher = &self.publisher;
        if publisher.broker_ready() {
            let text = if publisher.spooling() {
                "ready (draining the spool)"
            } else {
                "ready"
            };
            return (true, text.to_owned());
        }
        let why = match publisher.spool_health() {
            Some(SpoolHealth::Accepting) => {
                return (true, "ready (spooling: RabbitMQ cannot confirm)".to_owned())
            }
            Some(SpoolHealth::Full { max_bytes }) => {
                format!("the spool is full (INGEST_SPOOL_MAX_BYTES={max_bytes})")
            }
            // Until a write works again: the spool tries every few seconds.
            Some(SpoolHealth::Failing { error }) => format!("the spool cannot write: {error}"),
            None => "there is no spool (INGEST_SPOOL_MAX_BYTES=0)".to_owned(),
        };
        (
            false,
            format!("not ready: RabbitMQ cannot confirm and {why}"),
        )
    }
}
