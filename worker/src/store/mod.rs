//! Writing status events to Postgres: a batch of callbacks atomically (new
//! events into the append-only history, duplicates skipped by their dedup
//! key, then their effect on each message's current state), and a message
//! we sent. What the statements do is `projection`'s; which deliveries are
//! the same event is `dedup`'s; which errors are outages is `outage`'s.

pub mod database;
pub mod dedup;
pub mod outage;
pub mod outcomes;
pub mod partitions;
pub mod projection;
pub mod socket_options;

use chrono::Utc;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, IsolationLevel, Statement,
    TransactionTrait,
};
use std::collections::HashSet;

use crate::decode::DecodedCallback;
use outcomes::OutcomeReport;
use projection::{EventRow, SentMessage, RECORD_MESSAGE, STORE_BATCH};
use serde::Serialize;

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
    // One row per dedup key (the key covers the MessageSid).
    let mut unique: Vec<&DecodedCallback> = Vec::with_capacity(events.len());
    let mut seen = HashSet::with_capacity(events.len());
    for event in events {
        if seen.insert(event.dedup_key.as_str()) {
            unique.push(event);
        }
    }
    let rows: Vec<EventRow> = unique.iter().map(|event| EventRow::new(event)).collect();
    let (inserted, report) = write_rows(db, &rows).await?;
    Ok(BatchOutcome {
        inserted,
        duplicates: events.len() - inserted,
        report,
    })
}

/// Writes event rows with `STORE_BATCH` (callbacks and reconciled statuses
/// alike), in its own transaction:
/// - rows near a midnight first take a transaction lock per key, in key
///   order, so two copies of one event written at once on both sides of
///   midnight (two partitions, two unique indexes) wait for each other, and
///   the second one's statement, begun after the wait, sees the first;
/// - a day with no partition yet (an old event replayed, a late
///   reconciliation, a clock ahead) gets one, and the batch runs again.
pub async fn write_rows(
    db: &DatabaseConnection,
    rows: &[EventRow<'_>],
) -> Result<(usize, OutcomeReport), DbErr> {
    // In (message, key) order: a fixed lock order across workers.
    let mut sorted: Vec<&EventRow> = rows.iter().collect();
    sorted.sort_by(|a, b| (a.message_sid(), a.dedup_key()).cmp(&(b.message_sid(), b.dedup_key())));
    match write_rows_once(db, &sorted).await {
        Err(error) if partitions::is_missing_partition(&error) => {
            let days: Vec<_> = rows.iter().map(|row| row.received_at()).collect();
            partitions::ensure_days_of(db, &days).await?;
            write_rows_once(db, &sorted).await
        }
        result => result,
    }
}

async fn write_rows_once(
    db: &DatabaseConnection,
    sorted: &[&EventRow<'_>],
) -> Result<(usize, OutcomeReport), DbErr> {
    let mut locks: Vec<i64> = sorted
        .iter()
        .filter(|row| row.near_midnight())
        .map(|row| lock_key(row.dedup_key()))
        .collect();
    if locks.is_empty() {
        return run_batch_statement(db, &STORE_BATCH, sorted).await;
    }
    locks.sort_unstable();
    locks.dedup();
    // READ COMMITTED whatever the server's default: the store statement must
    // take its snapshot after the locks are granted, to see a copy committed
    // while it waited.
    let transaction = db
        .begin_with_config(Some(IsolationLevel::ReadCommitted), None)
        .await?;
    transaction
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock(k) \
             FROM unnest(string_to_array($1, ',')::bigint[]) AS k ORDER BY k",
            [locks
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",")
                .into()],
        ))
        .await?;
    let result = run_batch_statement(&transaction, &STORE_BATCH, sorted).await?;
    transaction.commit().await?;
    Ok(result)
}

/// A transaction lock id for a key: its first 8 bytes (a hash already).
fn lock_key(hex_key: &str) -> i64 {
    let prefix = hex_key.get(..16).unwrap_or(hex_key);
    u64::from_str_radix(prefix, 16).map_or(0, |bits| bits as i64)
}

/// Runs a statement that takes a batch of event rows as `$1` and the
/// persist time as `$2`, and returns how many it inserted and, when the
/// statement reports it (`STORE_BATCH` does), its effect on the delivery report.
pub async fn run_batch_statement<R: Serialize>(
    db: &impl ConnectionTrait,
    statement: &str,
    rows: &[R],
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
