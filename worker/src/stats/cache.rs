//! Answers shared between readers: one computation at a time, reused for a
//! few seconds.

use sea_orm::{DatabaseConnection, DbErr};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use twilio_protocol::status::MessageStatus;

use super::figures::Stats;
use super::queries;
use super::window::Window;

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
        let stats = Arc::new(queries::compute(db, window, stale_after).await?);
        computed.insert(asked, (Instant::now(), stats.clone()));
        Ok(Some(stats))
    }
}
