//! Publishing accepted callbacks to RabbitMQ with publisher confirms.
//!
//! One connection and one confirm-mode channel, shared by every request: a
//! lapin channel pipelines publishes and streams their confirms back, so many
//! requests wait on their own confirm at once with no lock around
//! publish-and-wait. A supervisor task owns the connection: it connects (and
//! keeps retrying while the broker is away, logging why), declares the
//! topology, watches for flow control, and rebuilds everything when the
//! connection is lost.

use lapin::options::ConfirmSelectOptions;
use lapin::types::ShortString;
use lapin::{Channel, Connection};
use queue_wire::envelope::CallbackEnvelope;
use queue_wire::topology::Topology;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

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
struct Link {
    connection: Arc<Connection>,
    channel: Channel,
}

impl Link {
    /// Connected, and not blocked by the broker's flow control.
    fn is_ready(&self) -> bool {
        let connection = self.connection.status();
        connection.connected() && !connection.blocked() && self.channel.status().connected()
    }

    /// Broken beyond lapin's own recovery: the connection is closed or in
    /// error, or the channel is gone while the connection is fine.
    fn is_dead(&self) -> bool {
        let connection = self.connection.status();
        let channel = self.channel.status();
        connection.errored()
            || connection.closed()
            || (connection.connected()
                && !channel.connected()
                && !channel.reconnecting()
                && !channel.initializing())
    }
}

struct Inner {
    link: RwLock<Option<Link>>,
    exchange: ShortString,
    routing_key: ShortString,
    confirm_timeout: Duration,
    stopping: AtomicBool,
    stop: Notify,
    supervisor: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

#[derive(Clone)]
pub struct CallbackPublisher {
    inner: Arc<Inner>,
}

/// How often the supervisor looks at the connection's state.
const WATCH_INTERVAL: Duration = Duration::from_millis(200);
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(5);

impl CallbackPublisher {
    /// A publisher with no connection yet: publishing fails fast with
    /// `NotConnected` until `start` has brought the first connection up.
    pub fn new(topology: &Topology, confirm_timeout: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                link: RwLock::new(None),
                exchange: topology.exchange().into(),
                routing_key: topology.routing_key().into(),
                confirm_timeout,
                stopping: AtomicBool::new(false),
                stop: Notify::new(),
                supervisor: std::sync::Mutex::new(None),
            }),
        }
    }

    /// Starts the supervisor that connects (and reconnects) to RabbitMQ.
    pub fn start(&self, amqp_url: String, topology: Topology) {
        let supervisor = tokio::spawn(supervise(self.clone(), amqp_url, topology));
        *self
            .inner
            .supervisor
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(supervisor);
    }

    /// Whether a publish issued now can be confirmed.
    pub fn is_ready(&self) -> bool {
        self.current().is_some_and(|link| link.is_ready())
    }

    /// Publishes one envelope as a persistent, mandatory message and waits for
    /// the broker to confirm it. `Ok` means RabbitMQ has taken responsibility.
    /// One deadline covers the publish and its confirm together (a blocked
    /// broker can stall either), and a connection the broker is blocking is
    /// refused at once: every request gets its answer in time.
    /// Returns the time spent publishing and waiting for the confirm.
    pub async fn publish(
        &self,
        envelope: &CallbackEnvelope,
        extra_headers: Vec<(String, String)>,
    ) -> Result<Duration, PublishError> {
        let link = self.current().ok_or(PublishError::NotConnected)?;
        if link.connection.status().blocked() {
            return Err(PublishError::Blocked);
        }
        let started = Instant::now();
        queue_wire::broker::publish_confirmed(
            &link.channel,
            self.inner.exchange.as_str(),
            self.inner.routing_key.as_str(),
            &envelope.body,
            envelope.to_properties(extra_headers),
            self.inner.confirm_timeout,
        )
        .await?;
        Ok(started.elapsed())
    }

    /// Closes the connection after in-flight publishes were answered.
    pub async fn shutdown(&self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        self.inner.stop.notify_waiters();
        // Let the supervisor drop any connection attempt in progress before
        // the runtime goes away under it.
        let supervisor = self
            .inner
            .supervisor
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(supervisor) = supervisor {
            if tokio::time::timeout(Duration::from_secs(5), supervisor)
                .await
                .is_err()
            {
                tracing::debug!("the RabbitMQ supervisor did not stop in time");
            }
        }
        if let Some(link) = self.take() {
            if let Err(error) = link
                .connection
                .close(200, "ingest shutting down".into())
                .await
            {
                tracing::debug!(%error, "closing the RabbitMQ connection");
            }
        }
    }

    fn current(&self) -> Option<Link> {
        self.inner
            .link
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn replace(&self, link: Option<Link>) {
        *self
            .inner
            .link
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = link;
    }

    fn take(&self) -> Option<Link> {
        self.inner
            .link
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }

    fn stopping(&self) -> bool {
        self.inner.stopping.load(Ordering::SeqCst)
    }
}

async fn open_link(amqp_url: &str, topology: &Topology) -> lapin::Result<Link> {
    let connection =
        queue_wire::broker::connect(amqp_url, &format!("ingest {}", topology.prefix())).await?;
    topology.declare(&connection).await?;
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(Link {
        connection: Arc::new(connection),
        channel,
    })
}

/// How long one connection attempt may take before it counts as failed (a
/// broker that accepts TCP but never answers would otherwise hang it).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the last attempt failed, to log a change of reason once and a
/// continuing outage at a bounded rate.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ConnectFailure {
    Unreachable,
    LoginRefused,
}

fn classify_connect_error(error: &lapin::Error) -> ConnectFailure {
    let text = error.to_string();
    if text.contains("ACCESS_REFUSED") || text.contains("ACCESS-REFUSED") || text.contains("403") {
        ConnectFailure::LoginRefused
    } else {
        ConnectFailure::Unreachable
    }
}

/// An outage is logged at WARN at most this often.
const UNREACHABLE_LOG_INTERVAL: Duration = Duration::from_secs(5);

async fn supervise(publisher: CallbackPublisher, amqp_url: String, topology: Topology) {
    let mut delay = Duration::from_millis(100);
    let mut last_failure: Option<(ConnectFailure, Instant)> = None;
    let mut in_flight: Option<tokio::task::JoinHandle<lapin::Result<Link>>> = None;
    while !publisher.stopping() {
        // The attempt runs as a task of its own and is never dropped half-way:
        // lapin's I/O thread panics when a connect it is driving is cancelled.
        // A slow attempt is left to finish while the outage is reported.
        let handle = in_flight.get_or_insert_with(|| {
            let (url, topology) = (amqp_url.clone(), topology.clone());
            tokio::spawn(async move { open_link(&url, &topology).await })
        });
        let attempt = tokio::select! {
            joined = handle => {
                in_flight = None;
                match joined {
                    Ok(result) => Ok(result),
                    Err(error) => Ok(Err(lapin::Error::from(std::io::Error::other(error.to_string())))),
                }
            }
            () = tokio::time::sleep(CONNECT_TIMEOUT) => Err(()),
            () = publisher.inner.stop.notified() => break,
        };
        match attempt {
            Ok(Ok(link)) if publisher.stopping() => {
                let _ = link
                    .connection
                    .close(200, "ingest shutting down".into())
                    .await;
                return;
            }
            Ok(Ok(link)) => {
                tracing::info!(exchange = %topology.exchange(), "connected to RabbitMQ");
                last_failure = None;
                delay = Duration::from_millis(100);
                publisher.replace(Some(link.clone()));
                watch_link(&publisher, &link).await;
                if publisher.stopping() {
                    return;
                }
                tracing::warn!("RabbitMQ connection lost beyond recovery; reconnecting");
                publisher.replace(None);
                // Best effort: the old connection may already be gone.
                let _ = link.connection.close(200, "reconnecting".into()).await;
            }
            Ok(Err(error)) => {
                let failure = classify_connect_error(&error);
                let changed = last_failure.is_none_or(|(previous, _)| previous != failure);
                let due =
                    last_failure.is_none_or(|(_, at)| at.elapsed() >= UNREACHABLE_LOG_INTERVAL);
                match failure {
                    ConnectFailure::LoginRefused if changed => tracing::error!(
                        %error,
                        "RabbitMQ refused the login: check the user and password in AMQP_URL; \
                         not ready until it accepts"
                    ),
                    ConnectFailure::Unreachable if changed || due => tracing::warn!(
                        %error,
                        retry_in_ms = delay.as_millis() as u64,
                        "cannot reach RabbitMQ; not ready, callbacks get 503"
                    ),
                    _ => {}
                }
                if changed || due {
                    last_failure = Some((failure, Instant::now()));
                }
            }
            Err(_) => {
                let due =
                    last_failure.is_none_or(|(_, at)| at.elapsed() >= UNREACHABLE_LOG_INTERVAL);
                if due {
                    tracing::warn!(
                        timeout_ms = CONNECT_TIMEOUT.as_millis() as u64,
                        "cannot reach RabbitMQ: no answer in time; not ready, callbacks get 503"
                    );
                    last_failure = Some((ConnectFailure::Unreachable, Instant::now()));
                }
            }
        }
        if in_flight.is_none() {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = publisher.inner.stop.notified() => {}
            }
            delay = (delay * 2).min(MAX_RECONNECT_DELAY);
        }
    }
    // Stopping: let an attempt in progress end by itself, and close what it opened.
    if let Some(attempt) = in_flight {
        if let Ok(Ok(Ok(link))) = tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
            let _ = link
                .connection
                .close(200, "ingest shutting down".into())
                .await;
        }
    }
}

/// Watches a live link until it is dead or ingest stops; logs flow control.
async fn watch_link(publisher: &CallbackPublisher, link: &Link) {
    let mut blocked = false;
    while !publisher.stopping() && !link.is_dead() {
        let now_blocked = link.connection.status().blocked();
        if now_blocked != blocked {
            blocked = now_blocked;
            metrics::gauge!("ingest_broker_blocked").set(if blocked { 1.0 } else { 0.0 });
            if blocked {
                tracing::warn!("RabbitMQ is blocking publishers (memory or disk alarm); not ready, callbacks get 503");
            } else {
                tracing::info!("RabbitMQ unblocked publishers; ready");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(WATCH_INTERVAL) => {}
            () = publisher.inner.stop.notified() => {}
        }
    }
}
