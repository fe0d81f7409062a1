//! `watch-changes`: an example consumer of the change feed (README, *Change
//! feed*). It binds a durable queue of its own to `<prefix>.changes`,
//! drops the copies of changes it has already handled, and prints each
//! change as one line. It is meant to be copied: what a real consumer does
//! differently is said where it matters.

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use queue_wire::envelope::header_int;
use queue_wire::topology::{Topology, DEFAULT_PREFIX};
use serde::Deserialize;
use std::collections::HashSet;
use std::time::Duration;

use super::common::DEFAULT_AMQP_URL;

/// The body format this consumer reads (header `x-change-version`). Fields
/// may be added within a version, so unknown fields are ignored; a version
/// it does not know is refused.
const CHANGE_VERSION: i64 = 1;
/// Deliveries in hand at once, not yet acknowledged.
const PREFETCH: u16 = 100;

#[derive(Debug, Args)]
pub struct WatchChangesArgs {
    #[arg(long, hide_env_values = true, env = "AMQP_URL", default_value = DEFAULT_AMQP_URL)]
    amqp_url: String,
    /// The workers' AMQP_TOPOLOGY_PREFIX: the feed is the exchange `<prefix>.changes`.
    #[arg(long, env = "AMQP_TOPOLOGY_PREFIX", default_value = DEFAULT_PREFIX)]
    topology_prefix: String,
    /// The queue to consume, declared durable [default: <prefix>.changes.example]. A durable
    /// named queue keeps the changes that arrive while this consumer is down; delete it when
    /// you no longer want them (bindings of earlier runs stay with it).
    #[arg(long)]
    queue: Option<String>,
    /// Binding key, repeatable: `message.<status>`, `message.*`, or `#` for every change.
    #[arg(
        long = "binding",
        value_name = "KEY",
        default_values = ["message.failed", "message.undelivered"]
    )]
    bindings: Vec<String>,
    /// `json`: each change's body as published; `text`: time, message, statuses, error.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
    /// Exit 0 after this many distinct changes.
    #[arg(long)]
    count: Option<usize>,
    /// Stop after this many seconds: exit 0, or 1 if --count changes have not arrived.
    #[arg(long)]
    timeout_secs: Option<u64>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    Json,
    Text,
}

/// The fields of a change this example reads. The body has more
/// (`account_sid`, `from`, `to`, `occurred_at`; README, *Change feed*).
#[derive(Debug, Deserialize)]
struct Change {
    change_id: String,
    message_sid: String,
    status: String,
    previous_status: Option<String>,
    error_code: Option<i64>,
    error_title: Option<String>,
    #[serde(rename = "final")]
    is_final: bool,
    sequence: i64,
    recorded_at: String,
}

pub async fn run(args: WatchChangesArgs) -> anyhow::Result<bool> {
    // Unlike the load-generating commands, any broker: it only reads.
    let connection = queue_wire::broker::connect(&args.amqp_url, "loadgen watch-changes")
        .await
        .context("cannot connect to RabbitMQ")?;
    let watched = watch(&connection, &args).await;
    // Closing returns the deliveries not acknowledged to the queue.
    let _ = connection.close(200, "watch-changes done".into()).await;
    watched
}

async fn watch(connection: &Connection, args: &WatchChangesArgs) -> anyhow::Result<bool> {
    let topology = Topology::new(args.topology_prefix.clone());
    let queue = args
        .queue
        .clone()
        .unwrap_or_else(|| format!("{}.example", topology.changes_exchange()));
    let channel = connection.create_channel().await?;
    subscribe(&channel, &topology, &queue, &args.bindings)
        .await
        .with_context(|| format!("cannot bind {queue} to {}", topology.changes_exchange()))?;
    channel
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await?;
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(), // manual acks
            FieldTable::default(),
        )
        .await?;

    // The change ids handled so far. In memory for this example: a real
    // consumer stores the ids it processed (or the last `sequence` per
    // message) in the same transaction as its own side effects, so a copy
    // delivered after a restart is dropped too.
    let mut seen = HashSet::new();
    let timeout = async {
        match args.timeout_secs {
            Some(secs) => tokio::time::sleep(Duration::from_secs(secs)).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(timeout);
    while args.count.is_none_or(|count| seen.len() < count) {
        let delivery = tokio::select! {
            delivery = consumer.next() => delivery,
            () = &mut timeout => {
                if let Some(count) = args.count {
                    eprintln!("watch-changes: {} of {count} changes within the timeout", seen.len());
                }
                return Ok(args.count.is_none());
            }
            _ = tokio::signal::ctrl_c() => return Ok(true),
        };
        match delivery {
            Some(Ok(delivery)) => handle(delivery, &mut seen, args.format).await?,
            Some(Err(error)) => return Err(error).context("lost the connection to RabbitMQ"),
            None => {
                bail!("RabbitMQ cancelled the consumer (queue {queue} deleted?)")
            }
        }
    }
    Ok(true)
}

/// Declares the feed's exchange (in case no worker has yet), a durable
/// queue of this consumer's own, and its bindings.
async fn subscribe(
    channel: &Channel,
    topology: &Topology,
    queue: &str,
    bindings: &[String],
) -> lapin::Result<()> {
    topology.declare_changes_exchange(channel).await?;
    // Durable: it outlives this process and keeps what arrives meanwhile.
    // On a RabbitMQ cluster, add `x-queue-type: quorum` to replicate it.
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(queue.into(), durable, FieldTable::default())
        .await?;
    for key in bindings {
        channel
            .queue_bind(
                queue.into(),
                topology.changes_exchange().into(),
                key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    Ok(())
}

/// Checks the version, prints the change unless it is a copy of one seen,
/// then acknowledges it: a change is acked only once handled, so a crash
/// in between delivers it again (at least once), and the ids drop the copy.
async fn handle(
    delivery: Delivery,
    seen: &mut HashSet<String>,
    format: Format,
) -> anyhow::Result<()> {
    let headers = delivery.properties.headers().clone().unwrap_or_default();
    let version = header_int(&headers, "x-change-version");
    if version != Some(CHANGE_VERSION) {
        // Stop rather than guess. The change is never acked: it goes back
        // to the queue for a consumer that reads its version.
        let version = version.map_or("missing".to_owned(), |v| v.to_string());
        bail!(
            "a change has x-change-version {version}; this consumer reads version \
             {CHANGE_VERSION} only. Stopping: the change stays in the queue"
        );
    }
    let change: Change =
        serde_json::from_slice(&delivery.data).context("a change body is not version 1 JSON")?;
    if seen.insert(change.change_id.clone()) {
        match format {
            // The body is one line of JSON, printed as published.
            Format::Json => println!("{}", String::from_utf8_lossy(&delivery.data)),
            Format::Text => println!("{}", text_line(&change)),
        }
    }
    delivery.acker.ack(BasicAckOptions::default()).await?;
    Ok(())
}

/// `2026-12-07T10:00:01Z SM… sent -> undelivered #2 final 30003 Unreachable destination handset`
fn text_line(change: &Change) -> String {
    let mut line = format!(
        "{} {} {} -> {} #{}",
        change.recorded_at,
        change.message_sid,
        change.previous_status.as_deref().unwrap_or("-"),
        change.status,
        change.sequence
    );
    if change.is_final {
        line.push_str(" final");
    }
    if let Some(code) = change.error_code {
        line.push_str(&format!(" {code}"));
    }
    if let Some(title) = &change.error_title {
        line.push_str(&format!(" {title}"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_reads_as_one_text_line() {
        let body = r#"{"change_id":"00000000-0000-0000-0000-000000000000","message_sid":"SM1",
            "account_sid":"AC1","status":"undelivered","previous_status":"sent","error_code":30003,
            "error_title":"Unreachable destination handset","final":true,"sequence":2,
            "occurred_at":"2023-11-14T22:13:20Z","recorded_at":"2023-11-14T22:13:21Z",
            "from":"+15550001111","to":"+15552223333","added_later":1}"#;
        let change: Change = serde_json::from_str(body).unwrap();
        assert_eq!(
            text_line(&change),
            "2023-11-14T22:13:21Z SM1 sent -> undelivered #2 final 30003 Unreachable destination handset"
        );
    }
}
