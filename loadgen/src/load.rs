//! Driving load: closed loop (a fixed number of connections, each sending
//! its next request as soon as the previous one is answered) or open loop
//! (requests scheduled at a fixed rate whatever the server does, latency
//! counted from the scheduled send time so a stalled server cannot hide its
//! stall by slowing the client down: no coordinated omission).
//!
//! Every loop stops on whichever comes first: its request count, its
//! duration, or a hard time limit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Semaphore};

use crate::client::{Connection, Target};
use crate::tally::{LoadResult, Outcome, Tally};
use crate::workload::{Generator, Workload};

// Where they were before `latency` had a module of its own; `ceiling_db`
// still imports them from here.
pub use crate::latency::{micros, new_histogram, Percentiles};

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
