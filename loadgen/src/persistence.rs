//! After the load: waits (bounded) until the worker has stored a run's
//! callbacks, then checks it stored exactly the unique accepted ones and
//! measures how long each took to get there.
//!
//! A run's rows are found by its message SID prefix. `persisted_at` is the
//! worker's clock when it built the insert and `received_at` ingest's when it
//! accepted the request; both run on this machine, so their difference is the
//! callback-to-row lag (the commit that follows adds the batch's commit time).

use anyhow::Context;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement, Value};
use serde::Serialize;
use std::time::{Duration, Instant};

use crate::latency::{new_histogram, Percentiles};
use crate::workload::RunId;

/// What the database should end up holding for a run.
#[derive(Clone, Copy, Debug)]
pub struct Expectation {
    pub run: RunId,
    /// Distinct events that got a 200 at least once.
    pub events: u64,
    pub messages: u64,
    /// Events whose requests all failed without an answer: stored or not.
    pub unknown: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct PersistenceReport {
    pub run_id: String,
    pub expected_rows: u64,
    pub rows: u64,
    /// Rows equal the unique accepted callbacks (plus at most the unknown ones).
    pub rows_match: bool,
    pub unknown_outcome_events: u64,
    pub expected_messages: u64,
    pub messages: u64,
    pub messages_match: bool,
    pub waited_s: f64,
    /// Rows / (last persisted_at − first received_at).
    pub end_to_end_per_s: Option<f64>,
    /// Rows / (last persisted_at − first persisted_at): the worker's pace
    /// while it had work.
    pub persisted_per_s: Option<f64>,
    /// persisted_at − received_at.
    pub lag_ms: Percentiles,
}

impl PersistenceReport {
    pub fn ok(&self) -> bool {
        self.rows_match && self.messages_match
    }
}

/// How often the row count is polled.
const POLL: Duration = Duration::from_millis(250);
/// How long the count may stay still after reaching the expected number,
/// for late extra rows (which would be a de-duplication failure) to show.
const SETTLE: Duration = Duration::from_millis(750);

/// Waits until the run's rows reach the expected count, stop growing for
/// `stall`, or `timeout` passes; then reports.
pub async fn wait_and_check(
    database_url: &str,
    expect: Expectation,
    timeout: Duration,
    stall: Duration,
) -> anyhow::Result<PersistenceReport> {
    let db = Database::connect(database_url)
        .await
        .with_context(|| "cannot connect to the database")?;
    let result = wait_and_check_on(&db, expect, timeout, stall).await;
    let _ = db.close().await;
    result
}

async fn wait_and_check_on(
    db: &DatabaseConnection,
    expect: Expectation,
    timeout: Duration,
    stall: Duration,
) -> anyhow::Result<PersistenceReport> {
    let started = Instant::now();
    let ceiling = expect.events + expect.unknown;
    let mut last = (count_rows(db, expect.run).await?, Instant::now());
    loop {
        let (rows, since) = last;
        let done = if rows >= expect.events {
            // Complete; with unknown outcomes, give stragglers a moment.
            rows >= ceiling || since.elapsed() >= SETTLE
        } else {
            since.elapsed() >= stall
        };
        if done || started.elapsed() >= timeout {
            break;
        }
        tokio::time::sleep(POLL).await;
        let now = count_rows(db, expect.run).await?;
        if now != rows {
            last = (now, Instant::now());
        }
    }
    // Anything arriving after the count looked complete still counts.
    tokio::time::sleep(SETTLE).await;
    let waited = started.elapsed();
    summarise(db, expect, waited).await
}

fn run_filter(run: RunId) -> (String, Vec<Value>) {
    // The range lets the (message_sid, ...) index find the run's rows; LIKE
    // keeps the match exact whatever the collation.
    let low = format!("SM{}", run.as_hex());
    let high = match run.0.checked_add(1) {
        Some(next) => format!("SM{next:08x}"),
        None => "SN".to_owned(),
    };
    (
        "message_sid >= $1 AND message_sid < $2 AND message_sid LIKE $3".to_owned(),
        vec![low.into(), high.into(), run.sid_pattern().into()],
    )
}

async fn count_rows(db: &DatabaseConnection, run: RunId) -> anyhow::Result<u64> {
    let (filter, values) = run_filter(run);
    let sql = format!("SELECT count(*) AS n FROM message_status_events WHERE {filter}");
    scalar_count(db, sql, values).await
}

async fn scalar_count(
    db: &DatabaseConnection,
    sql: String,
    values: Vec<Value>,
) -> anyhow::Result<u64> {
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            values,
        ))
        .await?
        .context("count(*) returned no row")?;
    let n: i64 = row.try_get("", "n")?;
    Ok(u64::try_from(n).unwrap_or(0))
}

async fn summarise(
    db: &DatabaseConnection,
    expect: Expectation,
    waited: Duration,
) -> anyhow::Result<PersistenceReport> {
    let (filter, values) = run_filter(expect.run);
    let rows = scalar_count(
        db,
        format!("SELECT count(*) AS n FROM message_status_events WHERE {filter}"),
        values.clone(),
    )
    .await?;
    let messages = scalar_count(
        db,
        format!("SELECT count(*) AS n FROM messages WHERE {filter}"),
        values.clone(),
    )
    .await?;

    let span = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!(
                "SELECT extract(epoch FROM min(received_at))::float8 AS first_received, \
                        extract(epoch FROM min(persisted_at))::float8 AS first_persisted, \
                        extract(epoch FROM max(persisted_at))::float8 AS last_persisted \
                 FROM message_status_events WHERE {filter}"
            ),
            values.clone(),
        ))
        .await?
        .context("aggregate returned no row")?;
    let first_received: Option<f64> = span.try_get("", "first_received")?;
    let first_persisted: Option<f64> = span.try_get("", "first_persisted")?;
    let last_persisted: Option<f64> = span.try_get("", "last_persisted")?;
    // Rates over less than a tenth of a second (a batch or two) mean nothing.
    let per_second = |from: Option<f64>| match (from, last_persisted) {
        (Some(from), Some(to)) if to - from >= 0.1 => Some(rows as f64 / (to - from)),
        _ => None,
    };

    let lags = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!(
                "SELECT (extract(epoch FROM persisted_at - received_at) * 1000000)::int8 AS lag_us \
                 FROM message_status_events WHERE {filter}"
            ),
            values,
        ))
        .await?;
    let mut histogram = new_histogram();
    for row in &lags {
        let lag: i64 = row.try_get("", "lag_us")?;
        histogram.saturating_record(u64::try_from(lag).unwrap_or(0).max(1));
    }

    let ceiling = expect.events + expect.unknown;
    Ok(PersistenceReport {
        run_id: expect.run.as_hex(),
        expected_rows: expect.events,
        rows,
        rows_match: rows >= expect.events && rows <= ceiling,
        unknown_outcome_events: expect.unknown,
        expected_messages: expect.messages,
        messages,
        // Unknown outcomes may add messages too, never more than events.
        messages_match: messages >= expect.messages && messages <= expect.messages + expect.unknown,
        waited_s: waited.as_secs_f64(),
        end_to_end_per_s: per_second(first_received),
        persisted_per_s: per_second(first_persisted),
        lag_ms: Percentiles::from_micros(&histogram),
    })
}
