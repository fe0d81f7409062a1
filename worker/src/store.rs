//! Writing a batch of callbacks to Postgres atomically: new events into the
//! append-only history (duplicates skipped by their dedup key), then their
//! effect on each message's current state.
//!
//! A batch is one SQL statement, so it is one round trip and its own
//! transaction: the events are inserted in a data-modifying CTE, and only the
//! rows that insert returns are folded per message and upserted. Folding and
//! upsert rules (highest precedence wins, counts add up, outcome bits OR
//! together, first known addresses kept) are commutative, so the result does
//! not depend on arrival order or on how callbacks were split into batches.

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement, TransactionTrait, Value,
};
use std::collections::HashSet;

use crate::decode::DecodedCallback;
use crate::projection::MessageDelta;

/// What a committed batch did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    pub inserted: usize,
    pub duplicates: usize,
}

/// Columns of one event in the statement's `batch` VALUES list.
const BATCH_COLUMNS: usize = 15;
const MESSAGE_COLUMNS: usize = 13;
/// Rows per statement, far below Postgres's 65,535 bind parameters.
const ROWS_PER_STATEMENT: usize = 1000;

/// How `messages` takes a change: the status only ever moves to a higher
/// precedence, decided in SQL under the row lock, so concurrent workers
/// cannot race it backwards.
const MESSAGE_UPSERT: &str = " ON CONFLICT (message_sid) DO UPDATE SET \
   status = CASE WHEN EXCLUDED.status_precedence > m.status_precedence \
                 THEN EXCLUDED.status ELSE m.status END, \
   status_rank = CASE WHEN EXCLUDED.status_precedence > m.status_precedence \
                      THEN EXCLUDED.status_rank ELSE m.status_rank END, \
   error_code = CASE WHEN EXCLUDED.status_precedence > m.status_precedence \
                     THEN EXCLUDED.error_code ELSE m.error_code END, \
   status_precedence = GREATEST(m.status_precedence, EXCLUDED.status_precedence), \
   account_sid = COALESCE(m.account_sid, EXCLUDED.account_sid), \
   from_address = COALESCE(m.from_address, EXCLUDED.from_address), \
   to_address = COALESCE(m.to_address, EXCLUDED.to_address), \
   first_seen_at = LEAST(m.first_seen_at, EXCLUDED.first_seen_at), \
   last_seen_at = GREATEST(m.last_seen_at, EXCLUDED.last_seen_at), \
   event_count = m.event_count + EXCLUDED.event_count, \
   terminal_outcomes = m.terminal_outcomes | EXCLUDED.terminal_outcomes, \
   conflicting_outcomes = ((m.terminal_outcomes | EXCLUDED.terminal_outcomes) \
                           & ((m.terminal_outcomes | EXCLUDED.terminal_outcomes) - 1)) <> 0, \
   updated_at = now()";

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

    let inserted = if unique.len() <= ROWS_PER_STATEMENT {
        store_events(db, &unique).await?
    } else {
        // Only when WORKER_MAX_BATCH is set above one statement's worth.
        let transaction = db.begin().await?;
        let mut inserted = 0;
        for chunk in unique.chunks(ROWS_PER_STATEMENT) {
            inserted += store_events(&transaction, chunk).await?;
        }
        transaction.commit().await?;
        inserted
    };
    Ok(BatchOutcome {
        inserted,
        duplicates: events.len() - inserted,
    })
}

/// One statement: insert the events, fold the ones that were new per
/// message, upsert those changes; returns how many events were new.
async fn store_events(
    db: &impl ConnectionTrait,
    events: &[&DecodedCallback],
) -> Result<usize, DbErr> {
    let mut sql = String::from(
        "WITH batch (dedup_key, message_sid, status, status_rank, status_precedence, \
                     outcome_bit, error_code, raw_payload, content_type, idempotency_token, \
                     request_id, received_at, account_sid, from_address, to_address) AS (VALUES ",
    );
    let mut values: Vec<Value> = Vec::with_capacity(events.len() * BATCH_COLUMNS + 1);
    for (row, event) in events.iter().enumerate() {
        push_placeholders(&mut sql, row, BATCH_COLUMNS);
        let callback = &event.callback;
        let status = callback.status;
        let param = |name: &str| callback.param(name).map(str::to_owned);
        values.extend([
            event.dedup_key.clone().into(),
            callback.message_sid.as_str().to_owned().into(),
            status.as_str().to_owned().into(),
            status.rank().into(),
            status.precedence().into(),
            status.terminal_outcome_bit().into(),
            callback.error_code.into(),
            callback.params.to_json().into(),
            event.envelope.body_kind.content_type().to_owned().into(),
            event.envelope.idempotency_token.clone().into(),
            event.envelope.request_id.clone().into(),
            event.envelope.received_at.into(),
            param("AccountSid").into(),
            param("From").into(),
            param("To").into(),
        ]);
    }
    values.push(chrono::Utc::now().into());
    let persisted_at = values.len();
    // Within a message, the winning event is the highest precedence, ties
    // broken by dedup key; addresses come from the first event that has them.
    let winner = "ORDER BY b.status_precedence DESC, b.dedup_key";
    let first_known = |column: &str| {
        format!(
            "(array_agg(b.{column} ORDER BY b.dedup_key) \
              FILTER (WHERE b.{column} IS NOT NULL))[1] AS {column}"
        )
    };
    sql.push_str(&format!(
        "), inserted AS ( \
           INSERT INTO message_status_events \
             (dedup_key, message_sid, status, status_rank, error_code, raw_payload, \
              content_type, idempotency_token, request_id, received_at, persisted_at) \
           SELECT dedup_key, message_sid, status, status_rank, error_code, raw_payload, \
                  content_type, idempotency_token, request_id, received_at, ${persisted_at} \
           FROM batch ORDER BY dedup_key \
           ON CONFLICT (dedup_key) DO NOTHING \
           RETURNING dedup_key \
         ), deltas AS ( \
           SELECT b.message_sid, \
                  (array_agg(b.status {winner}))[1] AS status, \
                  (array_agg(b.status_rank {winner}))[1] AS status_rank, \
                  max(b.status_precedence) AS status_precedence, \
                  (array_agg(b.error_code {winner}))[1] AS error_code, \
                  {account}, {from}, {to}, \
                  min(b.received_at) AS first_seen_at, \
                  max(b.received_at) AS last_seen_at, \
                  count(*)::integer AS event_count, \
                  bit_or(b.outcome_bit) AS terminal_outcomes \
           FROM batch b JOIN inserted USING (dedup_key) \
           GROUP BY b.message_sid \
         ), upserted AS ( \
           INSERT INTO messages AS m \
             (message_sid, status, status_rank, status_precedence, error_code, account_sid, \
              from_address, to_address, first_seen_at, last_seen_at, event_count, \
              terminal_outcomes, conflicting_outcomes) \
           SELECT message_sid, status, status_rank, status_precedence, error_code, account_sid, \
                  from_address, to_address, first_seen_at, last_seen_at, event_count, \
                  terminal_outcomes, (terminal_outcomes & (terminal_outcomes - 1)) <> 0 \
           FROM deltas ORDER BY message_sid \
           {MESSAGE_UPSERT} \
           RETURNING 1 \
         ) \
         SELECT (SELECT count(*) FROM inserted) AS inserted",
        account = first_known("account_sid"),
        from = first_known("from_address"),
        to = first_known("to_address"),
    ));
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            values,
        ))
        .await?
        .ok_or_else(|| DbErr::Custom("the batch statement returned no row".into()))?;
    let inserted: i64 = row.try_get("", "inserted")?;
    Ok(usize::try_from(inserted).unwrap_or(0))
}

/// Applies changes to `messages` directly (no event): used for the status
/// Twilio answers when we send a message.
async fn upsert_messages(db: &impl ConnectionTrait, deltas: &[MessageDelta]) -> Result<(), DbErr> {
    let mut sql = String::from(
        "INSERT INTO messages AS m \
         (message_sid, status, status_rank, status_precedence, error_code, account_sid, \
          from_address, to_address, first_seen_at, last_seen_at, event_count, \
          terminal_outcomes, conflicting_outcomes) VALUES ",
    );
    let mut values: Vec<Value> = Vec::with_capacity(deltas.len() * MESSAGE_COLUMNS);
    for (row, delta) in deltas.iter().enumerate() {
        push_placeholders(&mut sql, row, MESSAGE_COLUMNS);
        values.extend([
            delta.message_sid.clone().into(),
            delta.status.to_owned().into(),
            delta.status_rank.into(),
            delta.status_precedence.into(),
            delta.error_code.into(),
            delta.account_sid.clone().into(),
            delta.from_address.clone().into(),
            delta.to_address.clone().into(),
            delta.first_seen_at.into(),
            delta.last_seen_at.into(),
            delta.event_count.into(),
            delta.terminal_outcomes.into(),
            delta.conflicting_outcomes().into(),
        ]);
    }
    sql.push_str(MESSAGE_UPSERT);
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        sql,
        values,
    ))
    .await?;
    Ok(())
}

fn push_placeholders(sql: &mut String, row: usize, columns: usize) {
    if row > 0 {
        sql.push(',');
    }
    sql.push('(');
    for column in 0..columns {
        if column > 0 {
            sql.push(',');
        }
        sql.push('$');
        sql.push_str(&(row * columns + column + 1).to_string());
    }
    sql.push(')');
}

/// Records a message we just sent with the status Twilio answered (Twilio
/// sends no callback for the initial status). Same precedence rules, so a
/// callback that got here first is not overwritten; no event is counted.
pub async fn record_sent_message(
    db: &DatabaseConnection,
    message_sid: &str,
    status: shared::status::MessageStatus,
    account_sid: Option<String>,
    from_address: Option<String>,
    to_address: Option<String>,
) -> Result<(), DbErr> {
    let now = chrono::Utc::now();
    let delta = MessageDelta {
        message_sid: message_sid.to_owned(),
        status: status.as_str(),
        status_rank: status.rank(),
        status_precedence: status.precedence(),
        error_code: None,
        account_sid,
        from_address,
        to_address,
        first_seen_at: now,
        last_seen_at: now,
        event_count: 0,
        terminal_outcomes: status.terminal_outcome_bit(),
    };
    upsert_messages(db, std::slice::from_ref(&delta)).await
}

/// Whether the database answers at all (a failed batch is then retried;
/// otherwise the worker pauses until it does).
pub async fn database_reachable(db: &DatabaseConnection) -> bool {
    matches!(
        tokio::time::timeout(std::time::Duration::from_secs(2), db.ping()).await,
        Ok(Ok(()))
    )
}
