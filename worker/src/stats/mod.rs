//! `GET /stats`: how messages first seen in a time window fared, computed
//! from the database: current statuses, the commonest error codes, time
//! from first seen to final, conflicting outcomes, and messages gone stale
//! (no news for longer than `WORKER_RECONCILE_AFTER` allows their status).

mod cache;
mod figures;
mod queries;
mod window;

pub use cache::StatsCache;
#[cfg(feature = "test-support")]
pub use cache::REUSE_FOR;
pub use figures::{Percentiles, Stats};
pub use window::{instant, instant_or_ago, Window};
