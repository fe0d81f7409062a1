//! The broker ceiling: persistent, mandatory publishes with publisher
//! confirms into a fresh copy of the pipeline's own topology (same exchange,
//! same quorum queue and arguments: the path ingest's publishes take),
//! `concurrency` publishes in flight on one confirm channel, each with a
//! realistic callback body and ingest's headers. The topology is deleted
//! afterwards, whatever happened.

use anyhow::{bail, Context};
use lapin::options::ConfirmSelectOptions;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use queue_wire::broker::ConfirmError;
use queue_wire::topology::Topology;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ceiling_input;
use crate::latency::{merge_lanes, micros, new_histogram, Percentiles};
use crate::workload::RunId;

/// Ingest's default: a publish not confirmed within this counts as failed.
const CONFIRM_DEADLINE: Duration = Duration::from_secs(5);

#[derive(Debug, Serialize)]
pub struct BrokerCeilingReport {
    pub queue: String,
    pub concurrency: usize,
    pub confirmed: u64,
    pub failed: u64,
    pub elapsed_s: f64,
    pub confirmed_per_s: f64,
    pub body_bytes: usize,
    /// From publish to confirm.
    pub confirm_latency_ms: Percentiles,
}

pub async fn run(
    amqp_url: &str,
    concurrency: usize,
    messages: u64,
    time_limit: Duration,
) -> anyhow::Result<BrokerCeilingReport> {
    let connection = Connection::connect(amqp_url, ConnectionProperties::default())
        .await
        .context("cannot connect to RabbitMQ")?;
    let topology = Topology::new(format!("loadgen.ceiling.{}", RunId::random().as_hex()));
    let admin = connection.create_channel().await?;
    let result = async {
        topology.declare(&connection).await?;
        publish_all(&connection, &topology, concurrency, messages, time_limit).await
    }
    .await;
    let deleted = topology.delete(&admin).await;
    let _ = connection.close(200, "loadgen ceiling done".into()).await;
    let report = result?;
    deleted.with_context(|| format!("could not delete topology {}", topology.prefix()))?;
    Ok(report)
}

/// A callback as ingest would publish it, with ingest's headers (trace context included).
fn sample_message() -> (Vec<u8>, BasicProperties) {
    let (_, _, params) = ceiling_input::callbacks().next_event();
    let traceparent = format!(
        "00-{}-{:016x}-01",
        uuid::Uuid::new_v4().simple(),
        fastrand::u64(..)
    );
    let envelope = ceiling_input::envelope(
        &params,
        uuid::Uuid::new_v4(),
        vec![("traceparent".to_owned(), traceparent)],
    );
    let properties = envelope.to_properties();
    (envelope.body, properties)
}

async fn publish_all(
    connection: &Connection,
    topology: &Topology,
    concurrency: usize,
    messages: u64,
    time_limit: Duration,
) -> anyhow::Result<BrokerCeilingReport> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let (body, properties) = sample_message();
    let body = Arc::new(body);
    let claimed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + time_limit;
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency.max(1) {
        let channel = channel.clone();
        let body = body.clone();
        let properties = properties.clone();
        let claimed = claimed.clone();
        let exchange = topology.exchange();
        let routing_key = topology.routing_key();
        tasks.push(tokio::spawn(async move {
            let mut histogram = new_histogram();
            let mut failed = 0u64;
            while Instant::now() < deadline && claimed.fetch_add(1, Ordering::Relaxed) < messages {
                let sent = Instant::now();
                let confirmed = queue_wire::broker::publish_confirmed(
                    &channel,
                    &exchange,
                    routing_key,
                    &body,
                    properties.clone(),
                    CONFIRM_DEADLINE,
                )
                .await;
                match confirmed {
                    Ok(()) => histogram.saturating_record(micros(sent.elapsed())),
                    Err(ConfirmError::Broker(error)) => return Err(error),
                    Err(_) => failed += 1,
                }
            }
            Ok((histogram, failed))
        }));
    }
    let (histogram, failed) = merge_lanes(tasks).await?;
    let elapsed = started.elapsed();
    if histogram.is_empty() && failed > 0 {
        bail!("RabbitMQ confirmed none of {failed} publishes");
    }
    Ok(BrokerCeilingReport {
        queue: topology.main_queue(),
        concurrency,
        confirmed: histogram.len(),
        failed,
        elapsed_s: elapsed.as_secs_f64(),
        confirmed_per_s: histogram.len() as f64 / elapsed.as_secs_f64().max(1e-9),
        body_bytes: body.len(),
        confirm_latency_ms: Percentiles::from_micros(&histogram),
    })
}
