//! `run`: realistic callback traffic to ingest, closed or open loop (see
//! [`crate::load`]), then, with `--database-url`, the check of what the
//! worker stored (see [`crate::persistence`]). Succeeds when every answer
//! was the expected one and the stored rows match.
//!
//! Its argument groups (`StopArgs`, `PaceArgs`, `MixArgs`, `PersistArgs`)
//! live here: `run` is the only subcommand that uses them.

use anyhow::{bail, Context};
use clap::Args;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use twilio_protocol::signature::AuthToken;

use super::common::{PersistWaitArgs, TargetArgs};
use super::report::{cpu_since, print_http, print_json, print_persistence, process_cpu_seconds};
use crate::client::Target;
use crate::load::{self, Limits, LoadPlan, Pace};
use crate::local;
use crate::persistence::{Expectation, PersistenceReport};
use crate::tally::HttpReport;
use crate::workload::{Mix, RunId, Workload};

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    stop: StopArgs,
    #[command(flatten)]
    pace: PaceArgs,
    /// Open loop: most requests in flight at once (connections are opened as needed).
    #[arg(long, default_value_t = 256)]
    max_in_flight: usize,
    #[command(flatten)]
    mix: MixArgs,
    /// 8 hex digits that prefix this run's message SIDs (random by default).
    #[arg(long)]
    run_id: Option<String>,
    /// Longest wait for one answer, in ms.
    #[arg(long, default_value_t = 30_000)]
    timeout_ms: u64,
    /// Hard stop for the sending, in seconds, whatever --requests says.
    #[arg(long, default_value_t = 600)]
    time_limit_secs: u64,
    #[command(flatten)]
    persist: PersistArgs,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct StopArgs {
    /// Send this many requests.
    #[arg(long)]
    requests: Option<u64>,
    /// Send for this many seconds.
    #[arg(long, value_name = "SECONDS")]
    duration: Option<f64>,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct PaceArgs {
    /// Closed loop: this many connections, one request in flight on each.
    #[arg(long)]
    concurrency: Option<usize>,
    /// Open loop: this many requests per second, on schedule.
    #[arg(long, value_name = "PER_SECOND")]
    rate: Option<f64>,
}

#[derive(Debug, Args)]
struct MixArgs {
    /// Share of requests that re-send an already sent callback unchanged.
    #[arg(long, default_value_t = 0.0)]
    duplicate_ratio: f64,
    /// Share of requests signed with a wrong token (expected answer: 403).
    #[arg(long, default_value_t = 0.0)]
    bad_signature_ratio: f64,
    /// Share of messages whose callbacks are sent in a shuffled order.
    #[arg(long, default_value_t = 0.0)]
    out_of_order_ratio: f64,
}

impl MixArgs {
    fn validate(&self) -> anyhow::Result<Mix> {
        for (name, value) in [
            ("--duplicate-ratio", self.duplicate_ratio),
            ("--bad-signature-ratio", self.bad_signature_ratio),
            ("--out-of-order-ratio", self.out_of_order_ratio),
        ] {
            if !(0.0..=1.0).contains(&value) {
                bail!("{name} must be between 0 and 1");
            }
        }
        if self.duplicate_ratio + self.bad_signature_ratio > 0.9 {
            bail!("--duplicate-ratio + --bad-signature-ratio must stay below 0.9");
        }
        Ok(Mix {
            duplicate_ratio: self.duplicate_ratio,
            bad_signature_ratio: self.bad_signature_ratio,
            out_of_order_ratio: self.out_of_order_ratio,
        })
    }
}

#[derive(Debug, Args)]
struct PersistArgs {
    /// Postgres of the worker: wait for the run's rows and check them.
    #[arg(long)]
    database_url: Option<String>,
    #[command(flatten)]
    wait: PersistWaitArgs,
}

/// Everything `run --json` prints.
#[derive(Debug, Serialize)]
struct RunReport {
    kind: &'static str,
    run_id: String,
    url: String,
    mode: &'static str,
    concurrency: Option<usize>,
    rate: Option<f64>,
    duplicate_ratio: f64,
    bad_signature_ratio: f64,
    out_of_order_ratio: f64,
    #[serde(flatten)]
    http: HttpReport,
    /// CPU seconds this process used (user + system), for the client's share.
    client_cpu_s: Option<f64>,
    persistence: Option<PersistenceReport>,
    ok: bool,
}

pub async fn run(args: RunArgs) -> anyhow::Result<bool> {
    let target = Target::parse(&args.target.url)?;
    if let Some(url) = &args.persist.database_url {
        local::ensure_loopback(url)?;
    }
    let mix = args.mix.validate()?;
    let run_id = match &args.run_id {
        Some(hex) => RunId::parse(hex).context("--run-id must be 8 hex digits")?,
        None => RunId::random(),
    };
    let pace = args.pace()?;
    let limits = args.limits()?;
    let workload = Arc::new(Workload::new(
        args.target.signed_url(),
        AuthToken::new(args.target.token.clone()),
        mix,
        run_id,
    ));
    if !args.json {
        eprintln!(
            "run {}: {} → {}",
            run_id.as_hex(),
            describe_pace(pace),
            args.target.url
        );
    }
    let cpu_before = process_cpu_seconds();
    let result = load::drive(LoadPlan {
        target,
        workload,
        pace,
        limits,
        request_timeout: Duration::from_millis(args.timeout_ms.max(1)),
    })
    .await;
    let client_cpu_s = cpu_since(cpu_before);
    let http = HttpReport::new(&result);

    let persistence = args.persist.check(run_id, &http, args.json).await?;
    let ok = http.unexpected_answers == 0 && persistence.as_ref().is_none_or(PersistenceReport::ok);
    let (mode, concurrency, rate) = match pace {
        Pace::Closed { concurrency } => ("closed", Some(concurrency), None),
        Pace::Open { rate, .. } => ("open", None, Some(rate)),
    };
    let report = RunReport {
        kind: "run",
        run_id: run_id.as_hex(),
        url: args.target.url,
        mode,
        concurrency,
        rate,
        duplicate_ratio: mix.duplicate_ratio,
        bad_signature_ratio: mix.bad_signature_ratio,
        out_of_order_ratio: mix.out_of_order_ratio,
        http,
        client_cpu_s,
        persistence,
        ok,
    };
    if args.json {
        print_json(&report)?;
    } else {
        report.print_text();
    }
    Ok(ok)
}

impl RunArgs {
    fn pace(&self) -> anyhow::Result<Pace> {
        Ok(match (self.pace.concurrency, self.pace.rate) {
            (Some(concurrency), _) if (1..=10_000).contains(&concurrency) => {
                Pace::Closed { concurrency }
            }
            (None, Some(rate)) if rate > 0.0 && rate <= 1_000_000.0 => Pace::Open {
                rate,
                max_in_flight: self.max_in_flight.clamp(1, 10_000),
            },
            _ => bail!("--concurrency must be 1..=10000, --rate above 0 and at most 1000000"),
        })
    }

    fn limits(&self) -> anyhow::Result<Limits> {
        let time_limit = Duration::from_secs(self.time_limit_secs.clamp(1, 3600));
        Ok(match (self.stop.requests, self.stop.duration) {
            (Some(requests), _) => Limits {
                requests,
                duration: time_limit,
            },
            (None, Some(seconds)) if seconds > 0.0 => Limits {
                requests: load::MAX_REQUESTS,
                duration: Duration::from_secs_f64(seconds).min(time_limit),
            },
            _ => bail!("--duration must be above 0"),
        })
    }
}

impl PersistArgs {
    /// With `--database-url`: waits for the worker to store what ingest
    /// accepted of run `run`, and checks it.
    async fn check(
        &self,
        run: RunId,
        http: &HttpReport,
        quiet: bool,
    ) -> anyhow::Result<Option<PersistenceReport>> {
        let Some(database_url) = &self.database_url else {
            return Ok(None);
        };
        if !quiet {
            eprintln!("waiting for the worker to store run {}...", run.as_hex());
        }
        let expect = Expectation {
            run,
            events: http.unique_accepted_events,
            messages: http.accepted_messages,
            unknown: http.unknown_outcome_events,
        };
        let report = self.wait.wait_and_check(database_url, expect).await?;
        Ok(Some(report))
    }
}

impl RunReport {
    fn print_text(&self) {
        print_http(&self.http, self.mode == "open");
        if let Some(cpu) = self.client_cpu_s {
            println!("client CPU     {cpu:.2} s");
        }
        if let Some(persistence) = &self.persistence {
            print_persistence(persistence);
        }
        println!("run id         {}", self.run_id);
    }
}

fn describe_pace(pace: Pace) -> String {
    match pace {
        Pace::Closed { concurrency } => format!("closed loop, {concurrency} connections"),
        Pace::Open {
            rate,
            max_in_flight,
        } => format!("open loop, {rate} requests/s (at most {max_in_flight} in flight)"),
    }
}
