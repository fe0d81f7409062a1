//! Publishing accepted callbacks to RabbitMQ with publisher confirms.
//!
//! One connection and one confirm-mode channel, shared by every request: a
//! lapin channel pipelines publishes and streams their confirms back, so many
//! requests wait on their own confirm at once with no lock around
//! publish-and-wait. A supervisor task owns the connection: it connects (and
//! keeps retrying while the broker is away), declares the topology, and
//! rebuilds everything if lapin's own auto-recovery gives up.

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::ShortString;
use lapin::{Channel, Confirmation, Connection};
use shared::envelope::CallbackEnvelope;
use shared::topology::Topology;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("not connected to RabbitMQ")]
    NotConnected,
    #[error("RabbitMQ error: {0}")]
    Broker(#[from] lapin::Error),
    #[error("RabbitMQ refused the message (nack)")]
    Nacked,
    #[error("RabbitMQ returned the message as unroutable")]
    Unroutable,
    #[error("no publisher confirm within {0:?}")]
    ConfirmTimeout(Duration),
    #[error("channel is not in confirm mode")]
    NotConfirmed,
}

#[derive(Clone)]
struct Link {
    connection: Arc<Connection>,
    channel: Channel,
}

impl Link {
    fn is_ready(&self) -> bool {
        self.connection.status().connected() && self.channel.status().connected()
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
}

#[derive(Clone)]
pub struct CallbackPublisher {
    inner: Arc<Inner>,
}

/// How often the supervisor looks at the connection's state.
const WATCH_INTERVAL: Duration = Duration::from_millis(200);
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(5);

impl CallbackPublisher {
    /// Starts the supervisor; publishing fails fast with `NotConnected` until
    /// the first connection is up.
    pub fn start(amqp_url: String, topology: Topology, confirm_timeout: Duration) -> Self {
        let publisher = Self {
            inner: Arc::new(Inner {
                link: RwLock::new(None),
                exchange: topology.exchange().into(),
                routing_key: topology.routing_key().into(),
                confirm_timeout,
                stopping: AtomicBool::new(false),
                stop: Notify::new(),
            }),
        };
        tokio::spawn(supervise(publisher.clone(), amqp_url, topology));
        publisher
    }

    /// Whether a publish issued now can be confirmed.
    pub fn is_ready(&self) -> bool {
        self.current().is_some_and(|link| link.is_ready())
    }

    /// Publishes one envelope as a persistent, mandatory message and waits for
    /// the broker to confirm it. `Ok` means RabbitMQ has taken responsibility.
    /// Returns the time spent waiting for the confirm.
    pub async fn publish(
        &self,
        envelope: &CallbackEnvelope,
        extra_headers: Vec<(String, String)>,
    ) -> Result<Duration, PublishError> {
        let link = self.current().ok_or(PublishError::NotConnected)?;
        let started = Instant::now();
        let confirm = link
            .channel
            .basic_publish(
                self.inner.exchange.clone(),
                self.inner.routing_key.clone(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &envelope.body,
                envelope.to_properties(extra_headers),
            )
            .await?;
        let confirmation = tokio::time::timeout(self.inner.confirm_timeout, confirm)
            .await
            .map_err(|_| PublishError::ConfirmTimeout(self.inner.confirm_timeout))??;
        match confirmation {
            Confirmation::Ack(None) => Ok(started.elapsed()),
            Confirmation::Ack(Some(_returned)) => Err(PublishError::Unroutable),
            Confirmation::Nack(_) => Err(PublishError::Nacked),
            Confirmation::NotRequested => Err(PublishError::NotConfirmed),
        }
    }

    /// Closes the connection after in-flight publishes were answered.
    pub async fn shutdown(&self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        self.inner.stop.notify_waiters();
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
    let connection = shared::broker::connect(
        amqp_url,
        &format!("ingest {}", topology.prefix()),
        shared::broker::Recovery::Automatic,
    )
    .await?;
    let channel = connection.create_channel().await?;
    topology.declare(&channel).await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(Link {
        connection: Arc::new(connection),
        channel,
    })
}

async fn supervise(publisher: CallbackPublisher, amqp_url: String, topology: Topology) {
    let mut delay = Duration::from_millis(100);
    while !publisher.stopping() {
        match open_link(&amqp_url, &topology).await {
            Ok(link) if publisher.stopping() => {
                let _ = link
                    .connection
                    .close(200, "ingest shutting down".into())
                    .await;
                return;
            }
            Ok(link) => {
                tracing::info!(exchange = %topology.exchange(), "connected to RabbitMQ");
                delay = Duration::from_millis(100);
                publisher.replace(Some(link.clone()));
                while !publisher.stopping() && !link.is_dead() {
                    tokio::select! {
                        () = tokio::time::sleep(WATCH_INTERVAL) => {}
                        () = publisher.inner.stop.notified() => {}
                    }
                }
                if publisher.stopping() {
                    return;
                }
                tracing::warn!("RabbitMQ connection lost beyond recovery; reconnecting");
                publisher.replace(None);
                // Best effort: the old connection may already be gone.
                let _ = link.connection.close(200, "reconnecting".into()).await;
            }
            Err(error) => {
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "cannot reach RabbitMQ");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = publisher.inner.stop.notified() => {}
        }
        delay = (delay * 2).min(MAX_RECONNECT_DELAY);
    }
}
