//! `search`: the worker's search API under a closed loop, `GET /messages?...`
//! for each `--query` in turn, its placeholders filled with values sampled
//! from the database, with latency percentiles and the rows each answer
//! held (bench/growth times the console's searches at each size of the
//! history).

use clap::Args;
use sea_orm::Database;
use serde::Serialize;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::common::DEFAULT_DATABASE_URL;
use super::report::{format_percentiles, print_json};
use crate::client::Target;
use crate::latency::Percentiles;
use crate::local;
use crate::read_loop::{self, ReadPlan};
use crate::search_query::{self, QueryTemplate, SampledValues};

/// Each query's first request on each connection is not counted: a
/// connection's first request to the worker also opens its connection and
/// a database session or statement there, which a console in use has done.
const WARMUP_PER_CONNECTION: usize = 1;

#[derive(Debug, Args)]
#[command(
    after_help = "Placeholders in --query: {to}, {from} and {account} are replaced by \
a to_address, from_address or account_sid sampled from the messages table (of messages picked \
at random: TABLESAMPLE, a few hundred pages of a large table), percent-encoded; the requests \
take the sampled values in turn (a value as often as its messages come up), after one untimed \
request on each connection. cursor={cursor} times page two: page one (the query without \
it) is fetched first, untimed, for each sampled value, and only the values with a next page are \
asked about. Everything else is sent as written (percent-encode literals yourself).\n\n\
Example: loadgen search --url http://127.0.0.1:8081 --query 'to={to}' \
--query 'to={to}&cursor={cursor}' --query 'status=failed&since=24h' --requests 500"
)]
pub struct SearchArgs {
    /// The worker's base URL (WORKER_ADDR).
    #[arg(long, default_value = "http://127.0.0.1:8081")]
    url: String,
    /// The worker's API token (WORKER_API_TOKEN or a read token), sent as a
    /// bearer token; none when the worker listens on loopback without one.
    #[arg(long, env = "WORKER_API_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Where to sample the placeholders' values from.
    #[arg(long, default_value = DEFAULT_DATABASE_URL)]
    database_url: String,
    /// A query string of GET /messages, with placeholders (repeatable; timed
    /// one after another, in the order given).
    #[arg(long = "query", required = true, value_parser = QueryTemplate::parse)]
    queries: Vec<QueryTemplate>,
    /// Requests for each query.
    #[arg(long, default_value_t = 500)]
    requests: usize,
    /// Requests in flight (one kept-alive connection each).
    #[arg(long, default_value_t = 2)]
    concurrency: usize,
    /// Values sampled for each placeholder (and page ones fetched for a
    /// cursor={cursor} query).
    #[arg(long, default_value_t = 1000)]
    sample: usize,
    /// Longest time spent on each query, in seconds (its requests stop there).
    #[arg(long, default_value_t = 60)]
    time_limit_secs: u64,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
pub struct SearchReport {
    pub queries: Vec<QueryReport>,
}

#[derive(Debug, Serialize)]
pub struct QueryReport {
    /// The query as given.
    pub query: String,
    /// Requests asked in turn (one per sampled value, or page two of it).
    pub values: usize,
    /// How many of them differ.
    pub distinct_values: usize,
    /// Of a cursor={cursor} query: sampled values whose page one was the
    /// last (not asked about).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub without_second_page: Option<usize>,
    pub requests: usize,
    /// Answers other than 200 (and requests with no answer).
    pub not_ok: usize,
    /// Messages in a 200 answer, on average.
    pub mean_rows: f64,
    pub latency_ms: Percentiles,
}

pub async fn run(args: SearchArgs) -> anyhow::Result<bool> {
    local::ensure_loopback(&args.database_url)?;
    let plan = ReadPlan {
        target: Target::parse(&args.url)?,
        bearer: args.token.clone(),
        requests: args.requests,
        concurrency: args.concurrency,
        warmup_per_connection: WARMUP_PER_CONNECTION,
        time_limit: Duration::from_secs(args.time_limit_secs),
    };
    let db = Database::connect(&args.database_url).await?;
    let needed: Vec<_> = args
        .queries
        .iter()
        .flat_map(QueryTemplate::placeholders)
        .collect();
    let values = SampledValues::sample(&db, needed, args.sample).await?;
    db.close().await?;
    let mut reports = Vec::with_capacity(args.queries.len());
    for query in &args.queries {
        let report = time_query(&plan, query, &values).await?;
        if !args.json {
            print_query(&report);
        }
        reports.push(report);
    }
    let all_ok = reports
        .iter()
        .all(|report| report.not_ok == 0 && report.requests > 0);
    if args.json {
        print_json(&SearchReport { queries: reports })?;
    }
    Ok(all_ok)
}

async fn time_query(
    plan: &ReadPlan,
    query: &QueryTemplate,
    values: &SampledValues,
) -> anyhow::Result<QueryReport> {
    let mut paths = query.page_one_paths(values)?;
    let mut without_second_page = None;
    if query.second_page() {
        let (second, last_pages) = search_query::second_pages(plan, &paths).await?;
        paths = second;
        without_second_page = Some(last_pages);
    }
    let values = paths.len();
    let distinct_values = paths.iter().collect::<HashSet<_>>().len();
    if paths.is_empty() {
        return Ok(QueryReport {
            query: query.to_string(),
            values,
            distinct_values,
            without_second_page,
            requests: 0,
            not_ok: 0,
            mean_rows: 0.0,
            latency_ms: Percentiles::from_micros(&crate::latency::new_histogram()),
        });
    }
    let outcome = read_loop::drive(plan, Arc::new(paths), search_query::count_messages).await?;
    Ok(QueryReport {
        query: query.to_string(),
        values,
        distinct_values,
        without_second_page,
        requests: outcome.latency.len() as usize,
        not_ok: outcome.not_ok,
        mean_rows: if outcome.ok > 0 {
            outcome.counted as f64 / outcome.ok as f64
        } else {
            0.0
        },
        latency_ms: Percentiles::from_micros(&outcome.latency),
    })
}

fn print_query(report: &QueryReport) {
    let skipped = match report.without_second_page {
        Some(0) | None => String::new(),
        Some(n) => format!(" ({n} sampled without a page two)"),
    };
    if report.requests == 0 {
        println!(
            "GET /messages?{}: nothing to ask for{skipped}",
            report.query
        );
        return;
    }
    println!(
        "GET /messages?{}: {} requests over {} values ({} distinct){skipped}, {} not 200, {:.1} rows an answer; latency ms {}",
        report.query,
        report.requests,
        report.values,
        report.distinct_values,
        report.not_ok,
        report.mean_rows,
        format_percentiles(&report.latency_ms)
    );
}
