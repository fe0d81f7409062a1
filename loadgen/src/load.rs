//! Driving load: closed loop (a fixed number of connections, each sending
//! its next request as soon as the previous one is answered) or open loop
//! (requests scheduled at a fixed rate whatever the server does, latency
//! counted from the scheduled send time so a stalled server cannot hide its
//! stall by slowing the client down: no coordinated omission).
//!
//! Every loop stops on whichever comes first: its request count, its
//! duration, or a hard time limit.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Semaphore};

use crate::client::{Answer, Connection, Target};
use crate::workload::{Generator, RequestKind, Workload};

/// Never more than this many requests in one run, whatever was asked.
pub const MAX_REQUESTS: u64 = 50_000_000;

#[derive(Clone, Copy, Debug)]
pub enum Pace {
    /// `concurrency` connections, each one request at a time, back to back.
    Closed { concurrency: usize },
    /// `rate` requests per second on schedule, at most `max_in_flight` at once
    /// (connections are opened as needed and reused).
    Open { rate: f64, max_in_flight: usize },
}

/// When a run stops: whichever limit is reached first.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub requests: u64,
    pub duration: Duration,
}

pub struct LoadPlan {
    pub target: Target,
    pub workload: Arc<Workload>,
    pub pace: Pace,
    pub limits: Limits,
    /// Longest wait for one answer.
    pub request_timeout: Duration,
}

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
    fn new() -> Self {
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

    fn record(&mut self, outcome: &Outcome) {
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

    fn merge(&mut self, other: Tally) {
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

struct Outcome {
    kind: RequestKind,
    event_id: u64,
    message_id: u64,
    answer: Answer,
    latency: Duration,
    service_latency: Duration,
}

/// The result of a run before persistence is looked at.
pub struct LoadResult {
    pub tally: Tally,
    pub elapsed: Duration,
}

pub async fn drive(plan: LoadPlan) -> LoadResult {
    match plan.pace {
        Pace::Closed { concurrency } => closed_loop(&plan, concurrency.max(1)).await,
        Pace::Open {
            rate,
            max_in_flight,
        } => open_loop(&plan, rate, max_in_flight.max(1)).await,
    }
}

async fn closed_loop(plan: &LoadPlan, concurrency: usize) -> LoadResult {
    let started = Instant::now();
    let deadline = started + plan.limits.duration;
    let claimed = Arc::new(AtomicU64::new(0));
    let max_requests = plan.limits.requests.min(MAX_REQUESTS);
    let lanes = concurrency as u64;
    let mut tasks = Vec::with_capacity(concurrency);
    for lane in 0..lanes {
        let mut generator = Generator::new(plan.workload.clone(), lane, lanes);
        let mut connection = Connection::new(plan.target.clone(), plan.request_timeout);
        let claimed = claimed.clone();
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::new();
            while Instant::now() < deadline
                && claimed.fetch_add(1, Ordering::Relaxed) < max_requests
            {
                let request = generator.next_request();
                let sent = Instant::now();
                let answer = connection.post_callback(&request).await;
                let took = sent.elapsed();
                tally.record(&Outcome {
                    kind: request.kind,
                    event_id: request.event_id,
                    message_id: request.message_id,
                    answer,
                    latency: took,
                    service_latency: took,
                });
            }
            tally
        }));
    }
    let mut tally = Tally::new();
    for task in tasks {
        if let Ok(lane_tally) = task.await {
            tally.merge(lane_tally);
        }
    }
    LoadResult {
        tally,
        elapsed: started.elapsed(),
    }
}

async fn open_loop(plan: &LoadPlan, rate: f64, max_in_flight: usize) -> LoadResult {
    let rate = rate.max(0.001);
    let max_requests = plan.limits.requests.min(MAX_REQUESTS);
    let mut generator = Generator::new(plan.workload.clone(), 0, 1);
    let pool: Arc<Mutex<Vec<Connection>>> = Arc::new(Mutex::new(Vec::new()));
    let in_flight = Arc::new(Semaphore::new(max_in_flight));
    let (outcomes, mut received) = mpsc::unbounded_channel::<Outcome>();
    let collector = tokio::spawn(async move {
        let mut tally = Tally::new();
        while let Some(outcome) = received.recv().await {
            tally.record(&outcome);
        }
        tally
    });

    let started = Instant::now();
    let hard_stop = started + plan.limits.duration;
    for index in 0..max_requests {
        let scheduled = started + Duration::from_secs_f64(index as f64 / rate);
        if scheduled >= hard_stop || Instant::now() >= hard_stop {
            break;
        }
        if scheduled > Instant::now() {
            tokio::time::sleep_until(scheduled.into()).await;
        }
        let request = generator.next_request();
        // Waiting here delays the send, never the clock: latency still
        // counts from `scheduled`.
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        let pool = pool.clone();
        let outcomes = outcomes.clone();
        let target = plan.target.clone();
        let timeout = plan.request_timeout;
        tokio::spawn(async move {
            let taken = pool.lock().ok().and_then(|mut idle| idle.pop());
            let mut connection = taken.unwrap_or_else(|| Connection::new(target, timeout));
            let sent = Instant::now();
            let answer = connection.post_callback(&request).await;
            let done = Instant::now();
            if let Ok(mut idle) = pool.lock() {
                idle.push(connection);
            }
            drop(permit);
            let _ = outcomes.send(Outcome {
                kind: request.kind,
                event_id: request.event_id,
                message_id: request.message_id,
                answer,
                latency: done - scheduled,
                service_latency: done - sent,
            });
        });
    }
    // Every request has answered (or timed out) once all permits are back.
    let _ = in_flight.acquire_many(max_in_flight as u32).await;
    let elapsed = started.elapsed();
    drop(outcomes);
    let tally = collector.await.unwrap_or_else(|_| Tally::new());
    LoadResult { tally, elapsed }
}

pub fn new_histogram() -> Histogram<u64> {
    // 1 µs to 1 h at 3 significant digits.
    match Histogram::new_with_bounds(1, 3_600_000_000, 3) {
        Ok(histogram) => histogram,
        Err(error) => panic!("constant histogram bounds refused: {error}"),
    }
}

pub fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros())
        .unwrap_or(u64::MAX)
        .max(1)
}

fn kind_index(kind: RequestKind) -> usize {
    match kind {
        RequestKind::Genuine => 0,
        RequestKind::Duplicate => 1,
        RequestKind::BadSignature => 2,
    }
}

/// Latency percentiles in milliseconds.
#[derive(Clone, Debug, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
}

impl Percentiles {
    /// From a histogram of microseconds.
    pub fn from_micros(histogram: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        if histogram.is_empty() {
            return Self {
                count: 0,
                mean: 0.0,
                p50: 0.0,
                p90: 0.0,
                p99: 0.0,
                p99_9: 0.0,
                max: 0.0,
            };
        }
        Self {
            count: histogram.len(),
            mean: histogram.mean() / 1000.0,
            p50: ms(histogram.value_at_quantile(0.50)),
            p90: ms(histogram.value_at_quantile(0.90)),
            p99: ms(histogram.value_at_quantile(0.99)),
            p99_9: ms(histogram.value_at_quantile(0.999)),
            max: ms(histogram.max()),
        }
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
