//! What `GET /stats` answers.

use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Serialize, PartialEq)]
pub struct Stats {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub messages: i64,
    /// Current status → messages.
    pub by_status: BTreeMap<String, i64>,
    pub top_error_codes: Vec<ErrorCount>,
    pub time_to_final: TimeToFinal,
    pub conflicting: Conflicting,
    /// Status → messages without news for longer than that status allows.
    pub stale: BTreeMap<String, i64>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct ErrorCount {
    pub code: i32,
    pub title: &'static str,
    pub messages: i64,
}

/// Seconds from a message's first event to its first final one.
#[derive(Debug, Serialize, PartialEq)]
pub struct Percentiles {
    pub messages: i64,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct TimeToFinal {
    #[serde(flatten)]
    pub all: Percentiles,
    /// By the message's current (final) status.
    pub by_outcome: BTreeMap<String, Percentiles>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Conflicting {
    pub messages: i64,
    /// Of the messages with an outcome (delivered, undelivered, failed).
    pub share: f64,
}
