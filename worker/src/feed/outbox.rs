//! The outbox's SQL: the relay reads the oldest changes and removes those
//! RabbitMQ confirmed; every worker measures what waits.

use sea_orm::sqlx::{self, PgConnection};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement};

use super::change::OutboxRow;

/// A round: among the oldest `limit` changes waiting, the first of each
/// message (the others wait until it is confirmed), oldest first. Ids
/// follow the order changes were recorded, so per message they follow
/// `sequence`: a message's next change cannot be inserted before its
/// previous one committed.
pub async fn next_round(connection: &mut PgConnection, limit: i64) -> sqlx::Result<Vec<OutboxRow>> {
    let rows = sqlx::query(
        "SELECT id, change_id, message_sid, sequence, status, previous_status, error_code,
                final, account_sid, from_address, to_address, occurred_at, recorded_at,
                traceparent
         FROM (SELECT DISTINCT ON (message_sid) *
               FROM (SELECT * FROM message_changes ORDER BY id LIMIT $1) oldest
               ORDER BY message_sid, id) firsts
         ORDER BY id",
    )
    .bind(limit)
    .fetch_all(connection)
    .await?;
    rows.iter().map(OutboxRow::from_row).collect()
}

/// Removes published changes.
pub async fn remove(connection: &mut PgConnection, ids: &[i64]) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM message_changes WHERE id = ANY($1)")
        .bind(ids)
        .execute(connection)
        .await
        .map(|_| ())
}

/// How many changes wait, and how old the oldest is (seconds; 0 for none).
pub async fn measure(db: &DatabaseConnection) -> Result<(u64, f64), DbErr> {
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT count(*) AS depth,
                    COALESCE(EXTRACT(EPOCH FROM now() - min(recorded_at)), 0)::float8 AS oldest
             FROM message_changes",
        ))
        .await?;
    let Some(row) = row else {
        return Ok((0, 0.0));
    };
    let depth: i64 = row.try_get("", "depth")?;
    let oldest: f64 = row.try_get("", "oldest")?;
    Ok((u64::try_from(depth).unwrap_or(0), oldest.max(0.0)))
}
