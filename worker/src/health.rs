//! What `/readyz` reports: the consumer is attached, the database answers,
//! and, when writes are held, why.

use crate::metrics::{CONSUMING, DATABASE_UP};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

/// Why the consumer holds its deliveries instead of storing them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldReason {
    /// The database is away or refuses writes (read-only, disk full).
    DatabaseUnavailable,
    /// The schema does not fit this release's statements (an upgrade or a
    /// migration under way): resumes once it does.
    SchemaMismatch,
    /// Writes were cancelled by the statement timeout: the database is overloaded.
    DatabaseTooSlow,
}

impl HoldReason {
    fn code(reason: Option<Self>) -> u8 {
        match reason {
            None => 0,
            Some(Self::DatabaseUnavailable) => 1,
            Some(Self::SchemaMismatch) => 2,
            Some(Self::DatabaseTooSlow) => 3,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::DatabaseUnavailable),
            2 => Some(Self::SchemaMismatch),
            3 => Some(Self::DatabaseTooSlow),
            _ => None,
        }
    }
}

#[derive(Debug, Default)]
pub struct WorkerHealth {
    consuming: AtomicBool,
    holding: AtomicU8,
}

impl WorkerHealth {
    pub fn set_consuming(&self, consuming: bool) {
        self.consuming.store(consuming, Ordering::SeqCst);
        metrics::gauge!(CONSUMING.name).set(if consuming { 1.0 } else { 0.0 });
    }

    pub fn consuming(&self) -> bool {
        self.consuming.load(Ordering::SeqCst)
    }

    /// Writes are held for `reason`, or (`None`) go through again.
    pub fn set_holding(&self, reason: Option<HoldReason>) {
        self.holding
            .store(HoldReason::code(reason), Ordering::SeqCst);
        metrics::gauge!(DATABASE_UP.name).set(if reason.is_none() { 1.0 } else { 0.0 });
    }

    pub fn holding(&self) -> Option<HoldReason> {
        HoldReason::from_code(self.holding.load(Ordering::SeqCst))
    }
}
