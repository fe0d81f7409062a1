//! `read`: the worker's read API under a closed loop, `GET /messages/{sid}`
//! for messages sampled from the database, with its latency percentiles
//! (bench/growth measures them at each size of the history).

use anyhow::Context;
use clap::Args;
use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::common::DEFAULT_DATABASE_URL;
use super::report::{format_percentiles, print_json};
use crate::client::{Answer, Connection, Target};
use crate::latency::{new_histogram, Percentiles};
use crate::local;

#[derive(Debug, Args)]
pub struct ReadArgs {
    /// The worker's base URL (WORKER_ADDR).
    #[arg(long, default_value = "http://127.0.0.1:8081")]
    url: String,
    /// Where to sample message SIDs from.
    #[arg(long, default_value = DEFAULT_DATABASE_URL)]
    database_url: String,
    /// Requests in all.
    #[arg(long, default_value_t = 2000)]
    requests: usize,
    /// Requests in flight (one kept-alive connection each).
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Distinct messages sampled (at random) and asked about in turn.
    #[arg(long, default_value_t = 2000)]
    sample: usize,
    #[arg(long, default_value_t = 60)]
    time_limit_secs: u64,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
pub struct ReadReport {
    pub requests: usize,
    pub sampled_messages: usize,
    /// Answers other than 200 (and requests with no answer).
    pub not_ok: usize,
    pub latency_ms: Percentiles,
}

pub async fn run(args: ReadArgs) -> anyhow::Result<bool> {
    local::ensure_loopback(&args.database_url)?;
    let target = Target::parse(&args.url)?;
    let db = Database::connect(&args.database_url).await?;
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT message_sid FROM messages ORDER BY random() LIMIT $1",
            [(args.sample.max(1) as i64).into()],
        ))
        .await?;
    let sids: Arc<Vec<String>> = Arc::new(
        rows.iter()
            .map(|row| row.try_get::<String>("", "message_sid"))
            .collect::<Result<_, _>>()?,
    );
    anyhow::ensure!(!sids.is_empty(), "no messages in the database to read");
    let deadline = Instant::now() + Duration::from_secs(args.time_limit_secs.max(1));
    let concurrency = args.concurrency.max(1);
    let per_slot = args.requests.div_ceil(concurrency);
    let mut slots = Vec::with_capacity(concurrency);
    for slot in 0..concurrency {
        let (target, sids) = (target.clone(), sids.clone());
        slots.push(tokio::spawn(async move {
            let mut connection = Connection::new(target, Duration::from_secs(10));
            let mut histogram = new_histogram();
            let mut not_ok = 0usize;
            for n in 0..per_slot {
                if Instant::now() > deadline {
                    break;
                }
                let sid = &sids[(slot + n * concurrency) % sids.len()];
                let started = Instant::now();
                let answer = connection.get(&format!("/messages/{sid}")).await;
                let _ = histogram.record(started.elapsed().as_micros() as u64);
                if answer != Answer::Status(200) {
                    not_ok += 1;
                }
            }
            (histogram, not_ok)
        }));
    }
    let mut histogram = new_histogram();
    let mut not_ok = 0;
    for slot in slots {
        let (slot_histogram, slot_not_ok) = slot.await.context("a reader task failed")?;
        histogram.add(&slot_histogram)?;
        not_ok += slot_not_ok;
    }
    let report = ReadReport {
        requests: histogram.len() as usize,
        sampled_messages: sids.len(),
        not_ok,
        latency_ms: Percentiles::from_micros(&histogram),
    };
    if args.json {
        print_json(&report)?;
    } else {
        println!(
            "GET /messages/{{sid}}: {} requests over {} messages, {} not 200; latency ms {}",
            report.requests,
            report.sampled_messages,
            report.not_ok,
            format_percentiles(&report.latency_ms)
        );
    }
    Ok(report.not_ok == 0)
}
