//! Consuming: delivery → decode → dedupe → store → ack.
//!
//! Deliveries that are ready together are stored together in one
//! statement, then acknowledged; nothing is acknowledged before its commit,
//! so a crash in between means a redelivery, which the dedup key absorbs.
//! `WORKER_CONCURRENCY` consumers, each on its own channel, do this side by
//! side, so one batch's round trips to Postgres overlap another's.
//!
//! - this module supervises: it consumes only while the database answers,
//!   and opens a new broker session (`session`) whenever one is lost;
//! - `batch` takes what is ready from a consumer;
//! - `policy` decides what happens to a batch: stored and acked, held
//!   through a database outage, or isolated one callback at a time and the
//!   failing ones retried or dead-lettered;
//! - `taken` holds a batch's deliveries with the callbacks they carried;
//! - `spans` gives each callback its place in the trace ingest started;
//! - `end` says why a session ended, `database` how to wait for Postgres.

mod batch;
mod database;
mod end;
mod policy;
mod session;
mod spans;
mod taken;

use queue_wire::reconnect::Reconnector;
use sea_orm::DatabaseConnection;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

use crate::config::WorkerConfig;
use crate::health::{HoldReason, WorkerHealth};
use crate::store;
use end::SessionEnd;
use session::Session;

/// Runs until `stop` is cancelled; then finishes the batch in hand and returns.
pub async fn run(
    config: WorkerConfig,
    db: DatabaseConnection,
    health: Arc<WorkerHealth>,
    stop: CancellationToken,
) {
    // Not ready the moment this task ends, however it ends (a panic included).
    let _not_consuming_on_exit = NotConsumingOnExit(health.clone());
    let topology = &config.common.topology;
    let mut reconnector = Reconnector::new(
        &config.common.amqp_url,
        format!("worker {}", topology.prefix()),
        "not consuming",
    );
    while !stop.is_cancelled() {
        if !store::database_reachable(&db).await {
            health.set_holding(Some(HoldReason::DatabaseUnavailable));
            tracing::warn!("database unreachable; not consuming until it answers");
            database::wait_until_reachable(&db, &stop).await;
            continue;
        }
        health.set_holding(None);
        let session = match Session::open(&config, &mut reconnector, &stop).await {
            Ok(Some(session)) => session,
            Ok(None) => break,
            Err(error) => {
                reconnector.after_failure(&error, &stop).await;
                continue;
            }
        };
        health.set_consuming(true);
        tracing::info!(
            node = reconnector.node().unwrap_or_default(),
            queue = %topology.main_queue(),
            "consuming"
        );
        let end = session.consume(&config, &db, &health, &stop).await;
        health.set_consuming(false);
        session.close().await;
        match end {
            SessionEnd::Shutdown => break,
            SessionEnd::BrokerLost(error) => reconnector.after_failure(&error, &stop).await,
        }
    }
    tracing::info!("consumer stopped");
}

struct NotConsumingOnExit(Arc<WorkerHealth>);

impl Drop for NotConsumingOnExit {
    fn drop(&mut self) {
        self.0.set_consuming(false);
    }
}
