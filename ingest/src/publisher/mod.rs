//! Publishing accepted callbacks to RabbitMQ with publisher confirms.
//!
//! One connection and one confirm-mode channel, shared by every request: a
//! lapin channel pipelines publishes and streams their confirms back, so many
//! requests wait on their own confirm at once with no lock around
//! publish-and-wait. The connection is kept by `link`'s supervisor.

mod link;

use lapin::types::ShortString;
use queue_wire::envelope::CallbackEnvelope;
use queue_wire::topology::Topology;
use service_kit::telemetry::trace_headers;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;
use twilio_protocol::callback::StatusCallback;

use crate::metrics::{PUBLISHES_IN_FLIGHT, PUBLISH_CONFIRM_DURATION};
use link::LinkSupervisor;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("not connected to RabbitMQ")]
    NotConnected,
    #[error("RabbitMQ is blocking publishers (flow control: memory or disk alarm)")]
    Blocked,
    #[error(transparent)]
    NotConfirmed(#[from] queue_wire::broker::ConfirmError),
}

#[derive(Clone)]
pub struct CallbackPublisher {
    link: Arc<LinkSupervisor>,
    exchange: ShortString,
    routing_key: ShortString,
    confirm_timeout: Duration,
}

impl CallbackPublisher {
    /// A publisher with no connection yet: publishing fails fast with
    /// `NotConnected` until `start` has brought the first connection up.
    pub fn new(amqp_url: String, topology: Topology, confirm_timeout: Duration) -> Self {
        Self {
            exchange: topology.exchange().into(),
            routing_key: topology.routing_key().into(),
            link: Arc::new(LinkSupervisor::new(amqp_url, topology)),
            confirm_timeout,
        }
    }

    /// Starts the supervisor that connects (and reconnects) to RabbitMQ.
    pub fn start(&self) {
        self.link.start();
    }

    /// Whether a publish issued now can be confirmed.
    pub fn is_ready(&self) -> bool {
        self.link.current().is_some_and(|link| link.is_ready())
    }

    /// Publishes one callback as a persistent, mandatory message and waits
    /// for the broker to confirm it. `Ok` means RabbitMQ has taken
    /// responsibility. One deadline covers the publish and its confirm
    /// together (a blocked broker can stall either), and a connection the
    /// broker is blocking is refused at once: every request gets its answer
    /// in time. The publish is a producer span of the callback's trace, and
    /// the worker's spans continue from it.
    pub async fn publish(
        &self,
        mut envelope: CallbackEnvelope,
        callback: &StatusCallback,
    ) -> Result<(), PublishError> {
        let span = tracing::info_span!(
            "twilio.status publish",
            otel.kind = "producer",
            messaging.system = "rabbitmq",
            messaging.operation.type = "send",
            messaging.destination.name = %self.exchange,
            messaging.message.id = %envelope.request_id,
            twilio.message_sid = %callback.message_sid,
            twilio.message_status = %callback.status,
        );
        envelope.trace_context = trace_headers(&span);
        metrics::gauge!(PUBLISHES_IN_FLIGHT.name).increment(1.0);
        let started = Instant::now();
        let published = self.publish_confirmed(&envelope).instrument(span).await;
        metrics::gauge!(PUBLISHES_IN_FLIGHT.name).decrement(1.0);
        if published.is_ok() {
            metrics::histogram!(PUBLISH_CONFIRM_DURATION.name)
                .record(started.elapsed().as_secs_f64());
        }
        published
    }

    async fn publish_confirmed(&self, envelope: &CallbackEnvelope) -> Result<(), PublishError> {
        let link = self.link.current().ok_or(PublishError::NotConnected)?;
        if link.is_blocked() {
            return Err(PublishError::Blocked);
        }
        queue_wire::broker::publish_confirmed(
            link.channel(),
            self.exchange.as_str(),
            self.routing_key.as_str(),
            &envelope.body,
            envelope.to_properties(),
            self.confirm_timeout,
        )
        .await?;
        Ok(())
    }

    /// Closes the connection after in-flight publishes were answered.
    pub async fn shutdown(&self) {
        self.link.shutdown().await;
    }
}
