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

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement};
use serde::Serialize;
use std::collections::HashSet;

use twilio_protocol::status::{outcomes_contradict, MessageStatus};

use crate::decode::DecodedCallback;

/// What a committed batch did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    pub inserted: usize,
    pub duplicates: usize,
}

/// How `messages` takes a change: the status only ever moves to a higher
/// precedence, decided in SQL under the row lock, so concurrent workers
/// cannot race it backwards. (A macro so `concat!` can build statements.)
macro_rules! message_upsert {
    () => {
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
   updated_at = now()"
    };
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

    let rows: Vec<BatchRow> = unique.iter().map(|event| BatchRow::new(event)).collect();
    let batch = serde_json::to_string(&rows).map_err(|e| DbErr::Custom(e.to_string()))?;
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            STORE_BATCH,
            [batch.into(), chrono::Utc::now().into()],
        ))
        .await?
        .ok_or_else(|| DbErr::Custom("the batch statement returned no row".into()))?;
    let inserted: i64 = row.try_get("", "inserted")?;
    let inserted = usize::try_from(inserted).unwrap_or(0);
    Ok(BatchOutcome {
        inserted,
        duplicates: events.len() - inserted,
    })
}

/// One event as the batch statement reads it (`jsonb_to_recordset`).
#[derive(Serialize)]
struct BatchRow<'a> {
    dedup_key: &'a str,
    message_sid: &'a str,
    status: &'a str,
    status_rank: i16,
    status_precedence: i16,
    outcome_bit: i16,
    error_code: Option<i32>,
    raw_payload: serde_json::Value,
    content_type: &'static str,
    idempotency_token: Option<&'a str>,
    request_id: &'a str,
    received_at: DateTime<Utc>,
    account_sid: Option<&'a str>,
    from_address: Option<&'a str>,
    to_address: Option<&'a str>,
}

impl<'a> BatchRow<'a> {
    fn new(event: &'a DecodedCallback) -> Self {
        let callback = &event.callback;
        let status = &callback.status;
        Self {
            dedup_key: &event.dedup_key,
            message_sid: callback.message_sid.as_str(),
            status: status.as_str(),
            status_rank: status.rank(),
            status_precedence: status.precedence(),
            outcome_bit: status.terminal_outcome_bit(),
            error_code: callback.error_code,
            raw_payload: callback.params.to_json(),
            content_type: event.envelope.body_kind.content_type(),
            idempotency_token: event.envelope.idempotency_token.as_deref(),
            request_id: &event.envelope.request_id,
            received_at: event.envelope.received_at,
            account_sid: callback.param("AccountSid"),
            from_address: callback.param("From"),
            to_address: callback.param("To"),
        }
    }
}

/// The whole batch in one statement, so one round trip and its own
/// transaction, with a text that never changes (prepared once per connection,
/// whatever the batch size). `$1` is the batch as a JSON array of `BatchRow`,
/// `$2` the time it is persisted. Within a message the winning event is the
/// highest precedence, ties broken by dedup key; addresses come from the first
/// event that has them.
const STORE_BATCH: &str = concat!(
    "WITH batch AS ( \
       SELECT * FROM jsonb_to_recordset($1::text::jsonb) AS b( \
         dedup_key text, message_sid text, status text, status_rank smallint, \
         status_precedence smallint, outcome_bit smallint, error_code integer, \
         raw_payload jsonb, content_type text, idempotency_token text, request_id text, \
         received_at timestamptz, account_sid text, from_address text, to_address text) \
     ), inserted AS ( \
       INSERT INTO message_status_events \
         (dedup_key, message_sid, status, status_rank, error_code, raw_payload, \
          content_type, idempotency_token, request_id, received_at, persisted_at) \
       SELECT dedup_key, message_sid, status, status_rank, error_code, raw_payload, \
              content_type, idempotency_token, request_id, received_at, $2 \
       FROM batch ORDER BY dedup_key \
       ON CONFLICT (dedup_key) DO NOTHING \
       RETURNING dedup_key \
     ), deltas AS ( \
       SELECT b.message_sid, \
         (array_agg(b.status ORDER BY b.status_precedence DESC, b.dedup_key))[1] AS status, \
         (array_agg(b.status_rank ORDER BY b.status_precedence DESC, b.dedup_key))[1] \
           AS status_rank, \
         max(b.status_precedence) AS status_precedence, \
         (array_agg(b.error_code ORDER BY b.status_precedence DESC, b.dedup_key))[1] \
           AS error_code, \
         (array_agg(b.account_sid ORDER BY b.dedup_key) \
           FILTER (WHERE b.account_sid IS NOT NULL))[1] AS account_sid, \
         (array_agg(b.from_address ORDER BY b.dedup_key) \
           FILTER (WHERE b.from_address IS NOT NULL))[1] AS from_address, \
         (array_agg(b.to_address ORDER BY b.dedup_key) \
           FILTER (WHERE b.to_address IS NOT NULL))[1] AS to_address, \
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
       FROM deltas ORDER BY message_sid",
    message_upsert!(),
    " RETURNING 1 \
     ) \
     SELECT (SELECT count(*) FROM inserted) AS inserted"
);

/// Inserts or updates one message's row with no event behind it, by the same
/// rules as a batch.
const RECORD_MESSAGE: &str = concat!(
    "INSERT INTO messages AS m \
       (message_sid, status, status_rank, status_precedence, error_code, account_sid, \
        from_address, to_address, first_seen_at, last_seen_at, event_count, \
        terminal_outcomes, conflicting_outcomes) \
     VALUES ($1, $2, $3, $4, NULL, $5, $6, $7, $8, $8, 0, $9, $10)",
    message_upsert!()
);

/// Records a message we just sent with the status Twilio answered (Twilio
/// sends no callback for the initial status). Same precedence rules, so a
/// callback that got here first is not overwritten; no event is counted.
pub async fn record_sent_message(
    db: &DatabaseConnection,
    message_sid: &str,
    status: MessageStatus,
    account_sid: Option<String>,
    from_address: Option<String>,
    to_address: Option<String>,
) -> Result<(), DbErr> {
    let outcome = status.terminal_outcome_bit();
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        RECORD_MESSAGE,
        [
            message_sid.into(),
            status.as_str().into(),
            status.rank().into(),
            status.precedence().into(),
            account_sid.into(),
            from_address.into(),
            to_address.into(),
            Utc::now().into(),
            outcome.into(),
            outcomes_contradict(outcome).into(),
        ],
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
