//! The relay: publishes the outbox to the change feed, and deletes each
//! change once RabbitMQ confirmed it.
//!
//! One worker relays at a time: the one holding a session advisory lock on
//! a connection of its own, through which it also reads and deletes. If
//! that connection is lost, so is the lock, and so is its way to read the
//! outbox: a former leader can at most finish the round in hand, which only
//! republishes changes (same `change_id`). The others try for the lock
//! every second, so a stopped or killed leader is replaced within about one.
//!
//! Order: each round reads the oldest changes (in id order, which per
//! message is `sequence` order: a message's next change cannot be inserted
//! before its previous one committed) and publishes only the first one of
//! each message; the next goes out in a later round, after this one is
//! confirmed. So a change is never published before its predecessor was
//! confirmed, whatever RabbitMQ refuses (a nack) or loses (a connection).
//!
//! Outages: while RabbitMQ is away or does not confirm, the outbox keeps
//! every change and the relay reconnects; while Postgres is away, it tries
//! for the lock again. Nothing is dropped.

use futures_util::future::join_all;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{Channel, Confirmation, Connection};
use queue_wire::reconnect::Reconnector;
use queue_wire::topology::Topology;
use sea_orm::sqlx::postgres::{PgConnectOptions, PgConnection};
use sea_orm::sqlx::{self, Connection as _};
use service_kit::backoff::Backoff;
use service_kit::telemetry::{parent_from_headers, trace_headers};
use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::change::OutboxRow;
use super::outbox;
use super::status::FeedStatus;
use crate::metrics::{
    CHANGES_PUBLISHED, CHANGE_PUBLISH_FAILURES, CHANGE_PUBLISH_LAG, CHANGE_ROUND_SIZE,
};

/// The relay's advisory lock (the two-key form: a lock space apart from the
/// store's one-key locks). 0x74776368 is "twch".
const LOCK_KEYS: (i32, i32) = (0x7477_6368, 1);
/// Most changes read per round.
const ROUND: i64 = 500;
/// With nothing to publish, how soon the leader looks again (a commit in
/// this process wakes it sooner).
const IDLE_LOOK: Duration = Duration::from_millis(50);
/// How often a worker that does not relay tries to take over.
const FOLLOWER_LOOK: Duration = Duration::from_secs(1);
/// Any one database call of the relay: past it the connection counts as lost.
const DATABASE_DEADLINE: Duration = Duration::from_secs(10);
/// Confirms of one round: past it the broker counts as blocked or lost.
const CONFIRM_DEADLINE: Duration = Duration::from_secs(10);

/// Where the relay publishes from and to.
pub struct RelaySettings {
    pub database_url: String,
    pub amqp_url: String,
    pub topology: Topology,
}

/// Relays while this worker holds the lock, tries for it while it does
/// not, until `stop`.
pub async fn run(settings: RelaySettings, status: Arc<FeedStatus>, stop: CancellationToken) {
    let mut broker = Reconnector::new(
        &settings.amqp_url,
        format!("worker {} changes", settings.topology.prefix()),
        "changes wait in the outbox",
    );
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    while !stop.is_cancelled() {
        let Some(mut lock) = take_lead(&settings.database_url, &stop).await else {
            break;
        };
        status.set_leader(true);
        tracing::info!("relaying the change feed");
        let ended = relay_while_leading(&mut lock, &mut broker, &settings.topology, &stop).await;
        status.set_leader(false);
        let _ = tokio::time::timeout(DATABASE_DEADLINE, lock.close()).await;
        match ended {
            Ended::Stop => break,
            Ended::Database(error) => {
                tracing::warn!(%error, "change relay lost its database connection; trying again");
                tokio::select! {
                    () = tokio::time::sleep(backoff.next_delay()) => {}
                    () = stop.cancelled() => break,
                }
            }
        }
    }
}

/// Why this worker stopped relaying.
enum Ended {
    Stop,
    Database(String),
}

/// Why a run of rounds stopped.
enum Lost {
    Stop,
    Database(String),
    Broker(String),
}

/// A connection holding the relay's lock, once this worker gets it; `None`
/// once `stop` is cancelled.
async fn take_lead(database_url: &str, stop: &CancellationToken) -> Option<PgConnection> {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    while !stop.is_cancelled() {
        let wait = match connect(database_url).await {
            Ok(mut connection) => loop {
                match on_database(try_lock(&mut connection)).await {
                    Ok(true) => return Some(connection),
                    Ok(false) => {}
                    Err(error) => {
                        tracing::debug!(%error, "change relay: lost the database while waiting");
                        break backoff.next_delay();
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(FOLLOWER_LOOK) => {}
                    () = stop.cancelled() => return None,
                }
            },
            Err(error) => {
                tracing::debug!(%error, "change relay: cannot reach the database");
                backoff.next_delay()
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => return None,
        }
    }
    None
}

async fn connect(database_url: &str) -> Result<PgConnection, String> {
    let options = PgConnectOptions::from_str(database_url)
        .map_err(|error| error.to_string())?
        .application_name("worker-change-relay")
        // A delete lost in a crash only publishes its changes again (same
        // `change_id`): the relay's commits need not wait for the WAL flush.
        .options([
            ("statement_timeout", "10000"),
            ("synchronous_commit", "off"),
        ]);
    on_database(PgConnection::connect_with(&options)).await
}

async fn try_lock(connection: &mut PgConnection) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
        .bind(LOCK_KEYS.0)
        .bind(LOCK_KEYS.1)
        .fetch_one(connection)
        .await
}

/// Runs a call on the relay's connection within `DATABASE_DEADLINE`.
async fn on_database<T>(call: impl Future<Output = sqlx::Result<T>>) -> Result<T, String> {
    match tokio::time::timeout(DATABASE_DEADLINE, call).await {
        Ok(result) => result.map_err(|error| error.to_string()),
        Err(_) => Err(format!("no answer within {DATABASE_DEADLINE:?}")),
    }
}

/// Connects to RabbitMQ and publishes, reconnecting as often as it takes;
/// returns when the database is lost or on `stop`.
async fn relay_while_leading(
    lock: &mut PgConnection,
    broker: &mut Reconnector,
    topology: &Topology,
    stop: &CancellationToken,
) -> Ended {
    loop {
        let Some(connection) = broker.connect(stop).await else {
            return Ended::Stop;
        };
        let lost = match open_channel(&connection, topology).await {
            Ok(channel) => {
                let lost = publish_until_lost(lock, &channel, topology, stop).await;
                let _ = channel.close(200, "change relay stopping".into()).await;
                lost
            }
            Err(error) => Lost::Broker(error.to_string()),
        };
        let _ = connection.close(200, "change relay stopping".into()).await;
        match lost {
            Lost::Broker(error) => broker.after_failure(&error, stop).await,
            Lost::Stop => return Ended::Stop,
            Lost::Database(error) => return Ended::Database(error),
        }
    }
}

async fn open_channel(connection: &Connection, topology: &Topology) -> lapin::Result<Channel> {
    let channel = connection.create_channel().await?;
    topology.declare_changes_exchange(&channel).await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}

/// Rounds of read, publish, confirm, delete, until something is lost.
async fn publish_until_lost(
    lock: &mut PgConnection,
    channel: &Channel,
    topology: &Topology,
    stop: &CancellationToken,
) -> Lost {
    let exchange = topology.changes_exchange();
    // After a round RabbitMQ refused whole (every publish nacked: a full
    // queue that rejects publishes, say), the next waits a growing pause.
    let mut refused = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        if stop.is_cancelled() {
            return Lost::Stop;
        }
        // Registered before the read, so a commit during it is not missed.
        let recorded = super::next_recorded();
        let round = match on_database(outbox::next_round(lock, ROUND)).await {
            Ok(rows) => rows,
            Err(error) => return Lost::Database(error),
        };
        if round.is_empty() {
            tokio::select! {
                () = recorded => {}
                () = tokio::time::sleep(IDLE_LOOK) => {}
                () = stop.cancelled() => return Lost::Stop,
            }
            continue;
        }
        metrics::histogram!(CHANGE_ROUND_SIZE.name).record(round.len() as f64);
        let (published, broker_lost) = publish_round(channel, &exchange, &round).await;
        if !published.is_empty() {
            if let Err(error) = on_database(outbox::remove(lock, &published)).await {
                return Lost::Database(error);
            }
        }
        if let Some(error) = broker_lost {
            return Lost::Broker(error);
        }
        if published.is_empty() {
            tokio::select! {
                () = tokio::time::sleep(refused.next_delay()) => {}
                () = stop.cancelled() => return Lost::Stop,
            }
        } else {
            refused.reset();
        }
    }
}

/// Publishes `round` and waits for the confirms: the ids RabbitMQ
/// confirmed, and the error that lost the channel, if one did.
async fn publish_round(
    channel: &Channel,
    exchange: &str,
    round: &[OutboxRow],
) -> (Vec<i64>, Option<String>) {
    // Every publish of the round handed to lapin at once: awaited one by
    // one, each would wait for lapin's I/O thread to write it (two thread
    // switches a change). Their order within the round does not matter:
    // a round holds at most one change per message.
    let bodies: Vec<(String, Vec<u8>, lapin::BasicProperties)> = round
        .iter()
        .map(|row| {
            let span = publish_span(row, exchange);
            (
                row.routing_key(),
                row.body().to_json(),
                row.properties(trace_headers(&span)),
            )
        })
        .collect();
    let published = join_all(bodies.into_iter().map(
        |(routing_key, body, properties)| async move {
            channel
                .basic_publish(
                    exchange.into(),
                    routing_key.as_str().into(),
                    BasicPublishOptions::default(),
                    &body,
                    properties,
                )
                .await
        },
    ))
    .await;
    let mut in_flight = Vec::with_capacity(round.len());
    let mut lost = None;
    for (row, published) in round.iter().zip(published) {
        match published {
            Ok(confirm) => in_flight.push((row, confirm)),
            Err(error) => {
                failed("broker");
                lost.get_or_insert_with(|| error.to_string());
            }
        }
    }
    let deadline = Instant::now() + CONFIRM_DEADLINE;
    let mut confirmed = Vec::with_capacity(in_flight.len());
    for (row, confirm) in in_flight {
        match tokio::time::timeout_at(deadline, confirm).await {
            Ok(Ok(Confirmation::Ack(_))) => {
                confirmed.push(row.id);
                metrics::counter!(CHANGES_PUBLISHED.name, "status" => row.status_label())
                    .increment(1);
                let lag = chrono::Utc::now().signed_duration_since(row.recorded_at);
                metrics::histogram!(CHANGE_PUBLISH_LAG.name)
                    .record(lag.to_std().unwrap_or_default().as_secs_f64());
            }
            // Refused: it stays, and goes again next round, first of its message.
            Ok(Ok(Confirmation::Nack(_))) => failed("nack"),
            Ok(Ok(Confirmation::NotRequested)) => {
                failed("broker");
                lost.get_or_insert_with(|| "the channel is not in confirm mode".into());
            }
            Ok(Err(error)) => {
                failed("broker");
                lost.get_or_insert_with(|| error.to_string());
            }
            Err(_) => {
                failed("timeout");
                lost.get_or_insert_with(|| {
                    format!("no publisher confirm within {CONFIRM_DEADLINE:?} (broker blocked?)")
                });
            }
        }
    }
    (confirmed, lost)
}

fn failed(reason: &'static str) {
    metrics::counter!(CHANGE_PUBLISH_FAILURES.name, "reason" => reason).increment(1);
}

/// The producer span of one change, in the trace of the callback that
/// caused it.
fn publish_span(row: &OutboxRow, exchange: &str) -> tracing::Span {
    let span = tracing::info_span!(
        parent: None,
        "twilio.status.changes publish",
        otel.kind = "producer",
        messaging.system = "rabbitmq",
        messaging.operation.type = "publish",
        messaging.destination.name = %exchange,
        messaging.message.id = %row.change_id,
        twilio.message_sid = %row.message_sid,
        twilio.message_status = %row.status,
        change.sequence = row.sequence,
    );
    if let Some(traceparent) = &row.traceparent {
        let _ = span.set_parent(parent_from_headers(|name| {
            (name == "traceparent").then(|| traceparent.clone())
        }));
    }
    span
}
