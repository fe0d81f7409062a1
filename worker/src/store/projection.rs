//! The projection: how status events become each message's current state,
//! and the SQL that applies it. Its rules, in one place:
//!
//! - the status only moves to a higher precedence (`MessageStatus::precedence`:
//!   lifecycle rank, then a fixed tie-break), decided in SQL under the row
//!   lock, so concurrent workers cannot race it backwards; unrecognised
//!   statuses rank -1 and never move it;
//! - the error code is the one of the event carrying the current status;
//! - counts add up, terminal-outcome bits OR together, and two different
//!   outcomes (delivered and undelivered, say) flag `conflicting_outcomes`;
//! - the first known account and addresses are kept;
//! - `final_at` is the earliest receipt of a final status (rank 4 or more).
//!
//! Every rule is commutative, and only newly inserted events are folded in,
//! so any arrival order, any batching and any number of workers give the
//! same row.

use chrono::{DateTime, Utc};
use serde::Serialize;
use std::sync::LazyLock;
use twilio_protocol::status::{CallbackStatus, MessageStatus};

use crate::decode::DecodedCallback;

/// One event as the batch statement reads it (`jsonb_to_recordset`).
#[derive(Serialize)]
pub struct EventRow<'a> {
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
    source: &'static str,
}

/// Where an event came from (`message_status_events.source`).
pub const SOURCE_CALLBACK: &str = "callback";
pub const SOURCE_RECONCILIATION: &str = "reconciliation";

impl<'a> EventRow<'a> {
    pub fn new(event: &'a DecodedCallback) -> Self {
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
            source: SOURCE_CALLBACK,
        }
    }

    /// A status learned from Twilio's Messages API: `raw_payload` is the
    /// API's answer, `source` says so.
    pub fn reconciled(event: &'a ReconciledEvent) -> Self {
        let status = &event.status;
        Self {
            dedup_key: &event.dedup_key,
            message_sid: &event.message_sid,
            status: status.as_str(),
            status_rank: status.rank(),
            status_precedence: status.precedence(),
            outcome_bit: status.terminal_outcome_bit(),
            error_code: event.error_code,
            raw_payload: event.api_answer.clone(),
            content_type: "application/json",
            idempotency_token: None,
            request_id: &event.request_id,
            received_at: event.received_at,
            account_sid: event.account_sid.as_deref(),
            from_address: event.from_address.as_deref(),
            to_address: event.to_address.as_deref(),
            source: SOURCE_RECONCILIATION,
        }
    }
}

/// What a reconciliation learned about one message, as an event.
#[derive(Clone, Debug)]
pub struct ReconciledEvent {
    pub dedup_key: String,
    pub message_sid: String,
    pub status: CallbackStatus,
    pub error_code: Option<i32>,
    pub api_answer: serde_json::Value,
    pub request_id: String,
    pub received_at: DateTime<Utc>,
    pub account_sid: Option<String>,
    pub from_address: Option<String>,
    pub to_address: Option<String>,
}

/// A message we just sent, with the status Twilio answered: the inputs of
/// `RECORD_MESSAGE`, in parameter order.
pub struct SentMessage<'a> {
    pub message_sid: &'a str,
    pub status: MessageStatus,
    pub account_sid: Option<String>,
    pub from_address: Option<String>,
    pub to_address: Option<String>,
    pub seen_at: DateTime<Utc>,
}

impl SentMessage<'_> {
    pub fn values(self) -> Vec<sea_orm::Value> {
        vec![
            self.message_sid.into(),
            self.status.as_str().into(),
            self.status.rank().into(),
            self.status.precedence().into(),
            self.status.terminal_outcome_bit().into(),
            self.account_sid.into(),
            self.from_address.into(),
            self.to_address.into(),
            self.seen_at.into(),
        ]
    }
}

/// Applies `deltas` (one row per message: its winning status, counts and
/// outcome bits) to `messages` by the rules above. Shared by both
/// statements, so the rules are written once.
const UPSERT_MESSAGES_FROM_DELTAS: &str = "
    INSERT INTO messages AS m
      (message_sid, status, status_rank, status_precedence, error_code, account_sid,
       from_address, to_address, first_seen_at, last_seen_at, event_count,
       terminal_outcomes, conflicting_outcomes, final_at)
    SELECT message_sid, status, status_rank, status_precedence, error_code, account_sid,
           from_address, to_address, first_seen_at, last_seen_at, event_count,
           terminal_outcomes, (terminal_outcomes & (terminal_outcomes - 1)) <> 0, final_at
    FROM deltas ORDER BY message_sid
    ON CONFLICT (message_sid) DO UPDATE SET
      status = CASE WHEN EXCLUDED.status_precedence > m.status_precedence
                    THEN EXCLUDED.status ELSE m.status END,
      status_rank = CASE WHEN EXCLUDED.status_precedence > m.status_precedence
                         THEN EXCLUDED.status_rank ELSE m.status_rank END,
      error_code = CASE WHEN EXCLUDED.status_precedence > m.status_precedence
                        THEN EXCLUDED.error_code ELSE m.error_code END,
      status_precedence = GREATEST(m.status_precedence, EXCLUDED.status_precedence),
      account_sid = COALESCE(m.account_sid, EXCLUDED.account_sid),
      from_address = COALESCE(m.from_address, EXCLUDED.from_address),
      to_address = COALESCE(m.to_address, EXCLUDED.to_address),
      first_seen_at = LEAST(m.first_seen_at, EXCLUDED.first_seen_at),
      last_seen_at = GREATEST(m.last_seen_at, EXCLUDED.last_seen_at),
      event_count = m.event_count + EXCLUDED.event_count,
      terminal_outcomes = m.terminal_outcomes | EXCLUDED.terminal_outcomes,
      conflicting_outcomes = ((m.terminal_outcomes | EXCLUDED.terminal_outcomes)
                              & ((m.terminal_outcomes | EXCLUDED.terminal_outcomes) - 1)) <> 0,
      -- A row final before final_at existed keeps NULL: its time is unknown.
      final_at = CASE WHEN m.final_at IS NULL AND m.status_rank >= 4 THEN NULL
                      ELSE LEAST(m.final_at, EXCLUDED.final_at) END,
      updated_at = now()";

/// The columns of an event row, as `$1` (a JSON array of `EventRow`) holds them.
const EVENT_ROWS: &str = "jsonb_to_recordset($1::text::jsonb) AS b(
      dedup_key text, message_sid text, status text, status_rank smallint,
      status_precedence smallint, outcome_bit smallint, error_code integer,
      raw_payload jsonb, content_type text, idempotency_token text, request_id text,
      received_at timestamptz, account_sid text, from_address text, to_address text,
      source text)";

/// Inserts a batch of events into the history, skipping known dedup keys
/// (in key order: a fixed lock order across workers), then folds only the
/// rows it inserted per message and applies them: one statement, so one
/// round trip and its own transaction, with a text that never changes
/// (prepared once per connection, whatever the batch size). `$1` is the
/// batch, `$2` the time it is persisted. Within a message the winning event
/// is the highest precedence, ties broken by dedup key; addresses come from
/// the first event that has them. Returns the number of events inserted,
/// and what the batch did to the delivery report (`OUTCOME_REPORT`).
pub static STORE_BATCH: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH batch AS (
           SELECT * FROM {EVENT_ROWS}
         ), inserted AS (
           {INSERT_EVENTS}
         ), deltas AS (
           SELECT b.message_sid,
             (array_agg(b.status ORDER BY b.status_precedence DESC, b.dedup_key))[1] AS status,
             (array_agg(b.status_rank ORDER BY b.status_precedence DESC, b.dedup_key))[1]
               AS status_rank,
             max(b.status_precedence) AS status_precedence,
             (array_agg(b.error_code ORDER BY b.status_precedence DESC, b.dedup_key))[1]
               AS error_code,
             (array_agg(b.account_sid ORDER BY b.dedup_key)
               FILTER (WHERE b.account_sid IS NOT NULL))[1] AS account_sid,
             (array_agg(b.from_address ORDER BY b.dedup_key)
               FILTER (WHERE b.from_address IS NOT NULL))[1] AS from_address,
             (array_agg(b.to_address ORDER BY b.dedup_key)
               FILTER (WHERE b.to_address IS NOT NULL))[1] AS to_address,
             min(b.received_at) AS first_seen_at,
             max(b.received_at) AS last_seen_at,
             count(*)::integer AS event_count,
             bit_or(b.outcome_bit) AS terminal_outcomes,
             min(b.received_at) FILTER (WHERE b.status_rank >= 4) AS final_at
           FROM batch b JOIN inserted USING (dedup_key)
           GROUP BY b.message_sid
         ), prior AS (
           SELECT m.message_sid, m.status_rank, m.final_at, m.first_seen_at, m.terminal_outcomes
           FROM messages m
           WHERE m.message_sid IN (SELECT message_sid FROM deltas WHERE final_at IS NOT NULL)
         ), upserted AS (
           {UPSERT_MESSAGES_FROM_DELTAS}
           RETURNING 1
         ), changes AS (
           SELECT d.*, p.message_sid IS NOT NULL AS known,
             p.status_rank AS prior_rank, p.final_at AS prior_final_at,
             LEAST(d.first_seen_at, p.first_seen_at) AS message_first_seen_at,
             COALESCE(p.terminal_outcomes, 0) AS prior_outcomes
           FROM deltas d LEFT JOIN prior p USING (message_sid)
           WHERE d.final_at IS NOT NULL
         )
         SELECT (SELECT count(*) FROM inserted) AS inserted,
           {OUTCOME_REPORT}"
    )
});

/// What a batch did to the delivery report (see `outcomes`): the messages
/// it brought to their first final status, and how many it made
/// conflicting. Only messages with a final event in the batch can change
/// either, so only their prior state is read. Read from the state before the batch (`prior`, the
/// statement's snapshot), so a message counts once however its callbacks
/// arrive; two batches finalising the same message at the same instant in
/// two transactions could both count it.
const OUTCOME_REPORT: &str = "
    (SELECT COALESCE(jsonb_agg(jsonb_build_object(
        'status', c.status, 'error_code', c.error_code,
        'seconds', extract(epoch FROM c.final_at - c.message_first_seen_at))), '[]'::jsonb)::text
     FROM changes c
     WHERE c.final_at IS NOT NULL
       AND (NOT c.known OR (c.prior_final_at IS NULL AND c.prior_rank < 4))) AS finals,
    (SELECT count(*) FROM changes c
     WHERE ((c.terminal_outcomes | c.prior_outcomes) & ((c.terminal_outcomes | c.prior_outcomes) - 1)) <> 0
       AND (c.prior_outcomes & (c.prior_outcomes - 1)) = 0) AS newly_conflicting";

/// The history insert alone, from `batch` (as `STORE_BATCH` reads it).
/// Returns the dedup keys it inserted.
pub const INSERT_EVENTS: &str = "
    INSERT INTO message_status_events
      (dedup_key, message_sid, status, status_rank, error_code, raw_payload,
       content_type, idempotency_token, request_id, received_at, persisted_at, source)
    SELECT dedup_key, message_sid, status, status_rank, error_code, raw_payload,
           content_type, idempotency_token, request_id, received_at, $2, source
    FROM batch ORDER BY dedup_key
    ON CONFLICT (dedup_key) DO NOTHING
    RETURNING dedup_key";

/// The bare history insert of a batch, with no projection: what the
/// database ceiling of the benchmark measures against `STORE_BATCH`.
pub static INSERT_EVENTS_ONLY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH batch AS (SELECT * FROM {EVENT_ROWS}), inserted AS ({INSERT_EVENTS})
         SELECT (SELECT count(*) FROM inserted) AS inserted"
    )
});

/// One message's row with no event behind it (a message we sent), by the
/// same rules; no event is counted.
pub static RECORD_MESSAGE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH deltas AS (
           SELECT $1::text AS message_sid, $2::text AS status, $3::smallint AS status_rank,
                  $4::smallint AS status_precedence, NULL::integer AS error_code,
                  $6::text AS account_sid, $7::text AS from_address, $8::text AS to_address,
                  $9::timestamptz AS first_seen_at, $9::timestamptz AS last_seen_at,
                  0 AS event_count, $5::smallint AS terminal_outcomes,
                  CASE WHEN $3::smallint >= 4 THEN $9::timestamptz END AS final_at
         )
         {UPSERT_MESSAGES_FROM_DELTAS}"
    )
});
