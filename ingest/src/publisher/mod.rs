//! Publishing accepted callbacks to RabbitMQ with publisher confirms, or,
//! while RabbitMQ cannot confirm them, to the durable local spool.
//!
//! A request hands its verified callback to the `committer`, which groups
//! callbacks that arrive together into one batch message with one confirm,
//! and gets its answer when that confirm arrives (or when the batch is
//! written to the spool instead). The connection and its confirm-mode
//! channel are kept by `crate::link`'s supervisor, which the spool's
//! drainer shares; a lapin channel pipelines
//! publishes and streams their confirms back, so several batches are in
//! flight at once with no lock around publish-and-wait.
//!
//! Shutdown runs in order: the server has answered its last request; the
//! committer answers the batches in flight; the spool's drainer then
//! empties the spool into RabbitMQ for up to the drain window (a scaled-down
//! process must not strand what it answered 200 for); last, the connection
//! is closed.

mod committer;
mod outcome;

pub use committer::BatchLimits;
pub(crate) use committer::{spool_after, SpoolPolicy};
pub(crate) use outcome::{Committed, PublishError};

use queue_wire::envelope::CallbackEnvelope;
use queue_wire::topology::Topology;
use service_kit::sync::lock;
use service_kit::telemetry::trace_headers;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use twilio_protocol::callback::StatusCallback;

use crate::link::{Destination, LinkError, LinkSupervisor};
use crate::metrics::{PUBLISHES_IN_FLIGHT, PUBLISH_CONFIRM_DURATION};
use crate::spool::drainer::{Drainer, FinalDrain};
use crate::spool::{Spool, SpoolHealth};
use committer::{Committer, Pending};

#[derive(Clone)]
pub(crate) struct CallbackPublisher {
    link: Arc<LinkSupervisor>,
    spool: Option<Spool>,
    queue: mpsc::UnboundedSender<Pending>,
    exchange: Arc<str>,
    confirm_timeout: Duration,
    /// Stops the committer.
    stop: CancellationToken,
    /// Asks the drainer to empty the spool and return.
    finish_draining: CancellationToken,
    /// Ends the drainer at once: the drain window is over.
    stop_draining: CancellationToken,
    /// The committer and the drainer until `start`; then their tasks.
    tasks: Arc<Mutex<Tasks>>,
}

#[derive(Default)]
struct Tasks {
    committer: Option<Committer>,
    drainer: Option<Drainer>,
    running_committer: Option<JoinHandle<()>>,
    running_drainer: Option<JoinHandle<FinalDrain>>,
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
        let finish_draining = CancellationToken::new();
        let stop_draining = CancellationToken::new();
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
            finish: finish_draining.clone(),
            stop: stop_draining.clone(),
        });
        Self {
            link,
            spool: spool.map(|policy| policy.spool),
            queue,
            exchange,
            confirm_timeout,
            stop,
            finish_draining,
            stop_draining,
            tasks: Arc::new(Mutex::new(Tasks {
                committer: Some(committer),
                drainer,
                ..Tasks::default()
            })),
        }
    }

    /// Starts the committer, the spool's drainer and the supervisor that
    /// connects (and reconnects) to RabbitMQ.
    pub fn start(&self) {
        let mut tasks = lock(&self.tasks);
        if let Some(committer) = tasks.committer.take() {
            tasks.running_committer = Some(tokio::spawn(committer.run()));
        }
        if let Some(drainer) = tasks.drainer.take() {
            tasks.running_drainer = Some(tokio::spawn(drainer.run()));
        }
        self.link.start();
    }

    /// Whether the spool could take a callback now (`None`: no spool).
    pub fn spool_health(&self) -> Option<SpoolHealth> {
        self.spool.as_ref().map(Spool::health)
    }

    /// Whether RabbitMQ could confirm a publish issued now.
    pub fn broker_ready(&self) -> bool {
        self.link.is_ready()
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
            messaging.message.id = envelope.request_id.map(tracing::field::display),
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
            self.link.usable()?;
        }
        let (answer, answered) = oneshot::channel();
        let deadline = Instant::now() + self.confirm_timeout;
        self.queue
            .send(Pending {
                envelope,
                answer,
                deadline,
            })
            .map_err(|_| LinkError::NotConnected)?;
        match tokio::time::timeout(self.confirm_timeout, answered).await {
            Ok(Ok(outcome)) => outcome,
            // The committer stopped (shutting down).
            Ok(Err(_)) => Err(LinkError::NotConnected.into()),
            Err(_) => Err(queue_wire::broker::ConfirmError::Timeout(self.confirm_timeout).into()),
        }
    }

    /// After the server has answered its last request: stops the committer
    /// once the batches in flight are answered, drains the spool into
    /// RabbitMQ for up to `drain_window` (whenever RabbitMQ can confirm
    /// within it), then closes the connection. What the spool still holds
    /// stays on disk for the next process on its directory, or any live one
    /// that adopts it.
    pub async fn shutdown(&self, drain_window: Duration) {
        let (committer, drainer) = {
            let mut tasks = lock(&self.tasks);
            (tasks.running_committer.take(), tasks.running_drainer.take())
        };
        self.stop.cancel();
        let grace = self.confirm_timeout + Duration::from_secs(1);
        if let Some(mut committer) = committer {
            if tokio::time::timeout(grace, &mut committer).await.is_err() {
                tracing::debug!("the committer was still busy at shutdown");
                committer.abort();
            }
        }
        if let (Some(drainer), Some(spool)) = (drainer, &self.spool) {
            self.drain_before_exit(drainer, spool, drain_window).await;
        }
        self.link.shutdown().await;
    }

    /// Lets the drainer empty the spool for up to `window`, then says what
    /// it drained and what is left where.
    async fn drain_before_exit(
        &self,
        mut drainer: JoinHandle<FinalDrain>,
        spool: &Spool,
        window: Duration,
    ) {
        let spooled = spool.callbacks();
        if spooled > 0 && !window.is_zero() {
            tracing::info!(
                callbacks = spooled,
                window_secs = window.as_secs(),
                "draining the spool into RabbitMQ before exiting"
            );
        }
        self.finish_draining.cancel();
        let finished = match tokio::time::timeout(window, &mut drainer).await {
            Ok(finished) => finished.ok(),
            Err(_) => {
                // Out of time: it stops between two records, or within a
                // confirm deadline of them.
                self.stop_draining.cancel();
                let grace = self.confirm_timeout + Duration::from_secs(1);
                match tokio::time::timeout(grace, &mut drainer).await {
                    Ok(finished) => finished.ok(),
                    Err(_) => {
                        drainer.abort();
                        None
                    }
                }
            }
        };
        // An empty segment is removed, a partial one sealed for the next process.
        spool.seal_active().await;
        let FinalDrain {
            drained,
            orphans_left,
        } = finished.unwrap_or_default();
        let mut left: Vec<(String, u64)> = orphans_left
            .into_iter()
            .filter(|(_, callbacks)| *callbacks > 0)
            .map(|(dir, callbacks)| (dir.display().to_string(), callbacks))
            .collect();
        let own_left = spool.callbacks();
        if own_left > 0 {
            left.insert(0, (spool.dir().display().to_string(), own_left));
        }
        if drained > 0 {
            tracing::info!(drained, "drained the spool into RabbitMQ before exiting");
        }
        let remaining: u64 = left.iter().map(|(_, callbacks)| callbacks).sum();
        if !left.is_empty() {
            let dirs = left
                .iter()
                .map(|(dir, callbacks)| format!("{dir} ({callbacks})"))
                .collect::<Vec<_>>()
                .join(", ");
            tracing::warn!(
                remaining,
                dirs = %dirs,
                window_secs = window.as_secs(),
                "exiting with callbacks still spooled: RabbitMQ did not confirm them within the drain window; they stay on disk and are drained by the next ingest on that directory, or by any live ingest that adopts it"
            );
        }
    }
}
