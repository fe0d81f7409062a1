//! The database ceilings: the worker's own batch statement
//! (`worker::test_support::store::projection::STORE_BATCH`), or that statement with the
//! projection taken out (`INSERT_EVENTS_ONLY`, an upper bound): the same
//! rows (`EventRow`, realistic lifecycles and raw payloads), the same typed
//! array parameters, the same pool, one statement per batch, into the real
//! schema of a scratch database that is created, migrated and dropped here.

use anyhow::Context;
use migrations::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use serde::Serialize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};
use twilio_protocol::callback::StatusCallback;
use worker::test_support::decode::dedup::{DedupKey, KEY_BYTES};
use worker::test_support::decode::DecodedCallback;
use worker::test_support::feed::ChangeFeed;
use worker::test_support::store::columns::{inserted, run_batch_statement};
use worker::test_support::store::event::EventRow;
use worker::test_support::store::projection::{INSERT_EVENTS, RECEIVED, STORE_BATCH};

use crate::load::{micros, new_histogram, Percentiles};
use crate::local::with_database;
use crate::workload::{Generator, Mix, RunId, Workload};

/// Which of the worker's statements the ceiling runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum CeilingStatement {
    /// The history insert alone (`INSERT_EVENTS_ONLY`): an upper bound.
    Events,
    /// Exactly the worker's statement (`STORE_BATCH`: insert, fold, upsert).
    Worker,
}

#[derive(Debug, Serialize)]
pub struct DbCeilingReport {
    pub database: String,
    pub statement: CeilingStatement,
    pub rows: u64,
    pub batch: usize,
    pub concurrency: usize,
    pub elapsed_s: f64,
    pub rows_per_s: f64,
    /// One batch: one statement, its own transaction.
    pub batch_latency_ms: Percentiles,
}

pub async fn run(
    database_url: &str,
    rows: u64,
    batch: usize,
    concurrency: usize,
    time_limit: Duration,
    statement: CeilingStatement,
    schema_variant: Option<&str>,
) -> anyhow::Result<DbCeilingReport> {
    let batch = batch.max(1);
    let name = format!("loadgen_ceiling_{}", RunId::random().as_hex());
    let admin = Database::connect(with_database(database_url, "postgres")?)
        .await
        .context("cannot connect to Postgres")?;
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await?;
    let result = async {
        // The worker's own pool settings (TCP_NODELAY included), so the
        // ceiling and the worker talk to Postgres the same way.
        let db = worker::test_support::store::database::connect_database(
            &with_database(database_url, &name)?,
            concurrency.max(1) as u32 + 1,
        )
        .await?;
        let result = async {
            Migrator::up(&db, None).await?;
            if let Some(sql) = schema_variant {
                db.execute_unprepared(sql)
                    .await
                    .context("the schema variant failed")?;
            }
            insert_all(&db, rows, batch, concurrency, time_limit, statement).await
        }
        .await;
        let _ = db.close().await;
        result
    }
    .await;
    let dropped = admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await;
    let _ = admin.close().await;
    let mut report = result?;
    dropped.with_context(|| format!("could not drop scratch database {name}"))?;
    report.database = name;
    Ok(report)
}

/// The bare history insert of a batch, with no projection: the worker's
/// input and insert (`RECEIVED`, `INSERT_EVENTS`), every event taken as the
/// owner's.
static INSERT_EVENTS_ONLY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH received AS ({RECEIVED}),
           batch AS (SELECT r.*, false AS foreign_account FROM received r),
           inserted AS ({insert})
         SELECT (SELECT count(*) FROM inserted) AS inserted",
        insert = *INSERT_EVENTS,
    )
});

/// Builds every batch before the clock starts, so only the statement (and
/// the row serialisation the worker also pays) is timed.
fn batches(rows: u64, batch: usize) -> anyhow::Result<Vec<Vec<DecodedCallback>>> {
    let run = RunId::random();
    let workload = Arc::new(Workload::new(
        "http://127.0.0.1:8080/twilio/status".into(),
        twilio_protocol::signature::AuthToken::new("ceiling"),
        Mix::default(),
        run,
    ));
    let mut generator = Generator::new(workload, 0, 1);
    let mut batches = Vec::new();
    let mut remaining = rows;
    while remaining > 0 {
        let in_batch = remaining.min(batch as u64) as usize;
        remaining -= in_batch as u64;
        let mut events = Vec::with_capacity(in_batch);
        for _ in 0..in_batch {
            let (_, _, params) = generator.next_event();
            let envelope =
                crate::ceiling_input::envelope(&params, uuid::Uuid::new_v4(), Vec::new());
            let callback = StatusCallback::from_params(params)
                .context("the generator made an invalid callback")?;
            events.push(DecodedCallback {
                envelope,
                callback,
                dedup_key: dedup_key(),
                from_batch: false,
            });
        }
        batches.push(events);
    }
    Ok(batches)
}

/// Random, so never a duplicate, and as long as the worker's keys.
fn dedup_key() -> DedupKey {
    let mut key = [0; KEY_BYTES];
    fastrand::fill(&mut key);
    DedupKey::from(key)
}

async fn insert_all(
    db: &DatabaseConnection,
    rows: u64,
    batch: usize,
    concurrency: usize,
    time_limit: Duration,
    statement: CeilingStatement,
) -> anyhow::Result<DbCeilingReport> {
    // The worker's statement runs with the change feed on, as it does by default.
    let (sql, feed): (&'static str, _) = match statement {
        CeilingStatement::Events => (&INSERT_EVENTS_ONLY, None),
        CeilingStatement::Worker => (&STORE_BATCH, Some(ChangeFeed::On)),
    };
    let batches = Arc::new(batches(rows, batch)?);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + time_limit;
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let db = db.clone();
        let batches = batches.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut histogram = new_histogram();
            let mut total = 0u64;
            while Instant::now() < deadline {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(events) = batches.get(index) else {
                    break;
                };
                let batch_started = Instant::now();
                let rows: Vec<EventRow> = events.iter().map(EventRow::new).collect();
                let rows: Vec<&EventRow> = rows.iter().collect();
                let pool = db.get_postgres_connection_pool();
                let row = run_batch_statement(pool, sql, &rows, feed).await?;
                histogram.saturating_record(micros(batch_started.elapsed()));
                total += inserted(&row)? as u64;
            }
            anyhow::Ok((histogram, total))
        }));
    }
    let mut histogram = new_histogram();
    let mut inserted = 0;
    for task in tasks {
        let (lane, lane_inserted) = task.await??;
        let _ = histogram.add(&lane);
        inserted += lane_inserted;
    }
    let elapsed = started.elapsed();
    Ok(DbCeilingReport {
        database: String::new(),
        statement,
        rows: inserted,
        batch,
        concurrency,
        elapsed_s: elapsed.as_secs_f64(),
        rows_per_s: inserted as f64 / elapsed.as_secs_f64().max(1e-9),
        batch_latency_ms: Percentiles::from_micros(&histogram),
    })
}
