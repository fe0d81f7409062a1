//! `/readyz`: the worker's answer to `service_kit::probes`, which also
//! serves `/healthz` and `/metrics`.

use service_kit::probes::{Probe, ProbeBody, Readiness};

use super::state::HttpState;
use crate::store;

/// Ready when consuming, the database answers now, and writes are not held
/// (refused, or a schema that does not fit: `holding` says which).
impl Readiness for HttpState {
    async fn readiness(&self) -> Probe {
        let consuming = self.health.consuming();
        let database_up = store::database_reachable(&self.db).await;
        let holding = self.health.holding();
        let body = serde_json::json!({
            "consuming": consuming,
            "database": database_up,
            "writable": holding.is_none(),
            "holding": holding,
            "change_feed": self.feed_status.detail(),
        });
        Probe {
            ready: consuming && database_up && holding.is_none(),
            body: ProbeBody::Json(body),
        }
    }
}
