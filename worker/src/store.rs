//! Writing a batch of callbacks to Postgres in one transaction: new events
//! into the append-only history (duplicates skipped by their dedup key), then
//! their effect on each message's current state.

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, Statement,
    TransactionTrait, Value,
};
use std::collections::HashSet;

use crate::decode::DecodedCallback;
use crate::projection::{fold, MessageDelta};

/// What a committed batch did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    pub inserted: usize,
    pub duplicates: usize,
}

const EVENT_COLUMNS: usize = 11;
const MESSAGE_COLUMNS: usize = 13;
/// Rows per statement, far below Postgres's 65,535 bind parameters.
const ROWS_PER_STATEMENT: usize = 1000;

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

    let transaction = db.begin().await?;
    let mut inserted_keys = HashSet::with_capacity(unique.len());
    for chunk in unique.chunks(ROWS_PER_STATEMENT) {
        inserted_keys.extend(insert_events(&transaction, chunk).await?);
    }
    let inserted: Vec<&DecodedCallback> = unique
        .into_iter()
        .filter(|event| inserted_keys.contains(&event.dedup_key))
        .collect();
    let deltas = fold(inserted.iter().copied());
    for chunk in deltas.chunks(ROWS_PER_STATEMENT) {
        upsert_messages(&transaction, chunk).await?;
    }
    transaction.commit().await?;
    Ok(BatchOutcome {
        inserted: inserted.len(),
        duplicates: events.len() - inserted.len(),
    })
}

/// Inserts events, skipping known dedup keys; returns the keys inserted.
async fn insert_events(
    transaction: &DatabaseTransaction,
    events: &[&DecodedCallback],
) -> Result<Vec<String>, DbErr> {
    let mut sql = String::from(
        "INSERT INTO message_status_events \
         (dedup_key, message_sid, status, status_rank, error_code, raw_payload, content_type, \
          idempotency_token, request_id, received_at, persisted_at) VALUES ",
    );
    let mut values: Vec<Value> = Vec::with_capacity(events.len() * EVENT_COLUMNS);
    let persisted_at = chrono::Utc::now();
    for (row, event) in events.iter().enumerate() {
        push_placeholders(&mut sql, row, EVENT_COLUMNS);
        let callback = &event.callback;
        values.extend([
            event.dedup_key.clone().into(),
            callback.message_sid.as_str().to_owned().into(),
            callback.status.as_str().to_owned().into(),
            callback.status.rank().into(),
            callback.error_code.into(),
            callback.params.to_json().into(),
            event.envelope.body_kind.content_type().to_owned().into(),
            event.envelope.idempotency_token.clone().into(),
            event.envelope.request_id.clone().into(),
            event.envelope.received_at.into(),
            persisted_at.into(),
        ]);
    }
    sql.push_str(" ON CONFLICT (dedup_key) DO NOTHING RETURNING dedup_key");
    let rows = transaction
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            values,
        ))
        .await?;
    rows.iter()
        .map(|row| row.try_get::<String>("", "dedup_key"))
        .collect()
}

/// Applies deltas so that the status only ever moves to a higher precedence,
/// decided in SQL under the row lock, so concurrent workers cannot race it
/// backwards.
async fn upsert_messages(
    transaction: &DatabaseTransaction,
    deltas: &[MessageDelta],
) -> Result<(), DbErr> {
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
    sql.push_str(
        " ON CONFLICT (message_sid) DO UPDATE SET \
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
           updated_at = now()",
    );
    transaction
        .execute_raw(Statement::from_sql_and_values(
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
    let transaction = db.begin().await?;
    upsert_messages(&transaction, std::slice::from_ref(&delta)).await?;
    transaction.commit().await
}

/// Whether the database answers at all (a failed batch is then retried;
/// otherwise the worker pauses until it does).
pub async fn database_reachable(db: &DatabaseConnection) -> bool {
    matches!(
        tokio::time::timeout(std::time::Duration::from_secs(2), db.ping()).await,
        Ok(Ok(()))
    )
}
