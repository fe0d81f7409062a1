//! `ceiling-http`: drives the bare in-process server of
//! [`crate::ceiling_http`] with the same client and load loop as `run`, and
//! reports what HTTP alone does on this machine. Fails on transport errors.

use clap::Args;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use twilio_protocol::signature::AuthToken;

use super::report::{cpu_since, print_http, print_json, process_cpu_seconds};
use crate::ceiling_http::BareServer;
use crate::client::Target;
use crate::load::{self, Limits, LoadPlan, Pace};
use crate::tally::HttpReport;
use crate::workload::{Mix, RunId, Workload};

#[derive(Debug, Args)]
pub struct CeilingHttpArgs {
    /// Connections, one request in flight on each.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    duration: f64,
    /// Stop after this many requests if the duration has not passed.
    #[arg(long, default_value_t = 10_000_000)]
    requests: u64,
    /// HTTP worker threads of the bare server (default: one per core, as ingest).
    #[arg(long)]
    server_workers: Option<usize>,
    #[arg(long)]
    json: bool,
}

/// Everything `ceiling-http --json` prints.
#[derive(Debug, Serialize)]
struct CeilingHttpReport {
    kind: &'static str,
    concurrency: usize,
    server_workers: usize,
    #[serde(flatten)]
    http: HttpReport,
    client_cpu_s: Option<f64>,
}

pub async fn run(args: CeilingHttpArgs) -> anyhow::Result<bool> {
    let workers = args.server_workers.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let server = BareServer::start(workers)?;
    let url = format!("http://127.0.0.1:{}/twilio/status", server.port);
    let workload = Arc::new(Workload::new(
        url.clone(),
        AuthToken::new("ceiling"),
        Mix::default(),
        RunId::random(),
    ));
    let cpu_before = process_cpu_seconds();
    let result = load::drive(LoadPlan {
        target: Target::parse(&url)?,
        workload,
        pace: Pace::Closed {
            concurrency: args.concurrency.clamp(1, 10_000),
        },
        limits: Limits {
            requests: args.requests,
            duration: Duration::from_secs_f64(args.duration.clamp(0.1, 3600.0)),
        },
        request_timeout: Duration::from_secs(30),
    })
    .await;
    // Server and client share this process: this is both sides' CPU.
    let cpu = cpu_since(cpu_before);
    server.stop().await;
    let report = CeilingHttpReport {
        kind: "ceiling-http",
        concurrency: args.concurrency,
        server_workers: workers,
        http: HttpReport::new(&result),
        client_cpu_s: cpu,
    };
    if args.json {
        print_json(&report)?;
    } else {
        println!(
            "bare actix-web ({workers} workers), {} connections:",
            args.concurrency
        );
        print_http(&report.http, false);
    }
    Ok(report.http.transport_errors == 0)
}
