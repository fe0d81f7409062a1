//! The database ceiling: multi-row `INSERT ... ON CONFLICT (dedup_key) DO
//! NOTHING RETURNING dedup_key` of rows like the worker's (same columns,
//! realistic raw payloads), one transaction per batch, into the real schema
//! of a scratch database that is created, migrated and dropped here.
//!
//! The worker's transaction also upserts `messages`; this measures the event
//! insert alone, so it is an upper bound for the worker's persist rate.

use anyhow::Context;
use migrations::{Migrator, MigratorTrait};
use queue_wire::envelope::BodyKind;
use sea_orm::{
    ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement, TransactionTrait, Value,
};
use serde::Serialize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use twilio_protocol::callback::StatusCallback;

use crate::load::{micros, new_histogram, Percentiles};
use crate::local::with_database;
use crate::workload::{Generator, Mix, RunId, Workload};

#[derive(Debug, Serialize)]
pub struct DbCeilingReport {
    pub database: String,
    pub rows: u64,
    pub batch: usize,
    pub concurrency: usize,
    pub elapsed_s: f64,
    pub rows_per_s: f64,
    /// One batch: begin, insert, commit.
    pub batch_latency_ms: Percentiles,
}

const COLUMNS: usize = 11;

pub async fn run(
    database_url: &str,
    rows: u64,
    batch: usize,
    concurrency: usize,
    time_limit: Duration,
) -> anyhow::Result<DbCeilingReport> {
    let batch = batch.clamp(1, 65_535 / COLUMNS);
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
        let db = worker::store::database::connect_database(
            &with_database(database_url, &name)?,
            concurrency.max(1) as u32 + 1,
        )
        .await?;
        let result = async {
            Migrator::up(&db, None).await?;
            insert_all(&db, rows, batch, concurrency, time_limit).await
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

/// Builds every statement before the clock starts, so only the database is timed.
fn statements(rows: u64, batch: usize) -> anyhow::Result<Vec<Statement>> {
    let run = RunId::random();
    let workload = Arc::new(Workload::new(
        "http://127.0.0.1:8080/twilio/status".into(),
        twilio_protocol::signature::AuthToken::new("ceiling"),
        Mix::default(),
        run,
    ));
    let mut generator = Generator::new(workload, 0, 1);
    let mut statements = Vec::new();
    let mut remaining = rows;
    while remaining > 0 {
        let in_batch = remaining.min(batch as u64) as usize;
        remaining -= in_batch as u64;
        let mut sql = String::from(
            "INSERT INTO message_status_events \
             (dedup_key, message_sid, status, status_rank, error_code, raw_payload, content_type, \
              idempotency_token, request_id, received_at, persisted_at) VALUES ",
        );
        let mut values: Vec<Value> = Vec::with_capacity(in_batch * COLUMNS);
        for row in 0..in_batch {
            let (_, _, params) = generator.next_event();
            let callback = StatusCallback::from_params(params)
                .context("the generator made an invalid callback")?;
            if row > 0 {
                sql.push(',');
            }
            sql.push('(');
            for column in 0..COLUMNS {
                if column > 0 {
                    sql.push(',');
                }
                sql.push_str(&format!("${}", row * COLUMNS + column + 1));
            }
            sql.push(')');
            let now = chrono::Utc::now();
            values.extend([
                dedup_key().into(),
                callback.message_sid.as_str().to_owned().into(),
                callback.status.as_str().to_owned().into(),
                callback.status.rank().into(),
                callback.error_code.into(),
                callback.params.to_json().into(),
                BodyKind::Form.content_type().to_owned().into(),
                Some(uuid::Uuid::new_v4().to_string()).into(),
                uuid::Uuid::new_v4().to_string().into(),
                now.into(),
                now.into(),
            ]);
        }
        sql.push_str(" ON CONFLICT (dedup_key) DO NOTHING RETURNING dedup_key");
        statements.push(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            values,
        ));
    }
    Ok(statements)
}

/// 64 hex digits, like the worker's SHA-256 keys.
fn dedup_key() -> String {
    (0..4)
        .map(|_| format!("{:016x}", fastrand::u64(..)))
        .collect()
}

async fn insert_all(
    db: &DatabaseConnection,
    rows: u64,
    batch: usize,
    concurrency: usize,
    time_limit: Duration,
) -> anyhow::Result<DbCeilingReport> {
    let statements = Arc::new(statements(rows, batch)?);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + time_limit;
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let db = db.clone();
        let statements = statements.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut histogram = new_histogram();
            let mut inserted = 0u64;
            while Instant::now() < deadline {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(statement) = statements.get(index) else {
                    break;
                };
                let batch_started = Instant::now();
                let transaction = db.begin().await?;
                let returned = transaction.query_all_raw(statement.clone()).await?;
                transaction.commit().await?;
                histogram.saturating_record(micros(batch_started.elapsed()));
                inserted += returned.len() as u64;
            }
            anyhow::Ok((histogram, inserted))
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
        rows: inserted,
        batch,
        concurrency,
        elapsed_s: elapsed.as_secs_f64(),
        rows_per_s: inserted as f64 / elapsed.as_secs_f64().max(1e-9),
        batch_latency_ms: Percentiles::from_micros(&histogram),
    })
}
