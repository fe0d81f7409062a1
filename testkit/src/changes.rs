//! The change feed as a consumer sees it: a queue of the test's own bound
//! to `<prefix>.changes`, and the checks every feed test makes of what
//! arrived (the contract's guarantee, message by message).

use lapin::options::{QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection};
use queue_wire::topology::Topology;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::broker::get_all;
use crate::cleanup::run_to_completion;
use crate::services::{amqp_url, unique_name};
use twilio_protocol::status::MessageStatus;

/// One published change, as received.
#[derive(Clone, Debug)]
pub struct ReceivedChange {
    pub routing_key: String,
    pub body: serde_json::Value,
    /// The `x-change-version` header.
    pub version: Option<i64>,
    pub traceparent: Option<String>,
}

impl ReceivedChange {
    pub fn change_id(&self) -> &str {
        self.body["change_id"].as_str().unwrap_or_default()
    }

    pub fn message_sid(&self) -> &str {
        self.body["message_sid"].as_str().unwrap_or_default()
    }

    pub fn status(&self) -> &str {
        self.body["status"].as_str().unwrap_or_default()
    }

    pub fn sequence(&self) -> i64 {
        self.body["sequence"].as_i64().unwrap_or_default()
    }
}

/// A queue bound to the change feed, deleted on drop.
pub struct ChangeListener {
    channel: Channel,
    queue: String,
    /// Everything received so far, in arrival order.
    pub received: Vec<ReceivedChange>,
}

impl ChangeListener {
    /// Binds a new queue to `topology`'s change feed with `binding_keys`
    /// (`#` for all), declaring the exchange if no worker has yet.
    pub async fn bind(connection: &Connection, topology: &Topology, binding_keys: &[&str]) -> Self {
        Self::bind_with(connection, topology, binding_keys, FieldTable::default()).await
    }

    /// The same with queue arguments (a length limit, say).
    pub async fn bind_with(
        connection: &Connection,
        topology: &Topology,
        binding_keys: &[&str],
        arguments: FieldTable,
    ) -> Self {
        let channel = connection.create_channel().await.unwrap();
        topology.declare_changes_exchange(&channel).await.unwrap();
        let queue = unique_name("changes").replace('_', ".");
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions::default(),
                arguments,
            )
            .await
            .unwrap();
        for key in binding_keys {
            channel
                .queue_bind(
                    queue.as_str().into(),
                    topology.changes_exchange().into(),
                    (*key).into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .unwrap();
        }
        Self {
            channel,
            queue,
            received: Vec::new(),
        }
    }

    /// Takes what is in the queue now.
    pub async fn take_available(&mut self) -> usize {
        let before = self.received.len();
        for delivery in get_all(&self.channel, &self.queue).await {
            let headers = delivery.properties.headers().clone().unwrap_or_default();
            let headers = headers.inner();
            self.received.push(ReceivedChange {
                routing_key: delivery.routing_key.to_string(),
                body: serde_json::from_slice(&delivery.data).unwrap(),
                version: match headers.get("x-change-version") {
                    Some(AMQPValue::LongInt(v)) => Some(i64::from(*v)),
                    Some(AMQPValue::LongLongInt(v)) => Some(*v),
                    _ => None,
                },
                traceparent: match headers.get("traceparent") {
                    Some(AMQPValue::LongString(v)) => Some(v.to_string()),
                    _ => None,
                },
            });
        }
        self.received.len() - before
    }

    /// Takes changes until the last one received for every message in
    /// `expected` (sid → status) has that status, within `timeout`.
    pub async fn wait_for_last_statuses(
        &mut self,
        expected: &BTreeMap<String, String>,
        timeout: Duration,
    ) {
        let what = format!("the feed's last change of {} messages", expected.len());
        let mut last_missing = String::new();
        let outcome = tokio::time::timeout(timeout, async {
            loop {
                self.take_available().await;
                let last = last_statuses(&self.received);
                let missing: Vec<_> = expected
                    .iter()
                    .filter(|(sid, status)| last.get(*sid) != Some(*status))
                    .collect();
                if missing.is_empty() {
                    return;
                }
                last_missing = format!(
                    "{} still differ, e.g. {:?} (last received: {:?})",
                    missing.len(),
                    missing[0],
                    last.get(missing[0].0)
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        assert!(
            outcome.is_ok(),
            "timed out waiting for {what}: {last_missing}"
        );
    }
}

impl Drop for ChangeListener {
    fn drop(&mut self) {
        let queue = self.queue.clone();
        run_to_completion(move || async move {
            if let Ok(connection) = queue_wire::broker::connect_any(&amqp_url(), "testkit").await {
                if let Ok(channel) = connection.create_channel().await {
                    let _ = channel
                        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                        .await;
                }
                let _ = connection.close(200, "done".into()).await;
            }
        });
    }
}

/// The status of the last change received per message, copies dropped.
pub fn last_statuses(received: &[ReceivedChange]) -> BTreeMap<String, String> {
    let mut last = BTreeMap::new();
    for change in received {
        last.insert(change.message_sid().to_owned(), change.status().to_owned());
    }
    last
}

/// Checks the feed's guarantee on what arrived, message by message, as a
/// consumer that drops `change_id`s it has seen would:
/// - a copy is identical to the first (same `change_id`, same body);
/// - per message, changes arrive in `sequence` order, 1, 2, 3, ... with no
///   gap, each one's `previous_status` the status before it;
/// - never backwards: each status has a higher precedence than the one
///   before (a later status, or the outcome that wins over another);
/// - routing key `message.<status>` and version 1.
///
/// Returns how many copies were dropped.
pub fn check_feed_order(received: &[ReceivedChange]) -> usize {
    let mut seen: HashMap<String, &serde_json::Value> = HashMap::new();
    let mut per_message: HashMap<&str, Vec<&ReceivedChange>> = HashMap::new();
    let mut copies = 0;
    for change in received {
        assert_eq!(change.routing_key, format!("message.{}", change.status()));
        assert_eq!(
            change.version,
            Some(1),
            "x-change-version of {:?}",
            change.body
        );
        if let Some(first) = seen.get(change.change_id()) {
            assert_eq!(*first, &change.body, "a copy differs from the first");
            copies += 1;
            continue;
        }
        seen.insert(change.change_id().to_owned(), &change.body);
        per_message
            .entry(change.message_sid())
            .or_default()
            .push(change);
    }
    for (sid, changes) in per_message {
        let mut previous: Option<&str> = None;
        for (index, change) in changes.iter().enumerate() {
            assert_eq!(
                change.sequence(),
                index as i64 + 1,
                "message {sid}: change {} arrived as number {} ({:?})",
                change.sequence(),
                index + 1,
                changes
                    .iter()
                    .map(|c| (c.sequence(), c.status()))
                    .collect::<Vec<_>>()
            );
            assert_eq!(
                change.body["previous_status"].as_str(),
                previous,
                "message {sid}: previous_status of change {}",
                change.sequence()
            );
            if let Some(before) = previous {
                let rank = |status: &str| status.parse::<MessageStatus>().map(|s| s.precedence());
                assert!(
                    rank(change.status()).unwrap() > rank(before).unwrap(),
                    "message {sid}: {} after {before}",
                    change.status()
                );
            }
            previous = Some(change.status());
        }
    }
    copies
}
