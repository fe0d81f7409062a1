//! Waiting for the database: the one backoff every wait for it uses.

use sea_orm::DatabaseConnection;
use service_kit::backoff::Backoff;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use crate::store;

/// The backoff of every wait for the database: 250 ms doubling to 5 s.
pub fn backoff() -> Backoff {
    Backoff::new(Duration::from_millis(250), Duration::from_secs(5))
}

/// Returns once the database answers, or `stop` is cancelled.
pub async fn wait_until_reachable(db: &DatabaseConnection, stop: &CancellationToken) {
    let mut backoff = backoff();
    while !stop.is_cancelled() && !store::database_reachable(db).await {
        tokio::select! {
            () = tokio::time::sleep(backoff.next_delay()) => {}
            () = stop.cancelled() => {}
        }
    }
}
