//! The reconciler's SQL: which messages are due a lookup, how many are
//! stale, and what a lookup leaves on the message's row.
//!
//! A message is due when its status is one of `WORKER_RECONCILE_AFTER`'s
//! and nothing was heard of it (no event, no lookup attempt) for that
//! status's time, doubled for each answered lookup already made, fewer than
//! `max_checks` of them, and Twilio has not answered 404
//! for it. The scan rides `messages_status_idx` (status, last_seen_at).
//!
//! A run claims what it takes: `reconciled_at` is set as the messages are
//! selected (rows locked by another worker's claim are skipped), so workers
//! running side by side share the due messages instead of each asking
//! Twilio about all of them, and a lookup that fails (Twilio down, our
//! credentials refused) waits the status's time before the next attempt
//! instead of filling every run.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, QueryResult, Statement};
use std::ops::Range;
use std::time::Duration;
use twilio_protocol::callback::MessageSid;
use twilio_protocol::status::MessageStatus;

/// A message due a lookup, as stored.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub message_sid: MessageSid,
    pub account_sid: Option<String>,
    pub status: MessageStatus,
    pub error_code: Option<i32>,
}

impl Candidate {
    /// A row of `DUE`: its status is one of the thresholds', so a known one.
    fn from_row(row: &QueryResult) -> Result<Self, DbErr> {
        let message_sid: String = row.try_get("", "message_sid")?;
        let status: String = row.try_get("", "status")?;
        Ok(Self {
            message_sid: MessageSid::parse(&message_sid)
                .map_err(|error| DbErr::Type(error.to_string()))?,
            account_sid: row.try_get("", "account_sid")?,
            status: status
                .parse()
                .map_err(|error: twilio_protocol::status::UnknownStatus| {
                    DbErr::Type(error.to_string())
                })?,
            error_code: row.try_get("", "error_code")?,
        })
    }
}

/// The per-status thresholds as the two arrays the statements unnest.
fn threshold_arrays(after: &[(MessageStatus, Duration)]) -> (Vec<String>, Vec<f64>) {
    after
        .iter()
        .map(|(status, after)| (status.as_str().to_owned(), after.as_secs_f64()))
        .unzip()
}

const DUE: &str = "
    SELECT m.message_sid, m.account_sid, m.status, m.error_code
    FROM unnest($1::text[], $2::float8[]) AS t(status, after_secs)
    JOIN messages m
      ON m.status = t.status AND m.status_precedence >= 0
     AND m.last_seen_at < now() - make_interval(secs => t.after_secs)
    WHERE m.twilio_not_found_at IS NULL
      AND m.reconcile_checks < $3
      AND COALESCE(GREATEST(m.last_seen_at, m.reconciled_at), m.last_seen_at)
          < now() - make_interval(secs => t.after_secs * power(2, m.reconcile_checks))
    ORDER BY m.last_seen_at, m.message_sid
    LIMIT $4";

/// The due messages, claimed (`DUE`, locked and stamped in one statement).
static CLAIM: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH due AS ({DUE} FOR UPDATE OF m SKIP LOCKED)
         UPDATE messages m SET reconciled_at = now()
         FROM due WHERE m.message_sid = due.message_sid
         RETURNING due.message_sid, due.account_sid, due.status, due.error_code"
    )
});

/// The messages due a lookup, oldest first; `claim`: stamped as taken by
/// this run (a dry run only reads).
pub async fn due(
    db: &DatabaseConnection,
    after: &[(MessageStatus, Duration)],
    max_checks: i16,
    limit: usize,
    claim: bool,
) -> Result<Vec<Candidate>, DbErr> {
    let (statuses, seconds) = threshold_arrays(after);
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            if claim { CLAIM.as_str() } else { DUE },
            [
                statuses.into(),
                seconds.into(),
                max_checks.into(),
                i64::try_from(limit).unwrap_or(i64::MAX).into(),
            ],
        ))
        .await?;
    // A row that does not read back (a SID or status this release cannot
    // parse) is skipped with a warning, not allowed to fail the whole run
    // after `CLAIM` stamped every row of it.
    Ok(rows
        .iter()
        .filter_map(|row| match Candidate::from_row(row) {
            Ok(candidate) => Some(candidate),
            Err(error) => {
                tracing::warn!(%error, "skipping a message reconciliation cannot read");
                None
            }
        })
        .collect())
}

/// Past a threshold is stale: one statement, with or without `GET
/// /stats`'s window on `first_seen_at` (two texts rather than `$3 IS NULL
/// OR ...`, which a generic plan could not use the window's index for).
fn stale_statement(windowed: bool) -> String {
    let window = if windowed {
        "AND m.first_seen_at >= $3 AND m.first_seen_at < $4"
    } else {
        ""
    };
    format!(
        "SELECT t.status, count(m.message_sid) AS stale
         FROM unnest($1::text[], $2::float8[]) AS t(status, after_secs)
         LEFT JOIN messages m
           ON m.status = t.status AND m.status_precedence >= 0
          AND m.last_seen_at < now() - make_interval(secs => t.after_secs)
          {window}
         GROUP BY t.status"
    )
}

/// Messages past their status's threshold, per configured status (zeros
/// included); `first_seen`: only those first seen in it.
pub async fn stale_counts(
    db: &DatabaseConnection,
    after: &[(MessageStatus, Duration)],
    first_seen: Option<Range<DateTime<Utc>>>,
) -> Result<Vec<(String, i64)>, DbErr> {
    let (statuses, seconds) = threshold_arrays(after);
    let mut values = vec![statuses.into(), seconds.into()];
    if let Some(range) = &first_seen {
        values.extend([range.start.into(), range.end.into()]);
    }
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            stale_statement(first_seen.is_some()),
            values,
        ))
        .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("", "status")?, row.try_get("", "stale")?)))
        .collect()
}

/// Counts an answered lookup; `not_found` also records Twilio's 404 for good.
pub async fn mark_checked(
    db: &DatabaseConnection,
    message_sid: &MessageSid,
    not_found: bool,
) -> Result<(), DbErr> {
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "UPDATE messages SET
           reconciled_at = now(),
           reconcile_checks = LEAST(reconcile_checks + 1, 32767),
           twilio_not_found_at = CASE WHEN $2 THEN COALESCE(twilio_not_found_at, now())
                                      ELSE twilio_not_found_at END
         WHERE message_sid = $1",
        [message_sid.as_str().into(), not_found.into()],
    ))
    .await?;
    Ok(())
}
