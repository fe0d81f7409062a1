//! What came back from a run: answers counted per connection, merged, and
//! reported.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use crate::client::Answer;
use crate::latency::{micros, new_histogram, Percentiles};
use crate::workload::RequestKind;

/// What came back, merged over every connection.
pub struct Tally {
    /// Microseconds; from the scheduled send time in open loop.
    latency: Histogram<u64>,
    /// Microseconds from the moment the request was actually sent.
    service_latency: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    transport_errors: u64,
    unexpected_answers: u64,
    sent: [u64; 3],
    accepted_events: HashSet<u64>,
    accepted_messages: HashSet<u64>,
    unanswered_events: HashSet<u64>,
}

impl Tally {
    pub(crate) fn new() -> Self {
        Self {
            latency: new_histogram(),
            service_latency: new_histogram(),
            statuses: BTreeMap::new(),
            transport_errors: 0,
            unexpected_answers: 0,
            sent: [0; 3],
            accepted_events: HashSet::new(),
            accepted_messages: HashSet::new(),
            unanswered_events: HashSet::new(),
        }
    }

    pub(crate) fn record(&mut self, outcome: &Outcome) {
        self.latency.saturating_record(micros(outcome.latency));
        self.service_latency
            .saturating_record(micros(outcome.service_latency));
        self.sent[kind_index(outcome.kind)] += 1;
        match outcome.answer {
            Answer::Status(status) => {
                *self.statuses.entry(status).or_default() += 1;
                if status != outcome.kind.expected_status() {
                    self.unexpected_answers += 1;
                }
                if status == 200 && outcome.kind != RequestKind::BadSignature {
                    self.accepted_events.insert(outcome.event_id);
                    self.accepted_messages.insert(outcome.message_id);
                }
            }
            Answer::TransportError => {
                self.transport_errors += 1;
                self.unexpected_answers += 1;
                if outcome.kind != RequestKind::BadSignature {
                    self.unanswered_events.insert(outcome.event_id);
                }
            }
        }
    }

    pub(crate) fn merge(&mut self, other: Tally) {
        let _ = self.latency.add(&other.latency);
        let _ = self.service_latency.add(&other.service_latency);
        for (status, count) in other.statuses {
            *self.statuses.entry(status).or_default() += count;
        }
        self.transport_errors += other.transport_errors;
        self.unexpected_answers += other.unexpected_answers;
        for (mine, theirs) in self.sent.iter_mut().zip(other.sent) {
            *mine += theirs;
        }
        self.accepted_events.extend(other.accepted_events);
        self.accepted_messages.extend(other.accepted_messages);
        self.unanswered_events.extend(other.unanswered_events);
    }

    pub fn requests(&self) -> u64 {
        self.sent.iter().sum()
    }

    pub fn accepted(&self) -> u64 {
        self.statuses.get(&200).copied().unwrap_or(0)
    }

    pub fn unique_accepted_events(&self) -> u64 {
        self.accepted_events.len() as u64
    }

    pub fn accepted_messages(&self) -> u64 {
        self.accepted_messages.len() as u64
    }

    /// Events none of whose requests got an answer: the server may or may
    /// not have taken them.
    pub fn unknown_outcome_events(&self) -> u64 {
        self.unanswered_events
            .difference(&self.accepted_events)
            .count() as u64
    }

    pub fn unexpected_answers(&self) -> u64 {
        self.unexpected_answers
    }
}

/// One request's answer and how long it took.
pub(crate) struct Outcome {
    pub kind: RequestKind,
    pub event_id: u64,
    pub message_id: u64,
    pub answer: Answer,
    pub latency: Duration,
    pub service_latency: Duration,
}

/// The result of a run before persistence is looked at.
pub struct LoadResult {
    pub tally: Tally,
    pub elapsed: Duration,
}

fn kind_index(kind: RequestKind) -> usize {
    match kind {
        RequestKind::Genuine => 0,
        RequestKind::Duplicate => 1,
        RequestKind::BadSignature => 2,
    }
}

/// Requests by why they were sent.
#[derive(Clone, Debug, Serialize)]
pub struct SentCounts {
    pub genuine: u64,
    pub duplicate: u64,
    pub bad_signature: u64,
}

/// The HTTP side of a run, ready to print.
#[derive(Clone, Debug, Serialize)]
pub struct HttpReport {
    pub elapsed_s: f64,
    pub requests: u64,
    pub requests_per_s: f64,
    pub accepted: u64,
    pub accepted_per_s: f64,
    pub status_counts: BTreeMap<String, u64>,
    pub transport_errors: u64,
    /// Answers other than 200 for a valid request or 403 for a bad signature.
    pub unexpected_answers: u64,
    pub sent: SentCounts,
    pub unique_accepted_events: u64,
    pub accepted_messages: u64,
    pub unknown_outcome_events: u64,
    /// From the scheduled send time (open loop) or the send (closed loop).
    pub latency_ms: Percentiles,
    /// From the actual send; differs from `latency_ms` in open loop only.
    pub service_latency_ms: Percentiles,
}

impl HttpReport {
    pub fn new(result: &LoadResult) -> Self {
        let tally = &result.tally;
        let seconds = result.elapsed.as_secs_f64().max(1e-9);
        Self {
            elapsed_s: result.elapsed.as_secs_f64(),
            requests: tally.requests(),
            requests_per_s: tally.requests() as f64 / seconds,
            accepted: tally.accepted(),
            accepted_per_s: tally.accepted() as f64 / seconds,
            status_counts: tally
                .statuses
                .iter()
                .map(|(status, count)| (status.to_string(), *count))
                .collect(),
            transport_errors: tally.transport_errors,
            unexpected_answers: tally.unexpected_answers(),
            sent: SentCounts {
                genuine: tally.sent[0],
                duplicate: tally.sent[1],
                bad_signature: tally.sent[2],
            },
            unique_accepted_events: tally.unique_accepted_events(),
            accepted_messages: tally.accepted_messages(),
            unknown_outcome_events: tally.unknown_outcome_events(),
            latency_ms: Percentiles::from_micros(&tally.latency),
            service_latency_ms: Percentiles::from_micros(&tally.service_latency),
        }
    }
}
