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
//! - a message belongs to the account it was first recorded under: an event
//!   another account signed is kept, marked `foreign_account`, and changes
//!   nothing (`OWNED_BATCH`);
//! - the first known account and addresses are kept;
//! - `final_at` is the earliest receipt of a final status (rank
//!   `MessageStatus::FINAL_RANK` or more, in SQL too).
//!
//! Every rule is commutative, and only newly inserted events are folded in,
//! so any arrival order, any batching and any number of workers give the
//! same row.

use chrono::{DateTime, Utc};
use std::sync::LazyLock;
use twilio_protocol::status::MessageStatus;

use super::event::DAY_EDGE;
use crate::feed::ChangeFeed;

/// A message we just sent, with the status Twilio answered: the inputs of
/// `RECORD_MESSAGE`, in parameter order.
pub struct SentMessage<'a> {
    pub message_sid: &'a str,
    pub status: MessageStatus,
    pub account_sid: Option<String>,
    pub from_address: Option<String>,
    pub to_address: Option<String>,
    pub seen_at: DateTime<Utc>,
    /// The trace of the request that sent it.
    pub traceparent: Option<String>,
}

impl SentMessage<'_> {
    pub fn values(self, feed: ChangeFeed) -> Vec<sea_orm::Value> {
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
            feed.is_on().into(),
            self.traceparent.into(),
        ]
    }
}

/// The lowest rank of a final status, as every statement here writes it.
const FINAL_RANK: i16 = MessageStatus::FINAL_RANK;

/// Applies `deltas` (one row per message: its winning status, counts and
/// outcome bits) to `messages` by the rules above. Shared by both
/// statements, so the rules are written once.
static UPSERT_MESSAGES_FROM_DELTAS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "
    INSERT INTO messages AS m
      (message_sid, status, status_rank, status_precedence, error_code, account_sid,
       from_address, to_address, first_seen_at, last_seen_at, event_count,
       terminal_outcomes, conflicting_outcomes, final_at, change_sequence, changed_in)
    SELECT message_sid, status, status_rank, status_precedence, error_code, account_sid,
           from_address, to_address, first_seen_at, last_seen_at, event_count,
           terminal_outcomes, (terminal_outcomes & (terminal_outcomes - 1)) <> 0, final_at,
           CASE WHEN status_precedence >= 0 THEN 1 ELSE 0 END,
           CASE WHEN status_precedence >= 0 THEN pg_current_xact_id() END
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
      final_at = CASE WHEN m.final_at IS NULL AND m.status_rank >= {FINAL_RANK} THEN NULL
                      ELSE LEAST(m.final_at, EXCLUDED.final_at) END,
      -- A change of status (see `CHANGE_FEED`): counted, the status it
      -- replaced kept (none when that one was not a known status), and
      -- marked with this transaction.
      change_sequence = m.change_sequence
        + CASE WHEN EXCLUDED.status_precedence > m.status_precedence THEN 1 ELSE 0 END,
      previous_status = CASE WHEN EXCLUDED.status_precedence > m.status_precedence
                             THEN CASE WHEN m.status_precedence >= 0 THEN m.status END
                             ELSE m.previous_status END,
      changed_in = CASE WHEN EXCLUDED.status_precedence > m.status_precedence
                        THEN pg_current_xact_id() ELSE m.changed_in END,
      updated_at = now()
    RETURNING message_sid, status, status_rank, error_code, account_sid, from_address,
      to_address, change_sequence, previous_status,
      COALESCE(changed_in = pg_current_xact_id(), false) AS changed"
    )
});

/// Records in the outbox (`message_changes`) each change of status
/// `upserted` (the rows `UPSERT_MESSAGES_FROM_DELTAS` returned) made, in the
/// statement that made it: nothing committed can miss the feed. `$changes`
/// says whether the feed is on; `occurred_at` and `traceparent` come from
/// `deltas` (the event that carried the new status), `recorded_at` is
/// `$persisted`. Defines `feed`, one row per change recorded.
fn change_feed(changes: &str, persisted: &str) -> String {
    format!(
        "feed AS (
           INSERT INTO message_changes
             (message_sid, sequence, status, previous_status, error_code, final, account_sid,
              from_address, to_address, occurred_at, recorded_at, traceparent)
           SELECT u.message_sid, u.change_sequence, u.status, u.previous_status, u.error_code,
             u.status_rank >= {FINAL_RANK}, u.account_sid, u.from_address, u.to_address,
             d.occurred_at, {persisted}, d.traceparent
           FROM upserted u JOIN deltas d USING (message_sid)
           WHERE u.changed AND {changes}
           RETURNING 1
         )"
    )
}

/// The batch as the statements read it (`received`): one row per event,
/// from one typed array per column (bound by `columns::run_batch_statement`).
pub const RECEIVED: &str = "SELECT * FROM unnest($1::bytea[], $2::text[], $3::text[],
             $4::smallint[], $5::smallint[], $6::smallint[], $7::integer[], $8::jsonb[],
             $9::boolean[], $10::text[], $11::uuid[], $12::timestamptz[], $13::boolean[],
             $14::text[], $15::text[], $16::text[], $17::text[], $18::text[])
           AS r(dedup_key, message_sid, status, status_rank, status_precedence, outcome_bit,
             error_code, raw_payload, json_body, idempotency_token, request_id, received_at,
             near_midnight, account_sid, from_address, to_address, source, traceparent)";

/// Inserts a batch of events into the history, skipping known dedup keys
/// (in (message, key) order: a fixed lock order across workers), then folds only the
/// rows it inserted per message and applies them: one statement, so one
/// round trip and its own transaction, with a text that never changes
/// (prepared once per connection, whatever the batch size). `$1` to `$18`
/// are the batch (`RECEIVED`), `$19` the time it is persisted, `$20`
/// whether changes go to the feed. Within a message the winning event
/// is the highest precedence, ties broken by dedup key; addresses come from
/// the first event that has them. Returns the number of events inserted,
/// the changes recorded for the feed, and what the batch did to the
/// delivery report (`OUTCOME_REPORT`).
pub static STORE_BATCH: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH received AS (
           {RECEIVED}
         ), {OWNED_BATCH}, inserted AS (
           {insert}
         ), deltas AS (
           SELECT b.message_sid,
             (array_agg(b.status ORDER BY b.projected_precedence DESC, b.dedup_key))[1]
               AS status,
             (array_agg(b.status_rank ORDER BY b.projected_precedence DESC, b.dedup_key))[1]
               AS status_rank,
             max(b.projected_precedence) AS status_precedence,
             (array_agg(b.error_code ORDER BY b.projected_precedence DESC, b.dedup_key))[1]
               AS error_code,
             (array_agg(b.received_at ORDER BY b.projected_precedence DESC, b.dedup_key))[1]
               AS occurred_at,
             (array_agg(b.traceparent ORDER BY b.projected_precedence DESC, b.dedup_key))[1]
               AS traceparent,
             (array_agg(b.account_sid ORDER BY b.dedup_key)
               FILTER (WHERE b.account_sid IS NOT NULL AND NOT b.foreign_account))[1]
               AS account_sid,
             (array_agg(b.from_address ORDER BY b.dedup_key)
               FILTER (WHERE b.from_address IS NOT NULL AND NOT b.foreign_account))[1]
               AS from_address,
             (array_agg(b.to_address ORDER BY b.dedup_key)
               FILTER (WHERE b.to_address IS NOT NULL AND NOT b.foreign_account))[1]
               AS to_address,
             min(b.received_at) AS first_seen_at,
             max(b.received_at) AS last_seen_at,
             count(*)::integer AS event_count,
             bit_or(CASE WHEN b.foreign_account THEN 0 ELSE b.outcome_bit END)
               AS terminal_outcomes,
             min(b.received_at) FILTER (WHERE b.status_rank >= {FINAL_RANK} AND NOT b.foreign_account)
               AS final_at,
             count(*) FILTER (WHERE b.foreign_account) AS foreign_events
           FROM batch b JOIN inserted USING (message_sid, dedup_key)
           GROUP BY b.message_sid
         ), prior AS (
           SELECT m.message_sid, m.status_rank, m.final_at, m.first_seen_at, m.terminal_outcomes,
             m.account_sid
           FROM messages m
           WHERE m.message_sid IN (SELECT message_sid FROM deltas WHERE final_at IS NOT NULL)
         ), upserted AS (
           {upsert}
         ), {feed}, changes AS (
           SELECT d.*, p.message_sid IS NOT NULL AS known,
             p.status_rank AS prior_rank, p.final_at AS prior_final_at,
             LEAST(d.first_seen_at, p.first_seen_at) AS message_first_seen_at,
             COALESCE(p.terminal_outcomes, 0) AS prior_outcomes,
             COALESCE(p.account_sid, d.account_sid) AS owner_account_sid
           FROM deltas d LEFT JOIN prior p USING (message_sid)
           WHERE d.final_at IS NOT NULL
         )
         {report}",
        insert = *INSERT_EVENTS,
        upsert = *UPSERT_MESSAGES_FROM_DELTAS,
        feed = change_feed("$20", "$19"),
        report = *OUTCOME_REPORT,
    )
});

/// Marks each row of `received` (the batch as sent) that a different
/// account than the message's owner signed: the owner is the account the
/// message was first recorded under (`messages.account_sid`), or, for a
/// message new to the store, the account of its earliest event in the
/// batch. A marked row (`foreign_account`) is stored, but projected with
/// precedence -1: it never moves the status, and adds no outcome, final
/// time, account or address. Defines `batch`, what the rest reads.
const OWNED_BATCH: &str = "owners AS (
           SELECT m.message_sid, m.account_sid FROM messages m
           WHERE m.message_sid IN (SELECT message_sid FROM received)
             AND m.account_sid IS NOT NULL
         ), first_accounts AS (
           SELECT DISTINCT ON (r.message_sid) r.message_sid, r.account_sid
           FROM received r WHERE r.account_sid IS NOT NULL
           ORDER BY r.message_sid, r.received_at, r.dedup_key
         ), batch AS (
           SELECT r.*,
             COALESCE(r.account_sid <> COALESCE(o.account_sid, f.account_sid), false)
               AS foreign_account,
             CASE WHEN r.account_sid <> COALESCE(o.account_sid, f.account_sid)
                  THEN -1 ELSE r.status_precedence END AS projected_precedence
           FROM received r
           LEFT JOIN owners o USING (message_sid)
           LEFT JOIN first_accounts f USING (message_sid)
         )";

/// What `STORE_BATCH` returns: how many events it inserted, how many of
/// them another account signed, and what the batch did to the delivery
/// report (see `outcomes`): the messages it brought to their first final
/// status, with that status's error code and the message's owner account
/// (as the upsert keeps it: the stored one, else the batch's; one array per
/// column, in message order; NULL for none), and how many it made
/// conflicting. Only messages with a final event in the batch can change
/// either, so only their prior state is read. Read from the state before
/// the batch (`prior`, the statement's snapshot), so a message counts once
/// however its callbacks arrive; two batches finalising the same message at
/// the same instant in two transactions could both count it.
static OUTCOME_REPORT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT (SELECT count(*) FROM inserted) AS inserted,
           (SELECT count(*) FROM feed) AS changes,
           (SELECT COALESCE(sum(foreign_events), 0)::bigint FROM deltas) AS foreign_events,
           f.statuses AS final_statuses, f.error_codes AS final_error_codes,
           f.seconds AS final_seconds, f.account_sids AS final_account_sids,
           (SELECT count(*) FROM changes c
            WHERE ((c.terminal_outcomes | c.prior_outcomes)
                   & ((c.terminal_outcomes | c.prior_outcomes) - 1)) <> 0
              AND (c.prior_outcomes & (c.prior_outcomes - 1)) = 0) AS newly_conflicting
         FROM (
           SELECT array_agg(c.status ORDER BY c.message_sid) AS statuses,
             array_agg(c.error_code ORDER BY c.message_sid) AS error_codes,
             array_agg(c.owner_account_sid ORDER BY c.message_sid) AS account_sids,
             array_agg(extract(epoch FROM c.final_at - c.message_first_seen_at)::float8
                       ORDER BY c.message_sid) AS seconds
           FROM changes c
           WHERE c.final_at IS NOT NULL
             AND (NOT c.known OR (c.prior_final_at IS NULL AND c.prior_rank < {FINAL_RANK}))
         ) f"
    )
});

/// The history insert, from `batch` (as `STORE_BATCH` reads it).
/// Returns the (message, key) pairs it inserted.
///
/// A copy received the same UTC day lands in the same partition, whose
/// unique index (`message_sid`, `dedup_key`) skips it (`ON CONFLICT DO
/// NOTHING` names no index: each partition has its own). An event near a
/// midnight also looks for its copy in the history up to twice `DAY_EDGE`
/// around it, which reaches the neighbouring day; the store takes a lock
/// per key for such batches first (`store::write_rows`), so two copies
/// written at once across midnight still meet.
pub static INSERT_EVENTS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO message_status_events
           (received_at, persisted_at, request_id, error_code, status_rank, json_body, dedup_key,
            message_sid, status, source, idempotency_token, raw_payload, foreign_account)
         SELECT received_at, $19, request_id, error_code, status_rank, json_body, dedup_key,
                message_sid, status, source, idempotency_token, raw_payload, foreign_account
         FROM batch b
         WHERE NOT (b.near_midnight AND EXISTS (
           SELECT 1 FROM message_status_events e
           WHERE e.message_sid = b.message_sid AND e.dedup_key = b.dedup_key
             AND e.received_at > b.received_at - interval '{reach} seconds'
             AND e.received_at < b.received_at + interval '{reach} seconds'))
         ORDER BY message_sid, dedup_key
         ON CONFLICT DO NOTHING
         RETURNING message_sid, dedup_key",
        reach = 2 * DAY_EDGE.num_seconds(),
    )
});

/// One message's row with no event behind it (a message we sent), by the
/// same rules; no event is counted. Its change goes to the feed too
/// (`$10`: the feed is on; `$11`: the trace of the request that sent it).
pub static RECORD_MESSAGE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH deltas AS (
           SELECT $1::text AS message_sid, $2::text AS status, $3::smallint AS status_rank,
                  $4::smallint AS status_precedence, NULL::integer AS error_code,
                  $6::text AS account_sid, $7::text AS from_address, $8::text AS to_address,
                  $9::timestamptz AS first_seen_at, $9::timestamptz AS last_seen_at,
                  0 AS event_count, $5::smallint AS terminal_outcomes,
                  CASE WHEN $3::smallint >= {FINAL_RANK} THEN $9::timestamptz END AS final_at,
                  $9::timestamptz AS occurred_at, $11::text AS traceparent
         ), upserted AS (
           {upsert}
         ), {feed}
         SELECT count(*) AS changes FROM feed",
        upsert = *UPSERT_MESSAGES_FROM_DELTAS,
        feed = change_feed("$10", "now()"),
    )
});
