//! Writing status events to Postgres: a batch of callbacks atomically (new
//! events into the append-only history, duplicates skipped by their dedup
//! key, then their effect on each message's current state), and a message
//! we sent. What the statements do is `projection`'s; which deliveries are
//! the same event is `dedup`'s; which errors are outages is `outage`'s.

pub mod database;
pub mod dedup;
pub mod nodelay;
pub mod outage;
pub mod outcomes;
pub mod projection;

use chrono::Utc;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement};
use std::collections::HashSet;

use crate::decode::DecodedCallback;
use outcomes::OutcomeReport;
use projection::{EventRow, SentMessage, RECORD_MESSAGE, STORE_BATCH};

/// What a committed batch did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BatchOutcome {
    pub inserted: usize,
    pub duplicates: usize,
    /// Its effect on the delivery report.
    pub report: OutcomeReport,
}

/// Persists `events` atomically: on error nothing of the batch is written.
pub async fn persist_batch(
    db: &DatabaseConnection,
    events: &[DecodedCallback],
) -> Result<BatchOutcome, DbErr> {
    // One row per dedup key, in key order (a fixed lock order across workers).
    let mut unique: Vec<&DecodedCallback> = Vec::with_capacity(events.len());
    let mut seen = HashSet::with_capacity(events.len());
    for event in events {
        if seen.insert(event.dedup_key.as_str()) {
            unique.push(event);
        }
    }
    unique.sort_by(|a, b| a.dedup_key.cmp(&b.dedup_key));

    let rows: Vec<EventRow> = unique.iter().map(|event| EventRow::new(event)).collect();
    let (inserted, report) = run_batch_statement(db, &STORE_BATCH, &rows).await?;
    Ok(BatchOutcome {
        inserted,
        duplicates: events.len() - inserted,
        report,
    })
}

/// Runs a statement that takes a batch of event rows as `$1` and the
/// persist time as `$2`, and returns how many it inserted and, when the
/// statement reports it (`STORE_BATCH` does), its effect on the delivery report.
pub async fn run_batch_statement(
    db: &DatabaseConnection,
    statement: &str,
    rows: &[EventRow<'_>],
) -> Result<(usize, OutcomeReport), DbErr> {
    let batch = serde_json::to_string(rows).map_err(|e| DbErr::Custom(e.to_string()))?;
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            statement,
            [batch.into(), Utc::now().into()],
        ))
        .await?
        .ok_or_else(|| DbErr::Custom("the batch statement returned no row".into()))?;
    let inserted: i64 = row.try_get("", "inserted")?;
    let report = OutcomeReport::from_row(&row)?;
    Ok((usize::try_from(inserted).unwrap_or(0), report))
}

/// Records a message we just sent with the status Twilio answered (Twilio
/// sends no callback for the initial status). Same precedence rules, so a
/// callback that got here first is not overwritten; no event is counted.
pub async fn record_sent_message(
    db: &DatabaseConnection,
    message: SentMessage<'_>,
) -> Result<(), DbErr> {
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        RECORD_MESSAGE.as_str(),
        message.values(),
    ))
    .await?;
    Ok(())
}

/// Whether the database answers at all (a failed batch is then retried;
/// otherwise the worker pauses until it does).
pub async fn database_reachable(db: &DatabaseConnection) -> bool {
    matches!(
        tokio::time::timeout(std::time::Duration::from_secs(2), db.ping()).await,
        Ok(Ok(()))
    )
}
