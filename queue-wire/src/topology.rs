//! The RabbitMQ topology both services rely on, declared idempotently by
//! either of them at start so they can start in any order.
//!
//! ```text
//! ingest ──publish──▶ exchange <prefix> ──"callback"──▶ queue <prefix>.events (quorum)
//!                        ▲                                   │ worker
//!                        └── TTL expiry ── <prefix>.retry.<ms>ms (quorum) ◀── transient failure
//!                                          <prefix>.dead (quorum) ◀── poison / attempts exhausted
//!
//! worker relay ──publish──▶ exchange <prefix>.changes (topic, "message.<status>") ──▶ consumers' own queues
//! ```
//!
//! Every queue is a quorum queue, so each survives the loss of a node in a
//! cluster, and the broker's own dead-lettering (retry expiry, the delivery
//! limit) is at-least-once: a message is removed from its queue only once
//! the target confirmed it. A queue already declared by an earlier version
//! with other arguments is used as it is, with a warning: see the README's
//! "Upgrading" section.

use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, Connection, ExchangeKind};
use std::time::Duration;

pub const DEFAULT_PREFIX: &str = service_kit::cli::DEFAULT_TOPOLOGY_PREFIX;
const ROUTING_KEY: &str = "callback";
/// Broker-side safety net: a message redelivered this often (a worker that
/// crashes on it, say) is dead-lettered instead of looping forever.
const DELIVERY_LIMIT: i64 = 50;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    prefix: String,
    retry_delays: Vec<Duration>,
}

impl Default for Topology {
    fn default() -> Self {
        Self::new(DEFAULT_PREFIX)
    }
}

impl Topology {
    /// The default retry delays: 1 s, 5 s, 30 s, 2 min.
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            retry_delays: [1, 5, 30, 120].map(Duration::from_secs).to_vec(),
        }
    }

    /// Same names with other retry delays (tests use short ones).
    pub fn with_retry_delays(mut self, delays: Vec<Duration>) -> Self {
        self.retry_delays = delays;
        self
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn exchange(&self) -> String {
        self.prefix.clone()
    }

    pub fn routing_key(&self) -> &'static str {
        ROUTING_KEY
    }

    /// The change feed's topic exchange (`<prefix>.changes`): the worker
    /// publishes each change of a message's status there with routing key
    /// `message.<status>`; consumers bind queues of their own.
    pub fn changes_exchange(&self) -> String {
        format!("{}.changes", self.prefix)
    }

    /// Declares the change feed's exchange (durable, topic): the worker
    /// does at start when the feed is on, and before it publishes.
    pub async fn declare_changes_exchange(&self, channel: &Channel) -> lapin::Result<()> {
        channel
            .exchange_declare(
                self.changes_exchange().into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
    }

    pub fn main_queue(&self) -> String {
        format!("{}.events", self.prefix)
    }

    pub fn dead_letter_queue(&self) -> String {
        format!("{}.dead", self.prefix)
    }

    pub fn retry_delays(&self) -> &[Duration] {
        &self.retry_delays
    }

    /// The queue that holds a callback for `delay` before it goes back to the
    /// main queue. Its name carries the delay so different settings never clash.
    pub fn retry_queue(&self, delay: Duration) -> String {
        format!("{}.retry.{}ms", self.prefix, delay.as_millis())
    }

    pub fn retry_queues(&self) -> Vec<String> {
        self.retry_delays
            .iter()
            .map(|d| self.retry_queue(*d))
            .collect()
    }

    /// Declares everything; safe to call any number of times from any service.
    pub async fn declare(&self, connection: &Connection) -> lapin::Result<()> {
        let mut channel = connection.create_channel().await?;
        channel
            .exchange_declare(
                self.exchange().into(),
                ExchangeKind::Direct,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;

        let mut dead_args = FieldTable::default();
        dead_args.insert("x-queue-type".into(), text("quorum"));
        declare_queue(
            connection,
            &mut channel,
            &self.dead_letter_queue(),
            dead_args,
        )
        .await?;

        let mut main_args = at_least_once_quorum();
        main_args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(DELIVERY_LIMIT),
        );
        main_args.insert("x-dead-letter-exchange".into(), text(""));
        main_args.insert(
            "x-dead-letter-routing-key".into(),
            text(&self.dead_letter_queue()),
        );
        declare_queue(connection, &mut channel, &self.main_queue(), main_args).await?;
        channel
            .queue_bind(
                self.main_queue().into(),
                self.exchange().into(),
                ROUTING_KEY.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;

        for delay in &self.retry_delays {
            // Every message in one retry queue has the same TTL, so expiry at
            // the head is in order; expired messages return to the exchange
            // and from there to the main queue.
            let mut retry_args = at_least_once_quorum();
            retry_args.insert(
                "x-message-ttl".into(),
                AMQPValue::LongLongInt(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)),
            );
            retry_args.insert("x-dead-letter-exchange".into(), text(&self.exchange()));
            retry_args.insert("x-dead-letter-routing-key".into(), text(ROUTING_KEY));
            declare_queue(
                connection,
                &mut channel,
                &self.retry_queue(*delay),
                retry_args,
            )
            .await?;
        }
        let _ = channel.close(200, "topology declared".into()).await;
        Ok(())
    }

    /// Removes everything `declare` made (tests clean up with this).
    pub async fn delete(&self, channel: &Channel) -> lapin::Result<()> {
        let mut queues = vec![self.main_queue(), self.dead_letter_queue()];
        queues.extend(self.retry_queues());
        for queue in queues {
            channel
                .queue_delete(ShortString::from(queue), QueueDeleteOptions::default())
                .await?;
        }
        channel
            .exchange_delete(
                self.changes_exchange().into(),
                ExchangeDeleteOptions::default(),
            )
            .await?;
        channel
            .exchange_delete(self.exchange().into(), ExchangeDeleteOptions::default())
            .await
    }
}

/// Messages ready in `queue` (a passive declare: the queue must exist).
pub async fn ready_messages(channel: &Channel, queue: &str) -> lapin::Result<u32> {
    let options = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let queue = channel
        .queue_declare(queue.into(), options, FieldTable::default())
        .await?;
    Ok(queue.message_count())
}

/// A quorum queue whose dead-lettering is at-least-once (RabbitMQ 3.10+:
/// it needs `reject-publish` overflow alongside).
fn at_least_once_quorum() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), text("quorum"));
    args.insert("x-dead-letter-strategy".into(), text("at-least-once"));
    args.insert("x-overflow".into(), text("reject-publish"));
    args
}

/// Declares a durable queue. If it already exists with other arguments (an
/// earlier version declared it), the broker refuses with PRECONDITION_FAILED
/// and closes the channel: the queue is then used as it is, on a new
/// channel, and a warning says how to bring it up to date.
async fn declare_queue(
    connection: &Connection,
    channel: &mut Channel,
    name: &str,
    args: FieldTable,
) -> lapin::Result<()> {
    let declared = channel
        .queue_declare(name.into(), QueueDeclareOptions::durable(), args)
        .await;
    match declared {
        Ok(_) => Ok(()),
        Err(error) if is_precondition_failed(&error) => {
            *channel = connection.create_channel().await?;
            let passive = QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            };
            channel
                .queue_declare(name.into(), passive, FieldTable::default())
                .await?;
            tracing::warn!(
                queue = name,
                %error,
                "queue exists with the arguments of an earlier version; using it as it is \
                 (README, Upgrading: apply the policy, or delete it once empty)"
            );
            Ok(())
        }
        Err(error) => Err(error),
    }
}

fn is_precondition_failed(error: &lapin::Error) -> bool {
    matches!(
        error.kind(),
        lapin::ErrorKind::ProtocolError(amqp)
            if matches!(amqp.kind(), AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED))
    )
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_derive_from_the_prefix() {
        let t = Topology::new("t1").with_retry_delays(vec![Duration::from_millis(200)]);
        assert_eq!(t.exchange(), "t1");
        assert_eq!(t.main_queue(), "t1.events");
        assert_eq!(t.dead_letter_queue(), "t1.dead");
        assert_eq!(t.retry_queues(), ["t1.retry.200ms"]);
    }
}
