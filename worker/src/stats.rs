//! `GET /stats`: how messages first seen in a time window fared, computed
//! from the database: current statuses, the commonest error codes, time
//! from first seen to final, conflicting outcomes, and messages gone stale
//! (no news for longer than `WORKER_RECONCILE_AFTER` allows their status).

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement, Value};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use twilio_protocol::error_codes::describe;
use twilio_protocol::status::MessageStatus;

/// The widest window `GET /stats` reads: each request scans the messages
/// first seen in it, and a reader must not make the writers wait.
pub const MAX_WINDOW: chrono::TimeDelta = chrono::TimeDelta::days(31);

/// The window: messages whose first event was received in `[since, until)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

impl Window {
    /// `since` is an RFC 3339 time or a duration back from now (`24h`, the
    /// default); `until` an RFC 3339 time (default now).
    pub fn parse(
        since: Option<&str>,
        until: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Self, String> {
        let until = match until {
            None => now,
            Some(raw) => DateTime::parse_from_rfc3339(raw)
                .map_err(|_| format!("until={raw:?} is not an RFC 3339 time"))?
                .with_timezone(&Utc),
        };
        let raw = since.unwrap_or("24h");
        let since = match DateTime::parse_from_rfc3339(raw) {
            Ok(at) => at.with_timezone(&Utc),
            Err(_) => {
                let back = humantime::parse_duration(raw).map_err(|_| {
                    format!("since={raw:?} is neither an RFC 3339 time nor a duration like 24h")
                })?;
                let back = chrono::Duration::from_std(back)
                    .map_err(|_| format!("since={raw:?} is too long ago"))?;
                until
                    .checked_sub_signed(back)
                    .ok_or_else(|| format!("since={raw:?} is too long ago"))?
            }
        };
        if since >= until {
            return Err("since must be before until".into());
        }
        if until - since > MAX_WINDOW {
            return Err(format!(
                "the window is too large: at most {} days between since and until",
                MAX_WINDOW.num_days()
            ));
        }
        Ok(Self { since, until })
    }

    fn values(&self) -> [Value; 2] {
        [self.since.into(), self.until.into()]
    }
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Stats {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub messages: i64,
    /// Current status → messages.
    pub by_status: BTreeMap<String, i64>,
    pub top_error_codes: Vec<ErrorCount>,
    pub time_to_final: TimeToFinal,
    pub conflicting: Conflicting,
    /// Status → messages without news for longer than that status allows.
    pub stale: BTreeMap<String, i64>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct ErrorCount {
    pub code: i32,
    pub title: &'static str,
    pub messages: i64,
}

/// Seconds from a message's first event to its first final one.
#[derive(Debug, Serialize, PartialEq)]
pub struct Percentiles {
    pub messages: i64,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct TimeToFinal {
    #[serde(flatten)]
    pub all: Percentiles,
    /// By the message's current (final) status.
    pub by_outcome: BTreeMap<String, Percentiles>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Conflicting {
    pub messages: i64,
    /// Of the messages with an outcome (delivered, undelivered, failed).
    pub share: f64,
}

const TOP_ERRORS: i64 = 10;

/// How long a computed answer is served again to readers of the same
/// window (`since`/`until` as asked): dashboards poll, and sixteen of them
/// asking at once must cost the database one computation, not sixteen. An
/// answer says which window it covers.
pub const REUSE_FOR: Duration = Duration::from_secs(10);

/// How long a reader waits for another reader's computation.
const WAIT_FOR_ANOTHER: Duration = Duration::from_secs(4);

/// Recent answers, and the one computation in progress: `GET /stats` scans
/// many rows, so one runs at a time and the others wait for it (and then,
/// asking for the same window, take its answer).
#[derive(Default)]
pub struct StatsCache {
    computed: tokio::sync::Mutex<HashMap<AskedWindow, (Instant, Arc<Stats>)>>,
}

/// A window as a reader asked for it: `since` and `until` as given.
pub type AskedWindow = (Option<String>, Option<String>);

impl StatsCache {
    /// The answer for the window asked as `asked`, computed now or within
    /// `REUSE_FOR`; `None` when another computation held the way for
    /// `WAIT_FOR_ANOTHER` (the reader is told to come back, rather than
    /// queue until its own computation has no time left to finish).
    pub async fn get_or_compute(
        &self,
        asked: AskedWindow,
        window: Window,
        db: &DatabaseConnection,
        stale_after: &[(MessageStatus, Duration)],
    ) -> Result<Option<Arc<Stats>>, DbErr> {
        let Ok(mut computed) = tokio::time::timeout(WAIT_FOR_ANOTHER, self.computed.lock()).await
        else {
            return Ok(None);
        };
        computed.retain(|_, (at, _)| at.elapsed() < REUSE_FOR);
        if let Some((_, stats)) = computed.get(&asked) {
            return Ok(Some(stats.clone()));
        }
        let stats = Arc::new(compute(db, window, stale_after).await?);
        computed.insert(asked, (Instant::now(), stats.clone()));
        Ok(Some(stats))
    }
}

pub async fn compute(
    db: &DatabaseConnection,
    window: Window,
    stale_after: &[(MessageStatus, Duration)],
) -> Result<Stats, DbErr> {
    let query = |sql: &'static str, values: Vec<Value>| {
        db.query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            values,
        ))
    };
    let mut by_status = BTreeMap::new();
    for row in query(
        "SELECT status, count(*) AS n FROM messages
         WHERE first_seen_at >= $1 AND first_seen_at < $2 GROUP BY status",
        window.values().to_vec(),
    )
    .await?
    {
        by_status.insert(row.try_get::<String>("", "status")?, row.try_get("", "n")?);
    }

    let mut top_error_codes = Vec::new();
    let mut values = window.values().to_vec();
    values.push(TOP_ERRORS.into());
    for row in query(
        "SELECT error_code, count(*) AS n FROM messages
         WHERE first_seen_at >= $1 AND first_seen_at < $2 AND error_code IS NOT NULL
         GROUP BY error_code ORDER BY n DESC, error_code LIMIT $3",
        values,
    )
    .await?
    {
        let code: i32 = row.try_get("", "error_code")?;
        top_error_codes.push(ErrorCount {
            code,
            title: describe(code).title,
            messages: row.try_get("", "n")?,
        });
    }

    let mut all = None;
    let mut by_outcome = BTreeMap::new();
    for row in query(
        "SELECT status, grouping(status) AS everything, count(*) AS n,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) AS p50,
           percentile_cont(0.9) WITHIN GROUP (ORDER BY seconds) AS p90,
           percentile_cont(0.99) WITHIN GROUP (ORDER BY seconds) AS p99
         FROM (SELECT status, extract(epoch FROM final_at - first_seen_at)::float8 AS seconds
               FROM messages
               WHERE first_seen_at >= $1 AND first_seen_at < $2 AND final_at IS NOT NULL) t
         GROUP BY GROUPING SETS ((status), ())",
        window.values().to_vec(),
    )
    .await?
    {
        let percentiles = Percentiles {
            messages: row.try_get("", "n")?,
            p50: row.try_get("", "p50")?,
            p90: row.try_get("", "p90")?,
            p99: row.try_get("", "p99")?,
        };
        if row.try_get::<i32>("", "everything")? == 1 {
            all = Some(percentiles);
        } else {
            by_outcome.insert(row.try_get::<String>("", "status")?, percentiles);
        }
    }

    let rows = query(
        "SELECT count(*) AS messages,
           count(*) FILTER (WHERE conflicting_outcomes) AS conflicting,
           count(*) FILTER (WHERE terminal_outcomes <> 0) AS with_outcome
         FROM messages WHERE first_seen_at >= $1 AND first_seen_at < $2",
        window.values().to_vec(),
    )
    .await?;
    let (messages, conflicting, with_outcome) = match rows.first() {
        Some(row) => (
            row.try_get::<i64>("", "messages")?,
            row.try_get::<i64>("", "conflicting")?,
            row.try_get::<i64>("", "with_outcome")?,
        ),
        None => (0, 0, 0),
    };

    let (statuses, seconds): (Vec<String>, Vec<f64>) = stale_after
        .iter()
        .map(|(status, after)| (status.as_str().to_owned(), after.as_secs_f64()))
        .unzip();
    let mut values = window.values().to_vec();
    values.extend([statuses.into(), seconds.into()]);
    let mut stale = BTreeMap::new();
    for row in query(
        "SELECT t.status, count(m.message_sid) AS n
         FROM unnest($3::text[], $4::float8[]) AS t(status, after_secs)
         LEFT JOIN messages m
           ON m.status = t.status AND m.status_precedence >= 0
          AND m.last_seen_at < now() - make_interval(secs => t.after_secs)
          AND m.first_seen_at >= $1 AND m.first_seen_at < $2
         GROUP BY t.status",
        values,
    )
    .await?
    {
        stale.insert(row.try_get::<String>("", "status")?, row.try_get("", "n")?);
    }

    Ok(Stats {
        since: window.since,
        until: window.until,
        messages,
        by_status,
        top_error_codes,
        time_to_final: TimeToFinal {
            all: all.unwrap_or(Percentiles {
                messages: 0,
                p50: None,
                p90: None,
                p99: None,
            }),
            by_outcome,
        },
        conflicting: Conflicting {
            messages: conflicting,
            share: if with_outcome > 0 {
                conflicting as f64 / with_outcome as f64
            } else {
                0.0
            },
        },
        stale,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-03T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn windows_parse_times_and_durations() {
        let day = Window::parse(None, None, now()).unwrap();
        assert_eq!(day.until - day.since, chrono::Duration::hours(24));
        let w = Window::parse(
            Some("2026-12-01T00:00:00Z"),
            Some("2026-12-02T00:00:00+00:00"),
            now(),
        )
        .unwrap();
        assert_eq!(w.until - w.since, chrono::Duration::hours(24));
        let w = Window::parse(Some("90m"), None, now()).unwrap();
        assert_eq!(w.until - w.since, chrono::Duration::minutes(90));
        assert!(Window::parse(Some("yesterday"), None, now()).is_err());
        assert!(Window::parse(Some("2026-12-04T00:00:00Z"), None, now()).is_err());
        assert!(Window::parse(None, Some("noon"), now()).is_err());
        assert!(Window::parse(Some("31d"), None, now()).is_ok());
        let too_wide = Window::parse(Some("32d"), None, now()).unwrap_err();
        assert!(too_wide.contains("too large"), "{too_wide}");
    }
}
