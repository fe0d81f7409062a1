//! Writing status events to Postgres: a batch of callbacks atomically (new
//! events into the append-only history, duplicates skipped by their dedup
//! key, then their effect on each message's current state), and a message
//! we sent. What an event is, is `event`'s; what the statements do,
//! `projection`'s; their input, `columns`'; which deliveries are the same
//! event, `dedup`'s; which errors are outages, `outage`'s.

pub mod columns;
pub mod database;
pub mod event;
pub mod outage;
pub mod outcomes;
pub mod partitions;
pub mod projection;
pub mod socket_options;

use sea_orm::sqlx;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement};
use std::collections::HashSet;

use crate::decode::DecodedCallback;
use crate::feed::{self, ChangeFeed};
use columns::{changes, inserted, run_batch_statement};
use event::EventRow;
use outage::from_sqlx;
use outcomes::OutcomeReport;
use projection::{SentMessage, RECORD_MESSAGE, STORE_BATCH};

/// What a committed batch did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BatchOutcome {
    pub inserted: usize,
    pub duplicates: usize,
    /// Changes of status it recorded for the change feed.
    pub changes: usize,
    /// Its effect on the delivery report.
    pub report: OutcomeReport,
}

/// What one run of the store statement wrote.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Written {
    pub inserted: usize,
    pub changes: usize,
    pub report: OutcomeReport,
}

/// Persists `events` atomically: on error nothing of the batch is written.
/// With the feed on, the changes of status it makes go to the outbox in
/// the same transaction.
pub async fn persist_batch(
    db: &DatabaseConnection,
    events: &[DecodedCallback],
    feed: ChangeFeed,
) -> Result<BatchOutcome, DbErr> {
    // One row per dedup key (the key covers the MessageSid).
    let mut unique: Vec<&DecodedCallback> = Vec::with_capacity(events.len());
    let mut seen = HashSet::with_capacity(events.len());
    for event in events {
        if seen.insert(event.dedup_key) {
            unique.push(event);
        }
    }
    let rows: Vec<EventRow> = unique.iter().map(|event| EventRow::new(event)).collect();
    let written = write_rows(db, &rows, feed).await?;
    Ok(BatchOutcome {
        inserted: written.inserted,
        duplicates: events.len() - written.inserted,
        changes: written.changes,
        report: written.report,
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
    feed: ChangeFeed,
) -> Result<Written, DbErr> {
    // In (message, key) order: a fixed lock order across workers.
    let mut sorted: Vec<&EventRow> = rows.iter().collect();
    sorted.sort_by(|a, b| (a.message_sid(), a.dedup_key()).cmp(&(b.message_sid(), b.dedup_key())));
    let written = match write_rows_once(db, &sorted, feed).await {
        Err(error) if partitions::is_missing_partition(&error) => {
            let days: Vec<_> = rows.iter().map(|row| row.received_at()).collect();
            partitions::ensure_days_of(db, &days).await?;
            write_rows_once(db, &sorted, feed).await
        }
        result => result,
    }?;
    if written.changes > 0 {
        feed::changes_recorded();
    }
    Ok(written)
}

async fn write_rows_once(
    db: &DatabaseConnection,
    sorted: &[&EventRow<'_>],
    feed: ChangeFeed,
) -> Result<Written, DbErr> {
    let pool = db.get_postgres_connection_pool();
    let mut locks: Vec<i64> = sorted
        .iter()
        .filter(|row| row.near_midnight())
        .map(|row| row.dedup_key().lock_id())
        .collect();
    if locks.is_empty() {
        return store_batch(pool, sorted, feed).await;
    }
    locks.sort_unstable();
    locks.dedup();
    // READ COMMITTED whatever the server's default: the store statement must
    // take its snapshot after the locks are granted, to see a copy committed
    // while it waited.
    let mut transaction = pool
        .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
        .await
        .map_err(from_sqlx)?;
    sqlx::query("SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k ORDER BY k")
        .bind(locks)
        .execute(&mut *transaction)
        .await
        .map_err(from_sqlx)?;
    let result = store_batch(&mut *transaction, sorted, feed).await?;
    transaction.commit().await.map_err(from_sqlx)?;
    Ok(result)
}

/// Runs `STORE_BATCH`: the events it inserted, the changes it recorded,
/// and its effect on the report.
async fn store_batch<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    sorted: &[&EventRow<'_>],
    feed: ChangeFeed,
) -> Result<Written, DbErr> {
    let row = run_batch_statement(executor, STORE_BATCH.as_str(), sorted, Some(feed)).await?;
    Ok(Written {
        inserted: inserted(&row)?,
        changes: changes(&row)?,
        report: OutcomeReport::from_row(&row)?,
    })
}

/// Records a message we just sent with the status Twilio answered (Twilio
/// sends no callback for the initial status). Same precedence rules, so a
/// callback that got here first is not overwritten; no event is counted.
pub async fn record_sent_message(
    db: &DatabaseConnection,
    message: SentMessage<'_>,
    feed: ChangeFeed,
) -> Result<(), DbErr> {
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            RECORD_MESSAGE.as_str(),
            message.values(feed),
        ))
        .await?;
    let recorded: i64 = match row {
        Some(row) => row.try_get("", "changes")?,
        None => 0,
    };
    if recorded > 0 {
        feed::changes_recorded();
    }
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
