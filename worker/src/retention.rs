//! History upkeep: the day partitions ahead of need, and retention. Run by
//! the consumer every hour (`HistoryConfig::upkeep_interval`) and by
//! `worker retention`.

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, DbErr};
use tokio_util::sync::CancellationToken;

use crate::config::HistoryConfig;
use crate::store::partitions::{self, Partition};

/// What one upkeep run did.
#[derive(Debug, Default)]
pub struct Upkeep {
    pub created: usize,
    /// Dropped, or (dry run) to be dropped.
    pub dropped: Vec<Partition>,
    /// How long dropping them took (detaches and drops).
    pub drop_time: std::time::Duration,
}

/// Creates the partitions ahead and, when a retention is set, drops the
/// days before its horizon.
pub async fn run_once(
    db: &DatabaseConnection,
    config: &HistoryConfig,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<Upkeep, DbErr> {
    let created = if dry_run {
        0
    } else {
        partitions::ensure_ahead(db, now).await?
    };
    let started = std::time::Instant::now();
    let dropped = match config.retention_days {
        Some(days) => partitions::drop_before(db, partitions::horizon(now, days), dry_run).await?,
        None => Vec::new(),
    };
    let drop_time = started.elapsed();
    if let Some(oldest) = partitions::list(db).await?.first() {
        let start = oldest.day.and_time(chrono::NaiveTime::MIN).and_utc();
        metrics::gauge!(crate::metrics::HISTORY_OLDEST_DAY.name).set(start.timestamp() as f64);
    }
    Ok(Upkeep {
        created,
        dropped,
        drop_time,
    })
}

/// Runs at once, then every `config.upkeep_interval`, until `stop`; a failed
/// run is logged and the next one tried on schedule (a write that finds its
/// day missing creates it itself, so nothing waits on this).
pub async fn run_periodically(
    db: DatabaseConnection,
    config: HistoryConfig,
    stop: CancellationToken,
) {
    let (db, config) = (&db, &config);
    crate::periodic::every(config.upkeep_interval, stop, move || async move {
        if let Err(error) = run_once(db, config, Utc::now(), false).await {
            tracing::warn!(%error, "history upkeep failed; next on schedule");
        }
    })
    .await;
}
