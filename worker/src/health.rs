//! What `/readyz` reports: the consumer is attached and the database answers.

use crate::metrics::{CONSUMING, DATABASE_UP};
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Default)]
pub struct WorkerHealth {
    consuming: AtomicBool,
    database_up: AtomicBool,
}

impl WorkerHealth {
    pub fn set_consuming(&self, consuming: bool) {
        self.consuming.store(consuming, Ordering::SeqCst);
        metrics::gauge!(CONSUMING.name).set(if consuming { 1.0 } else { 0.0 });
    }

    pub fn consuming(&self) -> bool {
        self.consuming.load(Ordering::SeqCst)
    }

    pub fn set_database_up(&self, up: bool) {
        self.database_up.store(up, Ordering::SeqCst);
        metrics::gauge!(DATABASE_UP.name).set(if up { 1.0 } else { 0.0 });
    }

    pub fn database_up(&self) -> bool {
        self.database_up.load(Ordering::SeqCst)
    }
}
