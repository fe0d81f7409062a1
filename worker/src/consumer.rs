//! The consuming loop: delivery → decode → dedupe → store → ack.
//!
//! Deliveries that are ready together are stored together in one
//! transaction, then acknowledged; nothing is acknowledged before its commit,
//! so a crash in between means a redelivery, which the dedup key absorbs.
//! `WORKER_CONCURRENCY` consumers, each on its own channel, do this side by
//! side, so one batch's round trips to Postgres overlap another's.
//! When the database cannot take writes (unreachable, read-only, disk full:
//! see `db_failure`), the consumer holds the batch in hand unacknowledged
//! and retries it with backoff until writes work again, instead of burning
//! retries. Holding, not returning, keeps the pause off the queue's delivery
//! count, so no outage of any length dead-letters good data; deliveries held
//! past `WORKER_HOLD_LIMIT_SECS` are re-enqueued as fresh copies before the
//! broker's consumer_timeout would return them.

use futures_util::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer};
use queue_wire::envelope::header_text;
use sea_orm::DatabaseConnection;
use service_kit::telemetry::{parent_from_headers, record_trace_ids};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::config::WorkerConfig;
use crate::db_failure::{classify, DbFailure};
use crate::decode::{decode, DecodedCallback};
use crate::failure_router::{FailureRouter, Routed};
use crate::health::WorkerHealth;
use crate::queue_depth;
use crate::store;

/// Why a broker session ended.
enum SessionEnd {
    Shutdown,
    BrokerLost(String),
}

const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Runs until `shutdown` turns true; then finishes the batch in hand and returns.
pub async fn run(
    config: WorkerConfig,
    db: DatabaseConnection,
    health: Arc<WorkerHealth>,
    mut shutdown: watch::Receiver<bool>,
) {
    // Not ready the moment this task ends, however it ends (a panic included).
    let _not_consuming_on_exit = NotConsumingOnExit(health.clone());
    let mut backoff = Duration::from_millis(100);
    while !*shutdown.borrow() {
        if !store::database_reachable(&db).await {
            health.set_database_up(false);
            tracing::warn!("database unreachable; not consuming until it answers");
            wait_for_database(&db, &mut shutdown).await;
            continue;
        }
        health.set_database_up(true);
        let session = match Session::open(&config).await {
            Ok(session) => session,
            Err(error) => {
                tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "cannot start consuming from RabbitMQ");
                sleep_unless_shutdown(backoff, &mut shutdown).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        health.set_consuming(true);
        tracing::info!(queue = %config.common.topology.main_queue(), "consuming");
        let end = session.consume(&config, &db, &health, &shutdown).await;
        health.set_consuming(false);
        session.close().await;
        match end {
            SessionEnd::Shutdown => break,
            SessionEnd::BrokerLost(error) => {
                tracing::warn!(%error, "RabbitMQ session lost; reconnecting");
                sleep_unless_shutdown(backoff, &mut shutdown).await;
            }
        }
    }
    tracing::info!("consumer stopped");
}

struct NotConsumingOnExit(Arc<WorkerHealth>);

impl Drop for NotConsumingOnExit {
    fn drop(&mut self) {
        self.0.set_consuming(false);
    }
}

async fn wait_for_database(db: &DatabaseConnection, shutdown: &mut watch::Receiver<bool>) {
    let mut delay = Duration::from_millis(250);
    while !*shutdown.borrow() && !store::database_reachable(db).await {
        sleep_unless_shutdown(delay, shutdown).await;
        delay = (delay * 2).min(MAX_BACKOFF);
    }
}

async fn sleep_unless_shutdown(delay: Duration, shutdown: &mut watch::Receiver<bool>) {
    tokio::select! {
        () = tokio::time::sleep(delay) => {}
        _ = shutdown.changed() => {}
    }
}

/// One broker connection with its consumers (a channel each) and the channel
/// failures are routed on.
struct Session {
    connection: Connection,
    /// Retry and dead-letter publishes go on a connection of their own: a
    /// broker in flow control blocks publishing connections, and acks of
    /// batches already stored must still get through.
    publishing: Connection,
    consumers: Vec<Consumer>,
    router: FailureRouter,
    queue: String,
    depth_sampler: tokio::task::JoinHandle<()>,
    /// Every channel, kept so that a clean stop closes each one before its
    /// connection: a channel whose last handle is dropped closes itself in
    /// the background, and one that does so while the connection closes
    /// makes lapin log an ERROR.
    channels: Vec<Channel>,
}

impl Session {
    async fn open(config: &WorkerConfig) -> lapin::Result<Self> {
        let topology = &config.common.topology;
        let connection = queue_wire::broker::connect(
            &config.common.amqp_url,
            &format!("worker {}", topology.prefix()),
        )
        .await?;
        topology.declare(&connection).await?;
        let mut consumers = Vec::with_capacity(config.concurrency);
        let mut channels = Vec::with_capacity(config.concurrency + 2);
        for _ in 0..config.concurrency {
            let channel = connection.create_channel().await?;
            channels.push(channel.clone());
            channel
                .basic_qos(config.prefetch, BasicQosOptions::default())
                .await?;
            consumers.push(
                channel
                    .basic_consume(
                        topology.main_queue().into(),
                        "".into(),
                        BasicConsumeOptions::default(),
                        FieldTable::default(),
                    )
                    .await?,
            );
        }
        let publishing = queue_wire::broker::connect(
            &config.common.amqp_url,
            &format!("worker {} failures", topology.prefix()),
        )
        .await?;
        let route_channel = publishing.create_channel().await?;
        route_channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let depth_channel = connection.create_channel().await?;
        channels.push(depth_channel.clone());
        channels.push(route_channel.clone());
        let depth_sampler = tokio::spawn(queue_depth::sample(depth_channel, topology.clone()));
        Ok(Self {
            connection,
            publishing,
            consumers,
            router: FailureRouter::new(route_channel, topology.clone()),
            queue: topology.main_queue(),
            depth_sampler,
            channels,
        })
    }

    async fn close(self) {
        self.depth_sampler.abort();
        let _ = self.depth_sampler.await;
        for channel in &self.channels {
            if channel.status().connected() {
                let _ = channel.close(200, "worker session ending".into()).await;
            }
        }
        // Unacknowledged deliveries return to the queue when the connection closes.
        let _ = self
            .connection
            .close(200, "worker session ending".into())
            .await;
        let _ = self
            .publishing
            .close(200, "worker session ending".into())
            .await;
    }

    /// Runs every consumer until one of them ends the session; the others
    /// then finish the batch in hand and stop too.
    async fn consume(
        &self,
        config: &WorkerConfig,
        db: &DatabaseConnection,
        health: &WorkerHealth,
        shutdown: &watch::Receiver<bool>,
    ) -> SessionEnd {
        let (stop, stopped) = watch::channel(false);
        let loops = self.consumers.iter().map(|consumer| {
            let stop = &stop;
            let mut worker = ConsumerLoop {
                session: self,
                consumer: consumer.clone(),
                config,
                db,
                health,
                shutdown: shutdown.clone(),
                stopped: stopped.clone(),
            };
            async move {
                let end = worker.run().await;
                stop.send_replace(true);
                end
            }
        });
        let ends = futures_util::future::join_all(loops).await;
        // The reason to report is the first that is not "asked to stop".
        ends.into_iter()
            .find(|end| !matches!(end, SessionEnd::Shutdown))
            .unwrap_or(SessionEnd::Shutdown)
    }
}

/// How a batch's write ended after the outage and conflict policy ran.
enum Written {
    Stored(store::BatchOutcome),
    /// Failed for a reason that may be about these callbacks.
    Failed(sea_orm::DbErr),
    /// Held past the hold limit and re-enqueued as fresh copies.
    Recycled,
}

/// Serialization failures and deadlocks are retried in place this often.
const CONFLICT_RETRIES: u32 = 5;

/// One consumer (one channel) of a session, with what it needs to store.
struct ConsumerLoop<'a> {
    session: &'a Session,
    consumer: Consumer,
    config: &'a WorkerConfig,
    db: &'a DatabaseConnection,
    health: &'a WorkerHealth,
    shutdown: watch::Receiver<bool>,
    stopped: watch::Receiver<bool>,
}

impl ConsumerLoop<'_> {
    fn stopping(&self) -> bool {
        *self.shutdown.borrow() || *self.stopped.borrow()
    }

    async fn run(&mut self) -> SessionEnd {
        loop {
            if self.stopping() {
                return SessionEnd::Shutdown;
            }
            let first = tokio::select! {
                biased;
                _ = self.shutdown.changed() => return SessionEnd::Shutdown,
                _ = self.stopped.changed() => return SessionEnd::Shutdown,
                next = self.consumer.next() => next,
            };
            let first = match first {
                Some(Ok(delivery)) => delivery,
                Some(Err(error)) => return SessionEnd::BrokerLost(error.to_string()),
                None => return SessionEnd::BrokerLost("consumer cancelled by the broker".into()),
            };
            // Take whatever else is already here, without waiting for more.
            let mut batch = vec![first];
            let mut pending_end = None;
            while batch.len() < self.config.max_batch {
                match self.next_ready() {
                    Ok(Some(delivery)) => batch.push(delivery),
                    Ok(None) => break,
                    Err(end) => {
                        pending_end = Some(end);
                        break;
                    }
                }
            }
            if let Err(end) = self.process(batch).await {
                return end;
            }
            if let Some(end) = pending_end {
                return end;
            }
        }
    }

    /// The next delivery already received, without waiting.
    fn next_ready(&mut self) -> Result<Option<Delivery>, SessionEnd> {
        match self.consumer.next().now_or_never() {
            Some(Some(Ok(delivery))) => Ok(Some(delivery)),
            Some(Some(Err(error))) => Err(SessionEnd::BrokerLost(error.to_string())),
            Some(None) => Err(SessionEnd::BrokerLost(
                "consumer cancelled by the broker".into(),
            )),
            None => Ok(None),
        }
    }

    /// Stores a batch and acknowledges it. `Err` ends the session; whatever
    /// was not acknowledged is redelivered later.
    async fn process(&mut self, batch: Vec<Delivery>) -> Result<(), SessionEnd> {
        metrics::histogram!("worker_batch_size").record(batch.len() as f64);
        let queue = &self.session.queue;
        let mut deliveries: Vec<Delivery> = Vec::with_capacity(batch.len());
        let mut events: Vec<DecodedCallback> = Vec::with_capacity(batch.len());
        let mut spans: Vec<tracing::Span> = Vec::with_capacity(batch.len());
        for delivery in batch {
            match decode(&delivery.properties, delivery.data.clone()) {
                Ok(callback) => {
                    if callback.callback.status.known().is_none() {
                        metrics::counter!("worker_unrecognised_statuses_total").increment(1);
                    }
                    spans.push(process_span(&delivery, &callback, queue));
                    deliveries.push(delivery);
                    events.push(callback);
                }
                Err(poison) => {
                    let reason = poison.to_string();
                    tracing::warn!(%reason, "dead-lettering a message that cannot be processed");
                    let router = &self.session.router;
                    route(
                        &delivery,
                        router.dead_letter(&delivery.properties, &delivery.data, &reason, "poison"),
                    )
                    .await?;
                }
            }
        }
        if deliveries.is_empty() {
            return Ok(());
        }
        // One persist span per callback, each a child of that callback's
        // trace, all open for the one transaction that stores them together.
        let persist_spans: Vec<tracing::Span> = spans
            .iter()
            .map(|parent| {
                tracing::info_span!(
                    parent: parent,
                    "twilio.status persist",
                    db.system.name = "postgresql",
                    db.operation.name = "INSERT",
                    db.collection.name = "message_status_events",
                    batch.size = events.len(),
                )
            })
            .collect();
        let written = self.write(&events, &deliveries).await;
        drop(persist_spans);
        match written? {
            Written::Stored(outcome) => {
                record_stored(&events, &spans, outcome);
                // Deliveries on a channel arrive in tag order and each consumer
                // stores one batch at a time, so every earlier tag on this
                // channel is in this batch or already settled: one ack covers all.
                match deliveries.last() {
                    Some(last) => acknowledge(last, true).await,
                    None => Ok(()),
                }
            }
            Written::Recycled => Ok(()),
            Written::Failed(error) => {
                tracing::warn!(%error, batch = events.len(), "batch failed; storing one by one");
                let one_by_one = deliveries.into_iter().zip(events).zip(spans);
                self.process_one_by_one(one_by_one.collect()).await
            }
        }
    }

    /// After a batch failed for a reason that may be about its callbacks:
    /// isolate the failing ones, store the rest, send the failing ones to retry.
    async fn process_one_by_one(
        &mut self,
        decoded: Vec<((Delivery, DecodedCallback), tracing::Span)>,
    ) -> Result<(), SessionEnd> {
        for ((delivery, event), span) in decoded {
            let single = [event];
            let persist_span = tracing::info_span!(parent: &span, "twilio.status persist", db.system.name = "postgresql");
            let written = self.write(&single, std::slice::from_ref(&delivery)).await;
            drop(persist_span);
            match written? {
                Written::Stored(outcome) => {
                    record_stored(&single, std::slice::from_ref(&span), outcome);
                    acknowledge(&delivery, false).await?;
                }
                Written::Recycled => {}
                Written::Failed(error) => {
                    let reason = format!("database error: {error}");
                    let router = &self.session.router;
                    let routed = route(
                        &delivery,
                        router.retry_or_dead_letter(&delivery.properties, &delivery.data, &reason),
                    )
                    .await?;
                    tracing::warn!(
                        message_sid = %single[0].callback.message_sid,
                        status = %single[0].callback.status,
                        ?routed,
                        %reason,
                        "callback not stored"
                    );
                }
            }
        }
        Ok(())
    }

    /// Writes `events`, applying the policy: conflicts are retried in place;
    /// while the database cannot take writes the batch is held and retried
    /// with backoff (the retry is the probe: it succeeds exactly when writes
    /// work again). Only failures that may be about the callbacks come back.
    async fn write(
        &mut self,
        events: &[DecodedCallback],
        held: &[Delivery],
    ) -> Result<Written, SessionEnd> {
        let mut conflicts = 0;
        let mut holding_since: Option<Instant> = None;
        let mut backoff = Duration::from_millis(250);
        loop {
            let error = match timed_persist(self.db, events).await {
                Ok(outcome) => {
                    if holding_since.is_some() {
                        self.health.set_database_up(true);
                        tracing::info!(held = held.len(), "database takes writes again; resuming");
                    }
                    return Ok(Written::Stored(outcome));
                }
                Err(error) => error,
            };
            let failure = match classify(&error) {
                // An unexplained error while the database does not even answer
                // is an outage too.
                DbFailure::Other if !store::database_reachable(self.db).await => DbFailure::Outage,
                failure => failure,
            };
            match failure {
                DbFailure::Conflict if conflicts < CONFLICT_RETRIES => {
                    conflicts += 1;
                    tokio::time::sleep(Duration::from_millis(10 * u64::from(conflicts))).await;
                }
                DbFailure::Conflict | DbFailure::Other => return Ok(Written::Failed(error)),
                DbFailure::Outage => {
                    let since = *holding_since.get_or_insert_with(|| {
                        self.health.set_database_up(false);
                        metrics::counter!("worker_database_pauses_total").increment(1);
                        tracing::warn!(
                            %error,
                            held = held.len(),
                            "database cannot take writes; holding deliveries until it can"
                        );
                        Instant::now()
                    });
                    if since.elapsed() >= self.config.hold_limit {
                        self.recycle(held).await?;
                        return Ok(Written::Recycled);
                    }
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        _ = self.shutdown.changed() => return Err(SessionEnd::Shutdown),
                        _ = self.stopped.changed() => return Err(SessionEnd::Shutdown),
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Re-enqueues held deliveries, and any others already received on this
    /// channel, as fresh copies (confirmed before each original is acked).
    /// A copy starts with a delivery count of zero and a new consumer_timeout
    /// clock, so a long outage never makes the broker count or drop them.
    async fn recycle(&mut self, held: &[Delivery]) -> Result<(), SessionEnd> {
        let mut buffered = Vec::new();
        while let Some(delivery) = self.next_ready()? {
            buffered.push(delivery);
        }
        let router = &self.session.router;
        for delivery in held.iter().chain(&buffered) {
            route(
                delivery,
                router.requeue(&delivery.properties, &delivery.data),
            )
            .await?;
        }
        metrics::counter!("worker_deliveries_recycled_total")
            .increment((held.len() + buffered.len()) as u64);
        tracing::warn!(
            recycled = held.len() + buffered.len(),
            "database still cannot take writes; held deliveries re-enqueued as fresh copies"
        );
        Ok(())
    }
}

/// Waits for a failure route to be confirmed, then acks the original.
async fn route(
    delivery: &Delivery,
    routing: impl std::future::Future<Output = Result<Routed, crate::failure_router::RouteError>>,
) -> Result<Routed, SessionEnd> {
    let routed = routing
        .await
        .map_err(|e| SessionEnd::BrokerLost(e.to_string()))?;
    acknowledge(delivery, false).await?;
    Ok(routed)
}

async fn timed_persist(
    db: &DatabaseConnection,
    events: &[DecodedCallback],
) -> Result<store::BatchOutcome, sea_orm::DbErr> {
    let started = Instant::now();
    let result = store::persist_batch(db, events).await;
    let outcome = if result.is_ok() {
        "committed"
    } else {
        "failed"
    };
    metrics::histogram!("worker_db_batch_duration_seconds", "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
    result
}

fn record_stored(
    events: &[DecodedCallback],
    spans: &[tracing::Span],
    outcome: store::BatchOutcome,
) {
    metrics::counter!("worker_events_persisted_total").increment(outcome.inserted as u64);
    metrics::counter!("worker_duplicates_skipped_total").increment(outcome.duplicates as u64);
    for (event, span) in events.iter().zip(spans) {
        span.in_scope(|| {
            tracing::info!(
                status = %event.callback.status,
                request_id = %event.envelope.request_id,
                "callback processed"
            );
        });
    }
}

/// The consumer span of one callback, continuing the trace ingest started.
fn process_span(delivery: &Delivery, event: &DecodedCallback, queue: &str) -> tracing::Span {
    let span = tracing::info_span!(
        parent: None,
        "twilio.status process",
        otel.kind = "consumer",
        messaging.system = "rabbitmq",
        messaging.operation.type = "process",
        messaging.destination.name = %queue,
        messaging.message.id = %event.envelope.request_id,
        messaging.rabbitmq.message.delivery_tag = delivery.delivery_tag,
        message_sid = %event.callback.message_sid,
        twilio.message_sid = %event.callback.message_sid,
        twilio.message_status = %event.callback.status,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    if let Some(headers) = delivery.properties.headers() {
        let _ = span.set_parent(parent_from_headers(|name| header_text(headers, name)));
    }
    record_trace_ids(&span);
    span
}

/// Acks `delivery`, and with `multiple` every earlier one on its channel.
async fn acknowledge(delivery: &Delivery, multiple: bool) -> Result<(), SessionEnd> {
    delivery
        .acker
        .ack(BasicAckOptions { multiple })
        .await
        .map(|_| ())
        .map_err(|e| SessionEnd::BrokerLost(format!("ack failed: {e}")))
}
