//! Publishing accepted callbacks to RabbitMQ with publisher confirms.
//!
//! A request hands its verified callback to the `committer`, which groups
//! callbacks that arrive together into one batch message with one confirm,
//! and gets its answer when that confirm arrives. The connection and its
//! confirm-mode channel are kept by `link`'s supervisor; a lapin channel
//! pipelines publishes and streams their confirms back, so several batches
//! are in flight at once with no lock around publish-and-wait.

mod committer;
mod link;

pub use committer::BatchLimits;

use queue_wire::envelope::CallbackEnvelope;
use queue_wire::topology::Topology;
use service_kit::telemetry::trace_headers;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use twilio_protocol::callback::StatusCallback;

use crate::metrics::{PUBLISHES_IN_FLIGHT, PUBLISH_CONFIRM_DURATION};
use committer::{Committer, Destination, Pending};
use link::LinkSupervisor;

#[derive(Clone, Debug, thiserror::Error)]
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
    queue: mpsc::UnboundedSender<Pending>,
    exchange: Arc<str>,
    confirm_timeout: Duration,
    stop: CancellationToken,
    /// Taken by `start`.
    committer: Arc<Mutex<Option<Committer>>>,
    committer_task: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl CallbackPublisher {
    /// A publisher with no connection yet: publishing fails fast with
    /// `NotConnected` until `start` has brought the first connection up.
    pub fn new(
        amqp_url: String,
        topology: Topology,
        limits: BatchLimits,
        confirm_timeout: Duration,
    ) -> Self {
        let exchange: Arc<str> = topology.exchange().into();
        let destination = Destination {
            exchange: exchange.to_string(),
            routing_key: topology.routing_key().to_owned(),
        };
        let link = Arc::new(LinkSupervisor::new(amqp_url, topology));
        let stop = CancellationToken::new();
        let (queue, committer) = Committer::new(link.clone(), destination, limits, stop.clone());
        Self {
            link,
            queue,
            exchange,
            confirm_timeout,
            stop,
            committer: Arc::new(Mutex::new(Some(committer))),
            committer_task: Arc::new(Mutex::new(None)),
        }
    }

    /// Starts the committer and the supervisor that connects (and
    /// reconnects) to RabbitMQ.
    pub fn start(&self) {
        if let Some(committer) = lock(&self.committer).take() {
            *lock(&self.committer_task) = Some(tokio::spawn(committer.run()));
        }
        self.link.start();
    }

    /// Whether a publish issued now can be confirmed.
    pub fn is_ready(&self) -> bool {
        self.link.current().is_some_and(|link| link.is_ready())
    }

    /// Publishes one callback as part of a persistent, mandatory batch
    /// message and waits for the broker to confirm it. `Ok` means RabbitMQ
    /// has taken responsibility. The answer comes within the confirm
    /// deadline whatever happens (a blocked broker can stall a publish or
    /// its confirm), and a connection the broker is blocking is refused at
    /// once. The publish is a producer span of the callback's trace, and
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
        let published = self.committed(envelope).instrument(span).await;
        metrics::gauge!(PUBLISHES_IN_FLIGHT.name).decrement(1.0);
        if published.is_ok() {
            metrics::histogram!(PUBLISH_CONFIRM_DURATION.name)
                .record(started.elapsed().as_secs_f64());
        }
        published
    }

    async fn committed(&self, envelope: CallbackEnvelope) -> Result<(), PublishError> {
        let link = self.link.current().ok_or(PublishError::NotConnected)?;
        if link.is_blocked() {
            return Err(PublishError::Blocked);
        }
        let (answer, answered) = oneshot::channel();
        let deadline = Instant::now() + self.confirm_timeout;
        self.queue
            .send(Pending {
                envelope,
                answer,
                deadline,
            })
            .map_err(|_| PublishError::NotConnected)?;
        match tokio::time::timeout(self.confirm_timeout, answered).await {
            Ok(Ok(outcome)) => outcome,
            // The committer stopped (shutting down).
            Ok(Err(_)) => Err(PublishError::NotConnected),
            Err(_) => Err(queue_wire::broker::ConfirmError::Timeout(self.confirm_timeout).into()),
        }
    }

    /// After the server has answered its last request: stops the committer
    /// once the batches in flight are answered, then closes the connection.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        let task = lock(&self.committer_task).take();
        if let Some(task) = task {
            if tokio::time::timeout(self.confirm_timeout + Duration::from_secs(1), task)
                .await
                .is_err()
            {
                tracing::debug!("batches still in flight at shutdown");
            }
        }
        self.link.shutdown().await;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
