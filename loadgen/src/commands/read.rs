//! `read`: the worker's read API under a closed loop, `GET /messages/{sid}`
//! for messages sampled from the database, with its latency percentiles
//! (bench/growth measures them at each size of the history).

use clap::Args;
use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

use super::common::DEFAULT_DATABASE_URL;
use super::report::{format_percentiles, print_json};
use crate::client::Target;
use crate::latency::Percentiles;
use crate::local;
use crate::read_loop::{self, ReadPlan};

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
    let sids: Vec<String> = rows
        .iter()
        .map(|row| row.try_get::<String>("", "message_sid"))
        .collect::<Result<_, _>>()?;
    anyhow::ensure!(!sids.is_empty(), "no messages in the database to read");
    let paths: Vec<String> = sids.iter().map(|sid| format!("/messages/{sid}")).collect();
    let plan = ReadPlan {
        target,
        bearer: None,
        requests: args.requests,
        concurrency: args.concurrency,
        warmup_per_connection: 0,
        time_limit: Duration::from_secs(args.time_limit_secs),
    };
    let outcome = read_loop::drive(&plan, Arc::new(paths), |_| 0).await?;
    let report = ReadReport {
        requests: outcome.latency.len() as usize,
        sampled_messages: sids.len(),
        not_ok: outcome.not_ok,
        latency_ms: Percentiles::from_micros(&outcome.latency),
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
