//! The history's day partitions: created ahead of need, created on demand
//! for a day a write finds missing, and dropped whole past the retention
//! horizon. The partition layout itself is the migration's
//! (`m20261204_000001_partitioned_history`, and its SQL function
//! `message_status_events_partition(day)`, which this module calls).

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, RuntimeErr, Statement};
use serde::Serialize;
use std::collections::BTreeSet;

/// Days created ahead of today (UTC), so midnight never waits for one.
pub const DAYS_AHEAD: i64 = 2;

const PARENT: &str = "message_status_events";
const NAME_PREFIX: &str = "message_status_events_";

/// One day's partition of the history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Partition {
    pub name: String,
    pub day: NaiveDate,
    /// An earlier detach was interrupted; it is finished before the drop.
    pub detach_pending: bool,
}

/// Whether a write failed only because its day has no partition yet.
pub fn is_missing_partition(error: &DbErr) -> bool {
    let (DbErr::Exec(RuntimeErr::SqlxError(sqlx_error))
    | DbErr::Query(RuntimeErr::SqlxError(sqlx_error))) = error
    else {
        return false;
    };
    let sea_orm::sqlx::Error::Database(database) = sqlx_error.as_ref() else {
        return false;
    };
    database.code().as_deref() == Some("23514") && database.message().starts_with("no partition")
}

/// Creates the partitions of the given days that are missing; returns how
/// many it created.
pub async fn ensure_days(
    db: &impl ConnectionTrait,
    days: impl IntoIterator<Item = NaiveDate>,
) -> Result<usize, DbErr> {
    let mut created = 0;
    for day in days.into_iter().collect::<BTreeSet<_>>() {
        let row = db
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT message_status_events_partition($1) AS created",
                [day.into()],
            ))
            .await?;
        if let Some(row) = row {
            if row.try_get::<bool>("", "created")? {
                tracing::info!(%day, "history partition created");
                created += 1;
            }
        }
    }
    Ok(created)
}

/// Creates the partitions of the UTC days of these times.
pub async fn ensure_days_of(
    db: &impl ConnectionTrait,
    times: &[DateTime<Utc>],
) -> Result<usize, DbErr> {
    ensure_days(db, times.iter().map(|at| at.date_naive())).await
}

/// Creates the partitions from yesterday to `DAYS_AHEAD` days ahead.
pub async fn ensure_ahead(db: &impl ConnectionTrait, now: DateTime<Utc>) -> Result<usize, DbErr> {
    let today = now.date_naive();
    ensure_days(
        db,
        (-1..=DAYS_AHEAD).map(|offset| today + TimeDelta::days(offset)),
    )
    .await
}

/// The history's day partitions, oldest first.
pub async fn list(db: &impl ConnectionTrait) -> Result<Vec<Partition>, DbErr> {
    let rows = db
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            format!(
                "SELECT c.relname::text AS name, i.inhdetachpending AS detach_pending
                 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                 WHERE i.inhparent = '{PARENT}'::regclass"
            ),
        ))
        .await?;
    let mut partitions = Vec::with_capacity(rows.len());
    for row in rows {
        let name: String = row.try_get("", "name")?;
        let detach_pending: bool = row.try_get("", "detach_pending")?;
        // Only the migration's naming; anything else attached by hand is left alone.
        let day = name
            .strip_prefix(NAME_PREFIX)
            .and_then(|suffix| NaiveDate::parse_from_str(suffix, "%Y%m%d").ok());
        if let Some(day) = day {
            partitions.push(Partition {
                name,
                day,
                detach_pending,
            });
        }
    }
    partitions.sort_by_key(|partition| partition.day);
    Ok(partitions)
}

/// The first day kept when history is kept `days` days: every event
/// received `days` × 24 hours ago or later is on it or after it.
pub fn horizon(now: DateTime<Utc>, days: u32) -> NaiveDate {
    (now - TimeDelta::days(i64::from(days))).date_naive()
}

/// Drops the partitions of days before `first_kept`, oldest first, without
/// blocking writes: `DETACH PARTITION … CONCURRENTLY` (which waits for
/// queries that may still read the partition; writes go on), then `DROP
/// TABLE` of what is by then a table nobody uses. A detach interrupted
/// earlier is finished (`FINALIZE`). With `dry_run`, only says what it
/// would drop. Returns the partitions dropped (or to be dropped).
pub async fn drop_before(
    db: &DatabaseConnection,
    first_kept: NaiveDate,
    dry_run: bool,
) -> Result<Vec<Partition>, DbErr> {
    let expired: Vec<Partition> = list(db)
        .await?
        .into_iter()
        .filter(|partition| partition.day < first_kept)
        .collect();
    if dry_run {
        return Ok(expired);
    }
    for partition in &expired {
        let how = if partition.detach_pending {
            "FINALIZE"
        } else {
            "CONCURRENTLY"
        };
        // Outside any transaction: DETACH … CONCURRENTLY refuses to run in one.
        db.execute_unprepared(&format!(
            "ALTER TABLE {PARENT} DETACH PARTITION \"{}\" {how}",
            partition.name
        ))
        .await?;
        db.execute_unprepared(&format!("DROP TABLE \"{}\"", partition.name))
            .await?;
        metrics::counter!(crate::metrics::HISTORY_PARTITIONS_DROPPED.name).increment(1);
        tracing::info!(day = %partition.day, partition = %partition.name, "history partition dropped (retention)");
    }
    Ok(expired)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_horizon_keeps_every_event_younger_than_the_retention() {
        let now = "2026-12-03T10:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let first_kept = horizon(now, 30);
        assert_eq!(first_kept, NaiveDate::from_ymd_opt(2026, 11, 3).unwrap());
        // An event exactly 30 days old is on the first kept day.
        assert_eq!((now - TimeDelta::days(30)).date_naive(), first_kept);
        // Midnight: the day that just ended is 1 day old at most, so kept with 1.
        let midnight = "2026-12-03T00:00:00Z".parse::<DateTime<Utc>>().unwrap();
        assert_eq!(
            horizon(midnight, 1),
            NaiveDate::from_ymd_opt(2026, 12, 2).unwrap()
        );
    }
}
