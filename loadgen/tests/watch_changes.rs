//! `watch-changes` against the real local RabbitMQ, on a change feed
//! exchange of its own: changes published as the worker publishes them
//! reach it through its default queue and bindings, each printed once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeleteOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection};
use queue_wire::topology::Topology;
use serde_json::{json, Value};
use std::process::{Output, Stdio};
use std::time::Duration;
use tokio::process::{Child, Command};

fn amqp_url() -> String {
    std::env::var("TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// A change feed exchange under a prefix no other test uses, published to
/// as the worker's relay does.
struct Feed {
    topology: Topology,
    connection: Connection,
    publisher: Channel,
}

impl Feed {
    async fn new() -> Self {
        let prefix = format!("test.{}", uuid::Uuid::new_v4().simple());
        let topology = Topology::new(prefix);
        let connection = queue_wire::broker::connect(&amqp_url(), "loadgen test")
            .await
            .expect("RabbitMQ must run on 127.0.0.1:5672 for these tests");
        let publisher = connection.create_channel().await.unwrap();
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        topology.declare_changes_exchange(&publisher).await.unwrap();
        Self {
            topology,
            connection,
            publisher,
        }
    }

    /// `watch-changes` on this feed, with its default queue and bindings.
    fn watch(&self, args: &[&str]) -> Child {
        Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .args(["watch-changes", "--amqp-url", &amqp_url()])
            .args(["--topology-prefix", self.topology.prefix()])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    }

    /// The queue `watch-changes` declares by default.
    fn queue(&self) -> String {
        format!("{}.example", self.topology.changes_exchange())
    }

    /// (ready messages, consumers) of the queue, if it exists.
    async fn queue_state(&self) -> Option<(u32, u32)> {
        // A passive declare of a missing queue closes its channel: one each time.
        let channel = self.connection.create_channel().await.ok()?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let queue = channel
            .queue_declare(self.queue().as_str().into(), passive, FieldTable::default())
            .await
            .ok()?;
        let _ = channel.close(200, "looked".into()).await;
        Some((queue.message_count(), queue.consumer_count()))
    }

    /// Waits until the queue has `consumers` and `ready` messages.
    async fn wait_for_queue(&self, ready: u32, consumers: u32) -> bool {
        for _ in 0..100 {
            if self.queue_state().await == Some((ready, consumers)) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    async fn publish(&self, version: i32, change: &Value) {
        let mut headers = FieldTable::default();
        headers.insert("x-change-version".into(), AMQPValue::LongInt(version));
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_message_id(change["change_id"].as_str().unwrap().into())
            .with_headers(headers);
        let routing_key = format!("message.{}", change["status"].as_str().unwrap());
        self.publisher
            .basic_publish(
                self.topology.changes_exchange().into(),
                routing_key.as_str().into(),
                BasicPublishOptions::default(),
                &serde_json::to_vec(change).unwrap(),
                properties,
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }

    async fn delete(self) {
        self.publisher
            .queue_delete(self.queue().as_str().into(), QueueDeleteOptions::default())
            .await
            .unwrap();
        self.publisher
            .exchange_delete(
                self.topology.changes_exchange().into(),
                ExchangeDeleteOptions::default(),
            )
            .await
            .unwrap();
        let _ = self.connection.close(200, "done".into()).await;
    }
}

/// A change body as the worker publishes it.
fn change(status: &str, previous: &str, error_code: Option<i32>) -> Value {
    json!({
        "change_id": uuid::Uuid::new_v4().to_string(),
        "message_sid": format!("SM{}", uuid::Uuid::new_v4().simple()),
        "account_sid": "AC00000000000000000000000000000000",
        "status": status,
        "previous_status": previous,
        "error_code": error_code,
        "error_title": error_code.map(|_| "Unreachable destination handset"),
        "final": true,
        "sequence": 2,
        "occurred_at": "2026-12-07T10:00:00Z",
        "recorded_at": "2026-12-07T10:00:01Z",
        "from": "+15017122661",
        "to": "+15558675310",
    })
}

async fn finish(child: Child) -> Output {
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("watch-changes did not stop")
        .unwrap()
}

#[tokio::test]
async fn prints_each_bound_change_once() {
    let feed = Feed::new().await;
    let child = feed.watch(&["--count", "2", "--timeout-secs", "30"]);
    let consuming = feed.wait_for_queue(0, 1).await;
    let delivered = change("delivered", "sent", None);
    let failed = change("failed", "sent", Some(30003));
    let undelivered = change("undelivered", "sent", Some(30003));
    feed.publish(1, &delivered).await; // not bound by default: never reaches the queue
    feed.publish(1, &failed).await;
    feed.publish(1, &failed).await; // a copy: the same change_id, dropped
    feed.publish(1, &undelivered).await; // the second distinct change: --count 2 ends it
    let output = finish(child).await;
    feed.delete().await;

    assert!(consuming, "watch-changes never consumed");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let printed: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(printed, [failed, undelivered]);
}

#[tokio::test]
async fn an_unknown_version_stops_it_and_the_change_stays_queued() {
    let feed = Feed::new().await;
    let child = feed.watch(&["--timeout-secs", "30"]);
    let consuming = feed.wait_for_queue(0, 1).await;
    feed.publish(2, &change("failed", "sent", Some(30003)))
        .await;
    let output = finish(child).await;
    let kept = feed.wait_for_queue(1, 0).await;
    feed.delete().await;

    assert!(consuming, "watch-changes never consumed");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("x-change-version 2"), "{stderr}");
    assert!(output.stdout.is_empty());
    assert!(kept, "the refused change is not back in the queue");
}
