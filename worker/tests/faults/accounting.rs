//! Load with a record of every answer, and the exact accounting afterwards.

use futures_util::stream::{self, StreamExt};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use testkit::{message_sid, status_params};
use twilio_protocol::status::MessageStatus;

/// One callback: a message and one of its statuses.
pub type CallbackId = (String, String);

/// What the load got back.
#[derive(Debug, Default)]
pub struct LoadResult {
    /// Distinct callbacks sent (copies count once).
    pub sent: usize,
    pub accepted: HashSet<CallbackId>,
    /// Answered with something other than 2xx, or no answer at all.
    pub refused: HashSet<CallbackId>,
    /// Why each refused one was: its HTTP status, or the client's error.
    pub refusals: Vec<(CallbackId, String)>,
    /// The longest any request waited for its answer (or its failure).
    pub slowest: Duration,
    /// The 99th percentile of those waits.
    pub p99: Duration,
}

impl LoadResult {
    /// Two loads' answers as one (traffic split across two ingests).
    pub fn merge(mut self, other: LoadResult) -> LoadResult {
        self.sent += other.sent;
        self.accepted.extend(other.accepted);
        self.refused.extend(other.refused);
        self.refusals.extend(other.refusals);
        self.slowest = self.slowest.max(other.slowest);
        self.p99 = self.p99.max(other.p99);
        self
    }

    /// One line: what was sent and answered, and how long answers took.
    pub fn summary(&self) -> String {
        format!(
            "{} sent, {} answered 2xx, p99 {:?}, slowest {:?}",
            self.sent,
            self.accepted.len(),
            self.p99,
            self.slowest
        )
    }
}

/// Every message goes queued → sent → delivered (undelivered for some), the
/// callbacks shuffled across messages so they arrive out of order.
pub fn callbacks(messages: u64) -> Vec<CallbackId> {
    let mut all = Vec::new();
    for n in 0..messages {
        let last = if n % 10 == 0 {
            "undelivered"
        } else {
            "delivered"
        };
        for status in ["queued", "sent", last] {
            all.push((message_sid(n), status.to_owned()));
        }
    }
    // A fixed interleaving: stride through the list.
    let stride = 7;
    let len = all.len();
    (0..len)
        .map(|i| all[(i * stride) % len].clone())
        .collect::<Vec<_>>()
}

/// Posts every callback, `concurrency` at a time, at most `per_second` a
/// second if given; `progress` counts answers.
pub async fn drive(
    ingest_url: String,
    callbacks: Vec<CallbackId>,
    concurrency: usize,
    per_second: Option<u32>,
    progress: Arc<AtomicUsize>,
) -> LoadResult {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let start = tokio::time::Instant::now();
    let answers: Vec<(CallbackId, Result<(), String>, Duration)> =
        stream::iter(callbacks.into_iter().enumerate())
            .map(|(index, (sid, status))| {
                let client = client.clone();
                let url = ingest_url.clone();
                let progress = progress.clone();
                async move {
                    if let Some(rate) = per_second {
                        tokio::time::sleep_until(
                            start + Duration::from_secs_f64(index as f64 / f64::from(rate)),
                        )
                        .await;
                    }
                    let error_code = (status == "undelivered").then_some(30003);
                    let params = status_params(&sid, &status, error_code);
                    let target = format!("{url}/twilio/status");
                    let sent_at = tokio::time::Instant::now();
                    let answer = client
                        .post(&target)
                        .header("Content-Type", "application/x-www-form-urlencoded")
                        .header("X-Twilio-Signature", testkit::sign(&target, &params))
                        .body(params.encode())
                        .send()
                        .await;
                    let ok = match answer {
                        Ok(response) if response.status().is_success() => Ok(()),
                        Ok(response) => Err(format!("HTTP {}", response.status())),
                        Err(error) => Err(format!("no answer: {error:?}")),
                    };
                    let waited = sent_at.elapsed();
                    progress.fetch_add(1, Ordering::SeqCst);
                    ((sid, status), ok, waited)
                }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
    // Distinct callbacks: a copy sent twice (Twilio's retry) is one callback.
    let distinct: HashSet<&CallbackId> = answers.iter().map(|(id, _, _)| id).collect();
    let mut result = LoadResult {
        sent: distinct.len(),
        ..LoadResult::default()
    };
    let mut waits: Vec<Duration> = answers.iter().map(|(_, _, waited)| *waited).collect();
    waits.sort_unstable();
    result.p99 = waits
        .get((waits.len() * 99 / 100).min(waits.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default();
    for (id, ok, waited) in answers {
        result.slowest = result.slowest.max(waited);
        match ok {
            Ok(()) => {
                result.accepted.insert(id);
            }
            Err(why) => {
                result.refused.insert(id.clone());
                result.refusals.push((id, why));
            }
        }
    }
    result
}

/// Waits until `progress` reaches `count`.
pub async fn reached(progress: &AtomicUsize, count: usize) {
    while progress.load(Ordering::SeqCst) < count {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The rows, counted per callback.
/// Waits up to `within` until every callback `load` got a 2xx for is stored.
pub async fn wait_until_stored(db: &DatabaseConnection, load: &LoadResult, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let stored = stored_events(db).await;
        let missing: Vec<&CallbackId> = load
            .accepted
            .iter()
            .filter(|id| !stored.contains_key(id))
            .collect();
        if missing.is_empty() {
            return;
        }
        // Saying how many and which is where an investigation starts.
        assert!(
            tokio::time::Instant::now() < deadline,
            "after {within:?}, {} of {} accepted callbacks are not stored; the first: {:?}",
            missing.len(),
            load.accepted.len(),
            &missing[..missing.len().min(5)]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn stored_events(db: &DatabaseConnection) -> HashMap<CallbackId, i64> {
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT message_sid, status, count(*) AS n FROM message_status_events GROUP BY message_sid, status",
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|row| {
            let id = (
                row.try_get::<String>("", "message_sid").unwrap(),
                row.try_get::<String>("", "status").unwrap(),
            );
            (id, row.try_get::<i64>("", "n").unwrap())
        })
        .collect()
}

/// The accounting every scenario ends with.
#[derive(Debug)]
pub struct Accounting {
    pub sent: usize,
    pub accepted: usize,
    pub refused: usize,
    pub rows: usize,
    pub lost: usize,
    pub duplicated: usize,
    /// Answered with an error, yet stored (the broker had it; Twilio's retry would dedupe).
    pub refused_but_stored: usize,
    pub phantom: usize,
    pub projection_mismatches: usize,
}

pub async fn account(db: &DatabaseConnection, load: &LoadResult, all: &[CallbackId]) -> Accounting {
    let stored = stored_events(db).await;
    let known: HashSet<&CallbackId> = all.iter().collect();
    let lost = load
        .accepted
        .iter()
        .filter(|id| !stored.contains_key(*id))
        .count();
    let duplicated = stored.values().filter(|n| **n > 1).count();
    let phantom = stored.keys().filter(|id| !known.contains(id)).count();
    let refused_but_stored = load
        .refused
        .iter()
        .filter(|id| stored.contains_key(*id))
        .count();

    // What a clean run over the stored events gives, per message.
    let mut expected: BTreeMap<&str, (MessageStatus, i32)> = BTreeMap::new();
    for (sid, status) in stored.keys() {
        let status: MessageStatus = status.parse().unwrap();
        let entry = expected.entry(sid.as_str()).or_insert((status, 0));
        if status.precedence() > entry.0.precedence() {
            entry.0 = status;
        }
        entry.1 += 1;
    }
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT message_sid, status, event_count FROM messages",
        ))
        .await
        .unwrap();
    let mut projection_mismatches = expected.len().abs_diff(rows.len());
    for row in rows {
        let sid = row.try_get::<String>("", "message_sid").unwrap();
        let status = row.try_get::<String>("", "status").unwrap();
        let count = row.try_get::<i32>("", "event_count").unwrap();
        match expected.get(sid.as_str()) {
            Some((want, want_count)) if want.as_str() == status && *want_count == count => {}
            _ => projection_mismatches += 1,
        }
    }
    Accounting {
        sent: load.sent,
        accepted: load.accepted.len(),
        refused: load.refused.len(),
        rows: stored.values().map(|n| *n as usize).sum(),
        lost,
        duplicated,
        refused_but_stored,
        phantom,
        projection_mismatches,
    }
}

impl Accounting {
    pub fn assert_exact(&self, scenario: &str) {
        println!("{scenario}: {self:?}");
        assert_eq!(
            self.accepted + self.refused,
            self.sent,
            "{scenario}: every request answered or failed"
        );
        assert_eq!(
            self.lost, 0,
            "{scenario}: accepted callbacks lost: {self:?}"
        );
        assert_eq!(self.duplicated, 0, "{scenario}: duplicated rows: {self:?}");
        assert_eq!(
            self.phantom, 0,
            "{scenario}: rows for callbacks never sent: {self:?}"
        );
        assert_eq!(
            self.projection_mismatches, 0,
            "{scenario}: projection differs from a clean run: {self:?}"
        );
        assert_eq!(
            self.rows,
            self.accepted + self.refused_but_stored,
            "{scenario}: {self:?}"
        );
    }
}
