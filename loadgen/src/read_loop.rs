//! Closed-loop GETs against the worker's API, shared by `read` and `search`:
//! C kept-alive connections, each asking for its next path as soon as the
//! previous answer is read, taking the paths in turn. Latency is from the
//! request to the end of its body; what a caller wants to know about a 200
//! answer's body (the rows a search returned) is counted after the clock
//! stops.

use anyhow::Context;
use hdrhistogram::Histogram;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client::{Answer, Connection, Target};
use crate::latency::{micros, new_histogram};

/// No answer in this long is a transport error: the API answers within
/// seconds or not at all.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the GETs go and how many.
#[derive(Clone, Debug)]
pub struct ReadPlan {
    pub target: Target,
    /// The API token, if the worker asks for one.
    pub bearer: Option<String>,
    /// Requests in all (stops earlier at the time limit).
    pub requests: usize,
    /// Requests in flight, one connection each.
    pub concurrency: usize,
    /// Requests each connection sends first, not counted: its connection
    /// and the worker's first use of a statement are not what is measured.
    pub warmup_per_connection: usize,
    pub time_limit: Duration,
}

impl ReadPlan {
    /// A connection to the target, carrying the token if there is one.
    pub fn connect(&self) -> anyhow::Result<Connection> {
        let connection = Connection::new(self.target.clone(), REQUEST_TIMEOUT);
        match &self.bearer {
            Some(token) => connection.with_bearer(token),
            None => Ok(connection),
        }
    }
}

/// What the GETs measured.
pub struct ReadOutcome {
    /// Microseconds, every request (answered or not).
    pub latency: Histogram<u64>,
    /// Answers other than 200, and requests with no answer.
    pub not_ok: usize,
    /// 200 answers.
    pub ok: u64,
    /// What `count` found in the 200 answers' bodies, summed.
    pub counted: u64,
}

/// GETs `paths` in turn under `plan`; `count` reads each 200 answer's body.
pub async fn drive(
    plan: &ReadPlan,
    paths: Arc<Vec<String>>,
    count: fn(&[u8]) -> u64,
) -> anyhow::Result<ReadOutcome> {
    anyhow::ensure!(!paths.is_empty(), "nothing to ask for");
    let deadline = Instant::now() + plan.time_limit.max(Duration::from_secs(1));
    let concurrency = plan.concurrency.max(1);
    let per_slot = plan.requests.div_ceil(concurrency);
    let warmup = plan.warmup_per_connection;
    let mut slots = Vec::with_capacity(concurrency);
    for slot in 0..concurrency {
        let paths = paths.clone();
        let mut connection = plan.connect()?;
        slots.push(tokio::spawn(async move {
            let mut outcome = ReadOutcome {
                latency: new_histogram(),
                not_ok: 0,
                ok: 0,
                counted: 0,
            };
            for n in 0..warmup {
                let _ = connection
                    .get(&paths[(slot + n * concurrency) % paths.len()])
                    .await;
            }
            for n in 0..per_slot {
                if Instant::now() > deadline {
                    break;
                }
                let path = &paths[(slot + n * concurrency) % paths.len()];
                let started = Instant::now();
                let (answer, body) = connection.get(path).await;
                outcome.latency.saturating_record(micros(started.elapsed()));
                if answer == Answer::Status(200) {
                    outcome.ok += 1;
                    outcome.counted += count(&body);
                } else {
                    outcome.not_ok += 1;
                }
            }
            outcome
        }));
    }
    let mut total = ReadOutcome {
        latency: new_histogram(),
        not_ok: 0,
        ok: 0,
        counted: 0,
    };
    for slot in slots {
        let outcome = slot.await.context("a reader task failed")?;
        total.latency.add(&outcome.latency)?;
        total.not_ok += outcome.not_ok;
        total.ok += outcome.ok;
        total.counted += outcome.counted;
    }
    Ok(total)
}
