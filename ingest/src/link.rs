//! The connection to RabbitMQ that the publisher and the spool's drainer
//! share, and the supervisor that keeps it: it connects (through the shared
//! `Reconnector`), declares the topology, opens the confirm channel,
//! watches for flow control, and starts over when the connection is lost.

use lapin::options::ConfirmSelectOptions;
use lapin::{Channel, Connection};
use queue_wire::reconnect::Reconnector;
use queue_wire::topology::Topology;
use service_kit::sync::{lock, read, write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use crate::metrics::BROKER_BLOCKED;

/// While the broker does not confirm in time, one batch a second tries it.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// How often the supervisor looks at the connection's state.
const WATCH_INTERVAL: Duration = Duration::from_millis(200);

/// Where batches are published.
pub(crate) struct Destination {
    pub exchange: String,
    pub routing_key: String,
}

/// Why no link can take a publish now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LinkError {
    #[error("not connected to RabbitMQ")]
    NotConnected,
    #[error("RabbitMQ is blocking publishers (flow control: memory or disk alarm)")]
    Blocked,
}

/// A live connection and its confirm-mode channel.
#[derive(Clone)]
pub(crate) struct Link {
    connection: Arc<Connection>,
    channel: Channel,
}

impl Link {
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    pub fn is_blocked(&self) -> bool {
        self.connection.status().blocked()
    }

    /// Connected, and not blocked by the broker's flow control.
    pub fn is_ready(&self) -> bool {
        let connection = self.connection.status();
        connection.connected() && !connection.blocked() && self.channel.status().connected()
    }

    /// Broken: the connection is closed or in error, or the channel is gone
    /// while the connection is fine.
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

    async fn open(connection: Connection, topology: &Topology) -> lapin::Result<Self> {
        topology.declare(&connection).await?;
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Self {
            connection: Arc::new(connection),
            channel,
        })
    }

    async fn close(&self, reason: &str) {
        // Best effort: the connection may already be gone.
        if let Err(error) = self.connection.close(200, reason.into()).await {
            tracing::debug!(%error, "closing the RabbitMQ connection");
        }
    }
}

pub(crate) struct LinkSupervisor {
    amqp_url: String,
    /// Set when a confirm did not come in time on the current link, until a
    /// confirm does (or a new link replaces it): see `unresponsive`.
    unresponsive_since: Mutex<Option<Instant>>,
    last_probe: Mutex<Option<Instant>>,
    /// Set when RabbitMQ nacked a publish: the watcher then replaces the
    /// link (a quorum queue's client state on a channel can keep nacking
    /// after its leader was lost; a new connection, to the next node, does
    /// not).
    replace_requested: AtomicBool,
    /// What callbacks meet while RabbitMQ is away, for the log lines.
    consequence: &'static str,
    topology: Topology,
    current: RwLock<Option<Link>>,
    stop: CancellationToken,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl LinkSupervisor {
    pub fn new(amqp_url: String, topology: Topology, consequence: &'static str) -> Self {
        Self {
            amqp_url,
            unresponsive_since: Mutex::new(None),
            last_probe: Mutex::new(None),
            replace_requested: AtomicBool::new(false),
            consequence,
            topology,
            current: RwLock::new(None),
            stop: CancellationToken::new(),
            task: Mutex::new(None),
        }
    }

    pub fn start(self: &Arc<Self>) {
        let task = tokio::spawn(self.clone().supervise());
        *lock(&self.task) = Some(task);
    }

    fn current(&self) -> Option<Link> {
        read(&self.current).clone()
    }

    /// Whether RabbitMQ could confirm a publish issued now.
    pub fn is_ready(&self) -> bool {
        self.current().is_some_and(|link| link.is_ready())
    }

    /// The current link if a publish could go on it now: connected, and not
    /// blocked by the broker's flow control.
    pub fn usable(&self) -> Result<Link, LinkError> {
        let link = self.current().ok_or(LinkError::NotConnected)?;
        if link.is_blocked() {
            return Err(LinkError::Blocked);
        }
        Ok(link)
    }

    /// A confirm did not come in time: until one does, batches go to the
    /// spool at once instead of each waiting out the deadline, but for one
    /// probe batch a second.
    pub fn mark_unresponsive(&self) {
        let mut since = lock(&self.unresponsive_since);
        if since.is_none() {
            tracing::warn!("RabbitMQ stopped confirming in time; {}", self.consequence);
            *since = Some(Instant::now());
        }
    }

    /// A confirm came: the link serves again.
    pub fn mark_responsive(&self) {
        if lock(&self.unresponsive_since).take().is_some() {
            tracing::info!("RabbitMQ confirms in time again");
        }
    }

    /// Whether a batch should skip the broker: it is unresponsive and this
    /// is not the second's probe.
    pub fn skip_broker(&self) -> bool {
        if lock(&self.unresponsive_since).is_none() {
            return false;
        }
        let mut last_probe = lock(&self.last_probe);
        if last_probe.is_some_and(|at| at.elapsed() < PROBE_INTERVAL) {
            return true;
        }
        *last_probe = Some(Instant::now());
        false
    }

    /// RabbitMQ nacked a publish on the current link: it is replaced.
    pub fn nacked(&self) {
        self.replace_requested.store(true, Ordering::SeqCst);
    }

    fn replace(&self, link: Option<Link>) -> Option<Link> {
        // A new connection starts with a clean slate.
        *lock(&self.unresponsive_since) = None;
        std::mem::replace(&mut *write(&self.current), link)
    }

    /// Stops the supervisor (letting a connect in progress end by itself)
    /// and closes the connection.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        let task = lock(&self.task).take();
        if let Some(task) = task {
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                tracing::debug!("the RabbitMQ supervisor did not stop in time");
            }
        }
        if let Some(link) = self.replace(None) {
            link.close("ingest shutting down").await;
        }
    }

    async fn supervise(self: Arc<Self>) {
        let mut reconnector = Reconnector::new(
            &self.amqp_url,
            format!("ingest {}", self.topology.prefix()),
            self.consequence,
        );
        while let Some(connection) = reconnector.connect(&self.stop).await {
            let link = match Link::open(connection, &self.topology).await {
                Ok(link) => link,
                Err(error) => {
                    reconnector.after_failure(&error, &self.stop).await;
                    continue;
                }
            };
            if self.stop.is_cancelled() {
                link.close("ingest shutting down").await;
                return;
            }
            self.replace(Some(link.clone()));
            // Logged once publishes can use the link (a test waits for it).
            tracing::info!(
                node = reconnector.node().unwrap_or_default(),
                exchange = %self.topology.exchange(),
                "connected to RabbitMQ"
            );
            self.watch(&link).await;
            if self.stop.is_cancelled() {
                return;
            }
            let nacked = self.replace_requested.swap(false, Ordering::SeqCst);
            self.replace(None);
            link.close("reconnecting").await;
            let reason = if nacked {
                "RabbitMQ nacked a publish on this connection"
            } else {
                "the RabbitMQ connection was lost"
            };
            // Logs it with the node, and starts the next connection with
            // the next node after a short backoff.
            reconnector.after_failure(&reason, &self.stop).await;
        }
    }

    /// Watches a live link until it dies or ingest stops; reports flow control.
    async fn watch(&self, link: &Link) {
        let mut blocked = false;
        while !self.stop.is_cancelled()
            && !link.is_dead()
            && !self.replace_requested.load(Ordering::SeqCst)
        {
            let now_blocked = link.is_blocked();
            if now_blocked != blocked {
                blocked = now_blocked;
                metrics::gauge!(BROKER_BLOCKED.name).set(if blocked { 1.0 } else { 0.0 });
                if blocked {
                    tracing::warn!(
                        "RabbitMQ is blocking publishers (memory or disk alarm); {}",
                        self.consequence
                    );
                } else {
                    tracing::info!("RabbitMQ unblocked publishers; ready");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(WATCH_INTERVAL) => {}
                () = self.stop.cancelled() => {}
            }
        }
        if blocked {
            metrics::gauge!(BROKER_BLOCKED.name).set(0.0);
        }
    }
}
