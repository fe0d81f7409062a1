//! Publishing accepted callbacks to RabbitMQ with publisher confirms, or,
//! while RabbitMQ cannot confirm them, to the durable local spool.
//!
//! A request hands its verified callback to the `committer`, which groups
//! callbacks that arrive together into one batch message with one confirm,
//! and gets its answer when that confirm arrives (or when the batch is
//! written to the spool instead). The connection and its confirm-mode
//! channel are kept by `link`'s supervisor; a lapin channel pipelines
//! publishes and streams their confirms back, so several batches are in
//! flight at once with no lock around publish-and-wait.

mod committer;
mod link;

pub use committer::BatchLimits;
pub use link::LinkSupervisor;

use queue_wire::envelope::CallbackEnvelope;
use queue_wire::topology::Topology;
use service_kit::telemetry::trace_headers;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use twilio_protocol::callback::StatusCallback;

use crate::metrics::{PUBLISHES_IN_FLIGHT, PUBLISH_CONFIRM_DURATION};
use crate::spool::drainer::Drainer;
use crate::spool::{Spool, SpoolError};
use committer::{Committer, Pending};

#[derive(Clone, Debug, thiserror::Error)]
pub enum PublishError {
    #[error("not connected to RabbitMQ")]
    NotConnected,
    #[error("RabbitMQ is blocking publishers (flow control: memory or disk alarm)")]
    Blocked,
    #[error(transparent)]
    NotConfirmed(#[from] queue_wire::broker::ConfirmError),
    #[error("RabbitMQ has stopped confirming in time")]
    Unresponsive,
    #[error("RabbitMQ could not confirm, and the spool could not take it: {0}")]
    Spool(SpoolError),
}

/// Where an accepted callback is now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Committed {
    /// Confirmed by RabbitMQ.
    Broker,
    /// In the local spool, on disk; the drainer will publish it.
    Spool,
}

/// Where batches are published.
pub struct Destination {
    pub exchange: String,
    pub routing_key: String,
}

/// How the publisher falls back on the spool.
#[derive(Clone)]
pub struct SpoolPolicy {
    pub spool: Spool,
    /// How long a batch may wait for its confirm before it is spooled.
    pub spool_after: Duration,
}

#[derive(Clone)]
pub struct CallbackPublisher {
    link: Arc<LinkSupervisor>,
    spool: Option<Spool>,
    queue: mpsc::UnboundedSender<Pending>,
    exchange: Arc<str>,
    confirm_timeout: Duration,
    stop: CancellationToken,
    /// The committer and the drainer until `start`; then their tasks.
    tasks: Arc<Mutex<Tasks>>,
}

#[derive(Default)]
struct Tasks {
    committer: Option<Committer>,
    drainer: Option<Drainer>,
    running: Vec<JoinHandle<()>>,
}

impl CallbackPublisher {
    /// A publisher with no connection yet: until `start` has brought the
    /// first connection up, callbacks go to the spool (or, without one, get
    /// `NotConnected`).
    pub fn new(
        amqp_url: String,
        topology: Topology,
        limits: BatchLimits,
        confirm_timeout: Duration,
        spool: Option<SpoolPolicy>,
    ) -> Self {
        let exchange: Arc<str> = topology.exchange().into();
        let destination = Arc::new(Destination {
            exchange: exchange.to_string(),
            routing_key: topology.routing_key().to_owned(),
        });
        let consequence = if spool.is_some() {
            "callbacks are spooled to disk until it confirms again"
        } else {
            "not ready, callbacks get 503"
        };
        let link = Arc::new(LinkSupervisor::new(amqp_url, topology, consequence));
        let stop = CancellationToken::new();
        let (queue, committer) = Committer::new(
            link.clone(),
            destination.clone(),
            limits,
            spool.clone(),
            stop.clone(),
        );
        let drainer = spool.as_ref().map(|policy| Drainer {
            spool: policy.spool.clone(),
            link: link.clone(),
            destination,
            confirm_timeout,
            stop: stop.clone(),
        });
        Self {
            link,
            spool: spool.map(|policy| policy.spool),
            queue,
            exchange,
            confirm_timeout,
            stop,
            tasks: Arc::new(Mutex::new(Tasks {
                committer: Some(committer),
                drainer,
                running: Vec::new(),
            })),
        }
    }

    /// Starts the committer, the spool's drainer and the supervisor that
    /// connects (and reconnects) to RabbitMQ.
    pub fn start(&self) {
        let mut tasks = lock(&self.tasks);
        if let Some(committer) = tasks.committer.take() {
            tasks.running.push(tokio::spawn(committer.run()));
        }
        if let Some(drainer) = tasks.drainer.take() {
            tasks.running.push(tokio::spawn(drainer.run()));
        }
        self.link.start();
    }

    /// Whether a callback accepted now would be kept: RabbitMQ could
    /// confirm it, or the spool could take it.
    pub fn is_ready(&self) -> bool {
        self.broker_ready() || self.spool.as_ref().is_some_and(Spool::can_accept)
    }

    /// Whether RabbitMQ could confirm a publish issued now.
    pub fn broker_ready(&self) -> bool {
        self.link.current().is_some_and(|link| link.is_ready())
    }

    /// Whether the spool holds callbacks not yet in RabbitMQ.
    pub fn spooling(&self) -> bool {
        self.spool.as_ref().is_some_and(|spool| !spool.is_empty())
    }

    /// Publishes one callback as part of a persistent, mandatory batch
    /// message and waits for the broker to confirm it, or for the spool to
    /// have it on disk. `Ok` means it will not be lost. The answer comes
    /// within the confirm deadline whatever happens (a blocked broker can
    /// stall a publish or its confirm). The publish is a producer span of
    /// the callback's trace, and the worker's spans continue from it.
    pub async fn publish(
        &self,
        mut envelope: CallbackEnvelope,
        callback: &StatusCallback,
    ) -> Result<Committed, PublishError> {
        let span = tracing::info_span!(
            "twilio.status publish",
            otel.kind = "producer",
            messaging.system = "rabbitmq",
            messaging.operation.type = "send",
            messaging.destination.name = %self.exchange,
            messaging.message.id = %envelope.request_id,
            twilio.message_sid = %callback.message_sid,
            twilio.message_status = %callback.status,
            spooled = tracing::field::Empty,
        );
        envelope.trace_context = trace_headers(&span);
        metrics::gauge!(PUBLISHES_IN_FLIGHT.name).increment(1.0);
        let started = Instant::now();
        let published = self.committed(envelope).instrument(span.clone()).await;
        metrics::gauge!(PUBLISHES_IN_FLIGHT.name).decrement(1.0);
        match published {
            Ok(Committed::Broker) => metrics::histogram!(PUBLISH_CONFIRM_DURATION.name)
                .record(started.elapsed().as_secs_f64()),
            Ok(Committed::Spool) => {
                span.record("spooled", true);
            }
            Err(_) => {}
        }
        published
    }

    async fn committed(&self, envelope: CallbackEnvelope) -> Result<Committed, PublishError> {
        if self.spool.is_none() {
            // Without a spool, refuse at once what the broker cannot take.
            let link = self.link.current().ok_or(PublishError::NotConnected)?;
            if link.is_blocked() {
                return Err(PublishError::Blocked);
            }
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
    /// and the drainer once the batches in flight are answered, then closes
    /// the connection. What the spool holds stays on disk for the next start.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        let running = std::mem::take(&mut lock(&self.tasks).running);
        for task in running {
            if tokio::time::timeout(self.confirm_timeout + Duration::from_secs(1), task)
                .await
                .is_err()
            {
                tracing::debug!("a publisher task was still busy at shutdown");
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
