//! Heavy readers cannot starve the writers: the read API has its own small
//! pool, so a flood of expensive `GET /stats` never takes the connections
//! the consumers store with, and every read answers.

use crate::helpers::{execute, wait_for_event_rows, TestPipeline};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use testkit::{message_sid, status_params};

const READERS: usize = 16;

/// Most connections the worker's read pool held at once, sampled until `done`.
async fn watch_read_connections(
    db: sea_orm::DatabaseConnection,
    database: String,
    done: Arc<AtomicBool>,
) -> i64 {
    let mut most = 0;
    while !done.load(Ordering::SeqCst) {
        let row = db
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                format!(
                    "SELECT count(*) AS n FROM pg_stat_activity \
                     WHERE datname = '{database}' AND application_name = 'worker-reads' \
                     AND backend_type = 'client backend'"
                ),
            ))
            .await
            .unwrap()
            .unwrap();
        most = most.max(row.try_get::<i64>("", "n").unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    most
}

/// Long: the flood, the writes under it and the connection count are one
/// scenario, asserted together.
#[tokio::test]
async fn a_flood_of_stats_readers_leaves_the_writers_their_connections() {
    let pipeline = TestPipeline::start_with(&["--retry-delays-ms", "600000"]).await;
    // Enough messages in the window that each /stats is real work.
    execute(
        &pipeline.db,
        "INSERT INTO messages (message_sid, status, status_rank, status_precedence, \
           error_code, first_seen_at, last_seen_at, event_count, final_at) \
         SELECT 'SM' || md5(n::text), \
           (ARRAY['sent','delivered','undelivered'])[1 + n % 3], 3 + sign(n % 3)::int, \
           30 + 10 * sign(n % 3)::int, CASE WHEN n % 3 = 2 THEN 30003 END, \
           now() - (n % 7200) * interval '1 second', now(), 1, \
           CASE WHEN n % 3 > 0 THEN now() END \
         FROM generate_series(1, 200000) AS n",
    )
    .await;
    execute(&pipeline.db, "ANALYZE messages").await;

    let done = Arc::new(AtomicBool::new(false));
    let watcher = tokio::spawn(watch_read_connections(
        pipeline.database.connect().await,
        pipeline.database.name.clone(),
        done.clone(),
    ));
    let answered = Arc::new(AtomicUsize::new(0));
    let client = reqwest::Client::builder()
        // Far beyond the 15 s every read must answer in: only a hang trips it.
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let (client, done, answered) = (client.clone(), done.clone(), answered.clone());
            let url = format!("{}/stats?since=3h", pipeline.worker.address);
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                while !done.load(Ordering::SeqCst) {
                    let response = client.get(&url).send().await.expect("a read hung");
                    statuses.push(response.status().as_u16());
                    answered.fetch_add(1, Ordering::SeqCst);
                }
                statuses
            })
        })
        .collect();
    // Callbacks stream in while the readers read.
    for n in 0..200u64 {
        pipeline
            .broker
            .publish_callback(
                &status_params(&message_sid(1_000_000 + n), "delivered", None),
                chrono::Utc::now(),
            )
            .await;
    }
    wait_for_event_rows(&pipeline.db, 200).await;
    pipeline.broker.wait_until_none_ready().await;
    // The readers got some answers in, whatever the machine's speed.
    testkit::wait_for(
        "the readers to be answered",
        Duration::from_secs(120),
        || async { (answered.load(Ordering::SeqCst) >= READERS).then_some(()) },
    )
    .await;
    done.store(true, Ordering::SeqCst);
    let most_read_connections = watcher.await.unwrap();
    for reader in readers {
        for status in reader.await.unwrap() {
            assert!(status == 200 || status == 503, "a read answered {status}");
        }
    }
    assert!(
        (1..=4).contains(&most_read_connections),
        "the read pool held {most_read_connections} connections"
    );
    assert_eq!(
        pipeline
            .broker
            .ready_count(&pipeline.broker.topology.dead_letter_queue())
            .await,
        0
    );
    for queue in pipeline.broker.topology.retry_queues() {
        assert_eq!(pipeline.broker.ready_count(&queue).await, 0, "{queue}");
    }
    pipeline.worker.wait_ready().await;
}

/// Readers of the same window within `REUSE_FOR` share one computation:
/// the second answer is the first (same `until`, though "now" has moved).
#[tokio::test]
async fn stats_of_the_same_window_are_computed_once_for_a_while() {
    let pipeline = TestPipeline::start().await;
    let url = format!("{}/stats?since=1h", pipeline.worker.address);
    let asked = std::time::Instant::now();
    let first: serde_json::Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second: serde_json::Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
    if asked.elapsed() < worker::test_support::stats::REUSE_FOR {
        assert_eq!(
            first["until"], second["until"],
            "recomputed within the reuse time"
        );
    }
    // Another window is its own computation.
    let other: serde_json::Value = reqwest::get(format!("{url}&until={}", urlencode_now()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_ne!(other["until"], first["until"]);
}

fn urlencode_now() -> String {
    chrono::Utc::now()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        .replace('+', "%2B")
}
