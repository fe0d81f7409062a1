//! The RabbitMQ topology both services rely on, declared idempotently by
//! either of them at start so they can start in any order.
//!
//! ```text
//! ingest ──publish──▶ exchange <prefix> ──"callback"──▶ queue <prefix>.events (quorum)
//!                        ▲                                   │ worker
//!                        └── TTL expiry ── <prefix>.retry.<ms>ms ◀── transient failure
//!                                          <prefix>.dead (quorum) ◀── poison / attempts exhausted
//! ```

use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};
use std::time::Duration;

pub const DEFAULT_PREFIX: &str = "twilio.status";
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
    pub async fn declare(&self, channel: &Channel) -> lapin::Result<()> {
        let durable = QueueDeclareOptions::durable();
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
        channel
            .queue_declare(self.dead_letter_queue().into(), durable, dead_args)
            .await?;

        let mut main_args = FieldTable::default();
        main_args.insert("x-queue-type".into(), text("quorum"));
        main_args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(DELIVERY_LIMIT),
        );
        main_args.insert("x-dead-letter-exchange".into(), text(""));
        main_args.insert(
            "x-dead-letter-routing-key".into(),
            text(&self.dead_letter_queue()),
        );
        channel
            .queue_declare(self.main_queue().into(), durable, main_args)
            .await?;
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
            // Classic durable queues: every message in one has the same TTL,
            // so expiry at the head is in order; expired messages return to
            // the exchange and from there to the main queue.
            let mut retry_args = FieldTable::default();
            retry_args.insert(
                "x-message-ttl".into(),
                AMQPValue::LongLongInt(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)),
            );
            retry_args.insert("x-dead-letter-exchange".into(), text(&self.exchange()));
            retry_args.insert("x-dead-letter-routing-key".into(), text(ROUTING_KEY));
            channel
                .queue_declare(self.retry_queue(*delay).into(), durable, retry_args)
                .await?;
        }
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
