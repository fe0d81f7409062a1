//! The store statement's input, built once in its final form: a batch of
//! events as one typed Postgres array per column (`$1` to `$18`, read back
//! row by row by `projection::RECEIVED`'s `unnest`), the persist time as
//! `$19` and, for `STORE_BATCH`, whether the change feed is on as `$20`. Keys travel as bytes, request ids as UUIDs, times as timestamps;
//! only the payloads are JSON text (jsonb's own wire form), each serialised
//! straight from the callback's parameters. Against the one JSON document
//! for `jsonb_to_recordset` it replaced: 107.4 against 94.0 batches/s in
//! bench/store-statement (1.14, six rounds, each faster; the arrays pass
//! through their text form there), and 1.49 times the rows/s in `loadgen
//! ceiling-db`, which includes building the input (debug builds, three
//! rounds; 2026-12-06).

use chrono::Utc;
use sea_orm::sqlx::postgres::{PgArguments, PgRow};
use sea_orm::sqlx::query::Query;
use sea_orm::sqlx::types::Json;
use sea_orm::sqlx::{self, PgExecutor, Postgres, Row};
use sea_orm::DbErr;

use super::event::EventRow;
use super::outage::from_sqlx;
use crate::feed::ChangeFeed;

/// Runs `statement` (one that reads `projection::RECEIVED`) over `rows`, in
/// their order, with the persist time now and, when it takes one, the
/// change feed's switch; returns its one row.
pub async fn run_batch_statement<'e>(
    executor: impl PgExecutor<'e>,
    statement: &'static str,
    rows: &[&EventRow<'_>],
    feed: Option<ChangeFeed>,
) -> Result<PgRow, DbErr> {
    let query = bind(sqlx::query(statement), rows).bind(Utc::now());
    let query = match feed {
        Some(feed) => query.bind(feed.is_on()),
        None => query,
    };
    query.fetch_one(executor).await.map_err(from_sqlx)
}

/// The `changes` column of a statement's row: how many changes it recorded
/// for the feed.
pub fn changes(row: &PgRow) -> Result<usize, DbErr> {
    let changes: i64 = row.try_get("changes").map_err(from_sqlx)?;
    Ok(usize::try_from(changes).unwrap_or(0))
}

/// The `inserted` column of a batch statement's row: how many events it added.
pub fn inserted(row: &PgRow) -> Result<usize, DbErr> {
    let inserted: i64 = row.try_get("inserted").map_err(from_sqlx)?;
    Ok(usize::try_from(inserted).unwrap_or(0))
}

/// Binds the 18 columns of `rows`, in `RECEIVED`'s order.
fn bind<'q>(
    query: Query<'q, Postgres, PgArguments>,
    rows: &[&EventRow<'q>],
) -> Query<'q, Postgres, PgArguments> {
    fn column<'q, T>(rows: &[&EventRow<'q>], value: impl Fn(&EventRow<'q>) -> T) -> Vec<T> {
        rows.iter().map(|row| value(row)).collect()
    }
    query
        .bind(column(rows, |row| *row.dedup_key.as_bytes()))
        .bind(column(rows, |row| row.message_sid))
        .bind(column(rows, |row| row.status.as_str()))
        .bind(column(rows, |row| row.status.rank()))
        .bind(column(rows, |row| row.status.precedence()))
        .bind(column(rows, |row| row.status.terminal_outcome_bit()))
        .bind(column(rows, |row| row.error_code))
        .bind(column(rows, |row| Json(row.raw_payload)))
        .bind(column(rows, |row| row.json_body))
        .bind(column(rows, |row| row.idempotency_token))
        .bind(column(rows, |row| row.request_id))
        .bind(column(rows, |row| row.received_at))
        .bind(column(rows, EventRow::near_midnight))
        .bind(column(rows, |row| row.account_sid))
        .bind(column(rows, |row| row.from_address))
        .bind(column(rows, |row| row.to_address))
        .bind(column(rows, |row| row.source.as_str()))
        .bind(column(rows, |row| row.traceparent))
}
