//! The queries behind `GET /stats`, one per figure, each over the messages
//! first seen in the window.

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, QueryResult, Statement, Value,
};
use std::collections::BTreeMap;
use std::time::Duration;
use twilio_protocol::error_codes::describe;
use twilio_protocol::status::MessageStatus;

use super::figures::{Conflicting, ErrorCount, Percentiles, Stats, TimeToFinal};
use super::window::Window;

/// Error codes listed, commonest first.
const TOP_ERRORS: i64 = 10;

/// Every figure for `window`.
pub(super) async fn compute(
    db: &DatabaseConnection,
    window: Window,
    stale_after: &[(MessageStatus, Duration)],
) -> Result<Stats, DbErr> {
    let (messages, conflicting) = conflicting(db, window).await?;
    let stale = crate::reconcile::stale_counts(db, stale_after, Some(window.since..window.until))
        .await?
        .into_iter()
        .collect();
    Ok(Stats {
        since: window.since,
        until: window.until,
        messages,
        by_status: by_status(db, window).await?,
        top_error_codes: top_error_codes(db, window).await?,
        time_to_final: time_to_final(db, window).await?,
        conflicting,
        stale,
    })
}

async fn query(
    db: &DatabaseConnection,
    sql: &'static str,
    values: impl IntoIterator<Item = Value>,
) -> Result<Vec<QueryResult>, DbErr> {
    db.query_all_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        sql,
        values,
    ))
    .await
}

/// Current status → messages.
async fn by_status(
    db: &DatabaseConnection,
    window: Window,
) -> Result<BTreeMap<String, i64>, DbErr> {
    let rows = query(
        db,
        "SELECT status, count(*) AS n FROM messages
         WHERE first_seen_at >= $1 AND first_seen_at < $2 GROUP BY status",
        window.values(),
    )
    .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("", "status")?, row.try_get("", "n")?)))
        .collect()
}

async fn top_error_codes(
    db: &DatabaseConnection,
    window: Window,
) -> Result<Vec<ErrorCount>, DbErr> {
    let [since, until] = window.values();
    let rows = query(
        db,
        "SELECT error_code, count(*) AS n FROM messages
         WHERE first_seen_at >= $1 AND first_seen_at < $2 AND error_code IS NOT NULL
         GROUP BY error_code ORDER BY n DESC, error_code LIMIT $3",
        [since, until, TOP_ERRORS.into()],
    )
    .await?;
    rows.iter()
        .map(|row| {
            let code: i32 = row.try_get("", "error_code")?;
            Ok(ErrorCount {
                code,
                title: describe(code).title,
                messages: row.try_get("", "n")?,
            })
        })
        .collect()
}

async fn time_to_final(db: &DatabaseConnection, window: Window) -> Result<TimeToFinal, DbErr> {
    let rows = query(
        db,
        "SELECT status, grouping(status) AS everything, count(*) AS n,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) AS p50,
           percentile_cont(0.9) WITHIN GROUP (ORDER BY seconds) AS p90,
           percentile_cont(0.99) WITHIN GROUP (ORDER BY seconds) AS p99
         FROM (SELECT status, extract(epoch FROM final_at - first_seen_at)::float8 AS seconds
               FROM messages
               WHERE first_seen_at >= $1 AND first_seen_at < $2 AND final_at IS NOT NULL) t
         GROUP BY GROUPING SETS ((status), ())",
        window.values(),
    )
    .await?;
    let mut all = None;
    let mut by_outcome = BTreeMap::new();
    for row in rows {
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
    Ok(TimeToFinal {
        all: all.unwrap_or(Percentiles {
            messages: 0,
            p50: None,
            p90: None,
            p99: None,
        }),
        by_outcome,
    })
}

/// All messages in the window, and those with conflicting outcomes.
async fn conflicting(db: &DatabaseConnection, window: Window) -> Result<(i64, Conflicting), DbErr> {
    let rows = query(
        db,
        "SELECT count(*) AS messages,
           count(*) FILTER (WHERE conflicting_outcomes) AS conflicting,
           count(*) FILTER (WHERE terminal_outcomes <> 0) AS with_outcome
         FROM messages WHERE first_seen_at >= $1 AND first_seen_at < $2",
        window.values(),
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
    let share = if with_outcome > 0 {
        conflicting as f64 / with_outcome as f64
    } else {
        0.0
    };
    Ok((
        messages,
        Conflicting {
            messages: conflicting,
            share,
        },
    ))
}
