//! A RabbitMQ topology of its own for each test, and what tests do with
//! it: publish as ingest does, count, take, wait until drained.

use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicGetOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use queue_wire::envelope::CallbackEnvelope;
use queue_wire::topology::Topology;
use std::time::Duration;
use twilio_protocol::form::FormParams;

use crate::callbacks::callback_envelope;
use crate::cleanup::run_to_completion;
use crate::services::{amqp_url, unique_name};
use crate::wait::wait_for;

/// A topology of its own on the real broker, deleted on drop.
pub struct TestBroker {
    pub topology: Topology,
    pub connection: Connection,
    pub channel: Channel,
    /// In confirm mode, for publishing like ingest does.
    pub publisher: Channel,
    /// The broker's `AMQP_URL` (one node, or several).
    pub url: String,
}

/// Short retry delays so retry paths finish quickly in tests.
pub fn test_retry_delays() -> Vec<Duration> {
    vec![Duration::from_millis(200), Duration::from_millis(400)]
}

impl TestBroker {
    pub async fn new() -> Self {
        Self::on(&amqp_url()).await
    }

    /// The same on another broker (a test cluster: any of its nodes).
    pub async fn on(amqp_url: &str) -> Self {
        let prefix = unique_name("test").replace('_', ".");
        let topology = Topology::new(prefix).with_retry_delays(test_retry_delays());
        let connection = queue_wire::broker::connect_any(amqp_url, "testkit")
            .await
            .expect("RabbitMQ must run on 127.0.0.1:5672 for these tests");
        topology.declare(&connection).await.unwrap();
        let (channel, publisher) = open_channels(&connection).await;
        Self {
            topology,
            connection,
            channel,
            publisher,
            url: amqp_url.to_owned(),
        }
    }

    /// Opens fresh channels after the broker dropped ours (a restart test).
    pub async fn reconnect(&mut self) {
        let connection = queue_wire::broker::connect_any(&self.url, "testkit")
            .await
            .unwrap();
        (self.channel, self.publisher) = open_channels(&connection).await;
        self.connection = connection;
    }

    /// Publishes a raw message to the main exchange, as ingest does, and
    /// waits for the broker's confirm.
    pub async fn publish(&self, properties: BasicProperties, body: &[u8]) {
        queue_wire::broker::publish_confirmed(
            &self.publisher,
            &self.topology.exchange(),
            self.topology.routing_key(),
            body,
            properties,
            Duration::from_secs(30),
        )
        .await
        .expect("the broker confirms a test publish");
    }

    /// Publishes a form callback as ingest would have, received at `received_at`.
    pub async fn publish_callback(
        &self,
        params: &FormParams,
        received_at: chrono::DateTime<chrono::Utc>,
    ) {
        let envelope = callback_envelope(params, received_at);
        self.publish(envelope.to_properties(), &envelope.body).await;
    }

    /// Publishes form callbacks as one batch message, as ingest's group
    /// commit does; each `(params, received_at)` becomes one entry.
    pub async fn publish_batch(&self, callbacks: &[(FormParams, chrono::DateTime<chrono::Utc>)]) {
        let envelopes: Vec<CallbackEnvelope> = callbacks
            .iter()
            .map(|(params, received_at)| callback_envelope(params, *received_at))
            .collect();
        let (body, properties) = queue_wire::batch::encode_batch(&envelopes);
        self.publish(properties, &body).await;
    }

    /// Messages ready in `queue` (not counting unacknowledged ones).
    pub async fn ready_count(&self, queue: &str) -> u32 {
        queue_wire::topology::ready_messages(&self.channel, queue)
            .await
            .unwrap()
    }

    /// Waits until the main and retry queues have no message ready.
    /// Messages delivered but not yet acknowledged are not seen: a passive
    /// declare counts ready ones only, and the broker's unacknowledged
    /// counts (`rabbitmqctl`) lag by its statistics interval, 5 s.
    pub async fn wait_until_none_ready(&self) {
        let mut queues = vec![self.topology.main_queue()];
        queues.extend(self.topology.retry_queues());
        wait_for("no message ready", Duration::from_secs(60), || async {
            for queue in &queues {
                if self.ready_count(queue).await > 0 {
                    return None;
                }
            }
            Some(())
        })
        .await;
    }

    /// Takes (and acknowledges) every message in `queue`.
    pub async fn take_all(&self, queue: &str) -> Vec<(BasicProperties, Vec<u8>)> {
        get_all(&self.channel, queue)
            .await
            .into_iter()
            .map(|delivery| (delivery.properties, delivery.data))
            .collect()
    }
}

/// Takes (and acknowledges) every message ready in `queue` on `channel`.
pub(crate) async fn get_all(channel: &Channel, queue: &str) -> Vec<Delivery> {
    let mut taken = Vec::new();
    while let Some(message) = channel
        .basic_get(queue.into(), BasicGetOptions::default())
        .await
        .unwrap()
    {
        let delivery = message.delivery;
        delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .unwrap();
        taken.push(delivery);
    }
    taken
}

/// A plain channel and a publisher in confirm mode.
async fn open_channels(connection: &Connection) -> (Channel, Channel) {
    let channel = connection.create_channel().await.unwrap();
    let publisher = connection.create_channel().await.unwrap();
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    (channel, publisher)
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        delete_topology(self.topology.clone());
        // A binary started on the same prefix declares the default retry queues too.
        delete_topology(Topology::new(self.topology.prefix()));
    }
}

/// Deletes a topology's queues and exchange from synchronous code (a `Drop`,
/// or a test that started a binary which declared it).
pub fn delete_topology(topology: Topology) {
    run_to_completion(move || async move {
        if let Ok(connection) =
            Connection::connect(&amqp_url(), ConnectionProperties::default()).await
        {
            if let Ok(channel) = connection.create_channel().await {
                let _ = topology.delete(&channel).await;
            }
            let _ = connection.close(200, "test cleanup".into()).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::callbacks::{message_sid, status_params};

    #[tokio::test]
    async fn none_ready_once_every_message_is_taken() {
        let broker = TestBroker::new().await;
        let queue = broker.topology.main_queue();
        let params = status_params(&message_sid(1), "sent", None);
        broker.publish_callback(&params, chrono::Utc::now()).await;
        assert_eq!(broker.ready_count(&queue).await, 1);
        let waiting = broker.wait_until_none_ready();
        let taking = async {
            assert_eq!(broker.take_all(&queue).await.len(), 1);
        };
        tokio::join!(waiting, taking);
        assert_eq!(broker.ready_count(&queue).await, 0);
    }
}
