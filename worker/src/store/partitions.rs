//! The history's day partitions: created ahead of need, created on demand
//! for a day a write finds missing, and dropped whole past the retention
//! horizon. The partition layout itself is the migration's
//! (`m20261204_000001_partitioned_history`, and its SQL function
//! `message_status_events_partition(day)`, which this module calls).

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use sea_orm::sqlx;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement};
use serde::Serialize;
use std::collections::BTreeSet;

use super::outage::{from_sqlx, sqlstate};

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
    /// Still a partition (false: a day's table left detached by a run
    /// stopped between its detach and its drop).
    pub attached: bool,
}

/// Whether a write failed because its day has no partition yet: a check
/// violation, which the store statement can raise for nothing else (no
/// table it writes has a CHECK constraint of its own; the partitions' match
/// their bounds).
pub fn is_missing_partition(error: &DbErr) -> bool {
    sqlstate(error).as_deref() == Some("23514")
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
    Ok(days(db).await?.into_iter().filter(|p| p.attached).collect())
}

/// The day partitions and the days' tables left detached, oldest first.
async fn days(db: &impl ConnectionTrait) -> Result<Vec<Partition>, DbErr> {
    let rows = db
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            format!(
                "SELECT c.relname::text AS name, COALESCE(i.inhdetachpending, false) AS detach_pending,
                        i.inhrelid IS NOT NULL AS attached
                 FROM pg_class c
                 LEFT JOIN pg_inherits i ON i.inhrelid = c.oid AND i.inhparent = '{PARENT}'::regclass
                 WHERE c.relkind = 'r' AND c.relnamespace = current_schema()::regnamespace
                   AND c.relname ~ '^{NAME_PREFIX}[0-9]{{8}}$'"
            ),
        ))
        .await?;
    let mut partitions = Vec::with_capacity(rows.len());
    for row in rows {
        let name: String = row.try_get("", "name")?;
        let detach_pending: bool = row.try_get("", "detach_pending")?;
        let attached: bool = row.try_get("", "attached")?;
        // Only the migration's naming; anything else attached by hand is left alone.
        let day = name
            .strip_prefix(NAME_PREFIX)
            .and_then(|suffix| NaiveDate::parse_from_str(suffix, "%Y%m%d").ok());
        if let Some(day) = day {
            partitions.push(Partition {
                name,
                day,
                detach_pending,
                attached,
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
/// earlier is finished (`FINALIZE`); a day's table left detached is dropped.
/// One run at a time across workers: a run that finds another one going
/// drops nothing. With `dry_run`, only says what it would drop. Returns the
/// days dropped (or to be dropped).
pub async fn drop_before(
    db: &DatabaseConnection,
    first_kept: NaiveDate,
    dry_run: bool,
) -> Result<Vec<Partition>, DbErr> {
    let expired = |all: Vec<Partition>| -> Vec<Partition> {
        all.into_iter().filter(|p| p.day < first_kept).collect()
    };
    if dry_run {
        return Ok(expired(days(db).await?));
    }
    // A connection of its own, out of the pool: it holds the session lock
    // that keeps other workers' runs out, and takes it along if this run is
    // cancelled half-way (the connection closes), instead of going back to
    // the pool still holding it. The detaches run on it too: DETACH …
    // CONCURRENTLY refuses to run inside a transaction.
    let mut connection = db
        .get_postgres_connection_pool()
        .acquire()
        .await
        .map_err(from_sqlx)?
        .detach();
    let ours: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
        .bind("message_status_events retention")
        .fetch_one(&mut connection)
        .await
        .map_err(from_sqlx)?;
    if !ours {
        tracing::info!("retention: another worker is running it; nothing dropped here");
        return Ok(Vec::new());
    }
    let mut dropped = Vec::new();
    for partition in expired(days(db).await?) {
        let detach = match (partition.attached, partition.detach_pending) {
            (false, _) => None,
            (true, true) => Some("FINALIZE"),
            (true, false) => Some("CONCURRENTLY"),
        };
        if let Some(how) = detach {
            execute(
                &mut connection,
                format!(
                    "ALTER TABLE {PARENT} DETACH PARTITION \"{}\" {how}",
                    partition.name
                ),
            )
            .await?;
        }
        execute(
            &mut connection,
            format!("DROP TABLE IF EXISTS \"{}\"", partition.name),
        )
        .await?;
        metrics::counter!(crate::metrics::HISTORY_PARTITIONS_DROPPED.name).increment(1);
        tracing::info!(day = %partition.day, partition = %partition.name, "history partition dropped (retention)");
        dropped.push(partition);
    }
    // Closing the connection releases the lock.
    let _ = sqlx::Connection::close(connection).await;
    Ok(dropped)
}

/// Runs one statement of `drop_before` on its own connection. Its table
/// names come from the catalog, matched against `^message_status_events_[0-9]{8}$`.
async fn execute(connection: &mut sqlx::PgConnection, sql: String) -> Result<(), DbErr> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(connection)
        .await
        .map(|_| ())
        .map_err(from_sqlx)
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
