//! `loadgen`: signed Twilio status callbacks for the pipeline, one at a time
//! (`send`) or as realistic load (`run`), the end-to-end check of what the
//! worker stored (`check`), and the ceilings each stage is compared with
//! (`ceiling-http`, `ceiling-broker`, `ceiling-db`). Everything it talks to
//! must be on this machine.

mod ceiling_broker;
mod ceiling_db;
mod ceiling_http;
mod client;
mod load;
mod local;
mod persistence;
mod workload;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use twilio_protocol::form::FormParams;
use twilio_protocol::signature::{compute_signature, AuthToken};

use crate::client::{Connection, Target};
use crate::load::{HttpReport, Limits, LoadPlan, Pace};
use crate::persistence::{Expectation, PersistenceReport};
use crate::workload::{Mix, RequestKind, RunId, SignedCallback, Workload};

const DEFAULT_URL: &str = "http://127.0.0.1:8080/twilio/status";
const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/twilio_status";

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    version,
    about = "Signed Twilio status callbacks for the pipeline: one at a time, as load, and the ceilings to compare with",
    long_about = "Sends Twilio message status callbacks signed exactly as Twilio signs them \
(URL + sorted parameters, HMAC-SHA1 with the auth token) to ingest, one at a time (send) or \
as realistic load (run), checks what the worker stored (check, or run --database-url), and \
measures what HTTP, RabbitMQ and Postgres alone can do on this machine (ceiling-*).\n\n\
Only loopback addresses are accepted. Every loop is bounded in count and in time.\n\n\
Exit codes: 0 all as expected; 1 an unexpected answer, a row-count mismatch or an error; \
2 bad usage."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Send one signed status callback and print the answer (the developer's Postman).
    Send(SendArgs),
    /// Send realistic callback traffic, closed loop (--concurrency) or open loop (--rate).
    #[command(long_about = "Send realistic callback traffic to ingest.\n\n\
Each message lives through a Twilio lifecycle: queued → sent → delivered (68%), \
→ undelivered with ErrorCode 30003/30005/30006 (12%), queued → failed with 30007 (5%), \
WhatsApp queued → sent → delivered → read (15%), with the parameters Twilio sends \
(AccountSid, ApiVersion, From, To, MessageSid, MessageStatus, SmsSid, SmsStatus, ErrorCode, \
RawDlrDoneDate, MessagingServiceSid, Channel*, EventType). A run's message SIDs all start \
with SM + its 8-hex-digit run id.\n\n\
Closed loop (--concurrency C): C kept-alive connections, each sending its next request when \
the previous one is answered. Open loop (--rate R): requests scheduled R per second whatever \
the server does; latency counts from the scheduled time, so a stall is not hidden \
(no coordinated omission).\n\n\
With --database-url, waits (bounded) until the worker has stored everything, then reports \
end-to-end throughput, callback-to-row lag (persisted_at − received_at) and whether the rows \
equal exactly the unique accepted callbacks (duplicates and bad signatures excluded).")]
    Run(RunArgs),
    /// Check what the worker stored for an earlier run, by its run id.
    Check(CheckArgs),
    /// HTTP ceiling: a bare in-process actix-web server answering 200, driven by the same client.
    CeilingHttp(CeilingHttpArgs),
    /// Broker ceiling: persistent publishes with confirms into a fresh copy of the pipeline's topology (deleted after).
    CeilingBroker(CeilingBrokerArgs),
    /// Database ceiling: multi-row event inserts into a scratch database (dropped after).
    CeilingDb(CeilingDbArgs),
    /// Delete the exchange and queues of a topology prefix (benchmark clean-up).
    DeleteTopology(DeleteTopologyArgs),
}

/// An empty token signs nothing ingest would accept: refuse it up front.
fn non_empty_token(value: &str) -> Result<String, String> {
    if value.trim().is_empty() {
        Err(
            "the auth token is empty: pass --token or set TWILIO_AUTH_TOKEN \
             (`cargo xtask up` runs with dev-auth-token)"
                .into(),
        )
    } else {
        Ok(value.to_owned())
    }
}

#[derive(Debug, Args)]
struct SendArgs {
    /// Where to send it (loopback only).
    #[arg(long, default_value = DEFAULT_URL)]
    url: String,
    /// Sign this URL instead of --url (when ingest has PUBLIC_BASE_URL set).
    #[arg(long)]
    signed_url: Option<String>,
    /// Auth token to sign with.
    #[arg(long, env = "TWILIO_AUTH_TOKEN", hide_env_values = true, value_parser = non_empty_token)]
    token: String,
    /// MessageSid (and SmsSid), e.g. SM1234567890abcdef1234567890abcdef.
    #[arg(long)]
    sid: String,
    /// MessageStatus (and SmsStatus): queued, sent, delivered, undelivered, failed, read, ...
    #[arg(long)]
    status: String,
    /// ErrorCode, e.g. 30003.
    #[arg(long)]
    error_code: Option<u32>,
    #[arg(long, default_value = "AC00000000000000000000000000000000")]
    account_sid: String,
    #[arg(long, default_value = "+15017122661")]
    from: String,
    #[arg(long, default_value = "+15558675310")]
    to: String,
    /// Extra parameter NAME=VALUE (repeatable), e.g. RawDlrDoneDate=2404151230.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// Sign with a wrong token (ingest must answer 403).
    #[arg(long)]
    bad_signature: bool,
    #[arg(long, default_value_t = 15_000)]
    timeout_ms: u64,
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
    /// Longest wait for the rows, in seconds.
    #[arg(long, default_value_t = 120)]
    persist_timeout_secs: u64,
    /// Give up when the row count has not moved for this many seconds.
    #[arg(long, default_value_t = 30)]
    stall_secs: u64,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Ingest's callback URL (loopback only).
    #[arg(long, default_value = DEFAULT_URL)]
    url: String,
    /// Sign this URL instead of --url (when ingest has PUBLIC_BASE_URL set).
    #[arg(long)]
    signed_url: Option<String>,
    /// Auth token ingest verifies with.
    #[arg(long, env = "TWILIO_AUTH_TOKEN", hide_env_values = true, value_parser = non_empty_token)]
    token: String,
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
struct CheckArgs {
    #[arg(long, default_value = DEFAULT_DATABASE_URL)]
    database_url: String,
    /// The run id a `run` printed.
    #[arg(long)]
    run_id: String,
    /// Unique accepted callbacks of that run (its unique_accepted_events).
    #[arg(long)]
    expect_events: u64,
    /// Messages with an accepted callback (its accepted_messages).
    #[arg(long)]
    expect_messages: u64,
    /// Callbacks whose requests got no answer (its unknown_outcome_events).
    #[arg(long, default_value_t = 0)]
    unknown: u64,
    #[arg(long, default_value_t = 120)]
    persist_timeout_secs: u64,
    #[arg(long, default_value_t = 30)]
    stall_secs: u64,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct CeilingHttpArgs {
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

#[derive(Debug, Args)]
struct CeilingBrokerArgs {
    #[arg(long, hide_env_values = true, env = "AMQP_URL", default_value = DEFAULT_AMQP_URL)]
    amqp_url: String,
    /// Publishes in flight on the one confirm channel.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Messages to publish.
    #[arg(long, default_value_t = 20_000)]
    messages: u64,
    /// Hard stop in seconds.
    #[arg(long, default_value_t = 120)]
    time_limit_secs: u64,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct CeilingDbArgs {
    /// Any database URL on the server; the scratch database is created beside it.
    #[arg(long, default_value = DEFAULT_DATABASE_URL)]
    database_url: String,
    /// Rows to insert.
    #[arg(long, default_value_t = 100_000)]
    rows: u64,
    /// Rows per statement (the worker's WORKER_MAX_BATCH is 256 by default).
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Batches in flight on their own connections (the worker runs one).
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Hard stop in seconds.
    #[arg(long, default_value_t = 120)]
    time_limit_secs: u64,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct DeleteTopologyArgs {
    #[arg(long, hide_env_values = true, env = "AMQP_URL", default_value = DEFAULT_AMQP_URL)]
    amqp_url: String,
    /// The AMQP_TOPOLOGY_PREFIX the services ran with (not the default one).
    #[arg(long)]
    prefix: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(if error.use_stderr() { 2 } else { 0 });
        }
    };
    let outcome = match cli.command {
        Command::Send(args) => send(args).await,
        Command::Run(args) => run(args).await,
        Command::Check(args) => check(args).await,
        Command::CeilingHttp(args) => ceiling_http(args).await,
        Command::CeilingBroker(args) => ceiling_broker(args).await,
        Command::CeilingDb(args) => ceiling_db(args).await,
        Command::DeleteTopology(args) => delete_topology(args).await,
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("loadgen: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn send(args: SendArgs) -> anyhow::Result<bool> {
    let target = Target::parse(&args.url)?;
    let signed_url = args.signed_url.clone().unwrap_or_else(|| args.url.clone());
    let mut pairs: Vec<(String, String)> = vec![
        ("AccountSid".into(), args.account_sid),
        ("ApiVersion".into(), "2010-04-01".into()),
    ];
    if let Some(code) = args.error_code {
        pairs.push(("ErrorCode".into(), code.to_string()));
    }
    pairs.extend([
        ("From".into(), args.from),
        ("MessageSid".into(), args.sid.clone()),
        ("MessageStatus".into(), args.status.clone()),
        ("SmsSid".into(), args.sid),
        ("SmsStatus".into(), args.status),
        ("To".into(), args.to),
    ]);
    for param in &args.params {
        let (name, value) = param
            .split_once('=')
            .with_context(|| format!("--param {param:?}: expected NAME=VALUE"))?;
        pairs.push((name.to_owned(), value.to_owned()));
    }
    let params = FormParams::from_pairs(pairs);
    let token = if args.bad_signature {
        AuthToken::new(format!("not-{}", args.token))
    } else {
        AuthToken::new(args.token)
    };
    let signature = compute_signature(&token, &signed_url, &params);
    let body = params.encode();
    println!("> POST {}", args.url);
    if signed_url != args.url {
        println!("> (signed for {signed_url})");
    }
    println!("> X-Twilio-Signature: {signature}");
    println!("> {body}");
    let callback = SignedCallback {
        kind: if args.bad_signature {
            RequestKind::BadSignature
        } else {
            RequestKind::Genuine
        },
        event_id: 0,
        message_id: 0,
        body: body.into(),
        signature,
    };
    let mut connection = Connection::new(target, Duration::from_millis(args.timeout_ms));
    let started = Instant::now();
    let answer = connection.post_callback_verbose(&callback).await?;
    let took = started.elapsed();
    println!(
        "< {} ({:.1} ms)",
        answer.status,
        took.as_secs_f64() * 1000.0
    );
    for (name, value) in &answer.headers {
        println!("< {name}: {value}");
    }
    if !answer.body.is_empty() {
        println!("{}", String::from_utf8_lossy(&answer.body));
    }
    Ok(answer.status == callback.kind.expected_status())
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

async fn run(args: RunArgs) -> anyhow::Result<bool> {
    let target = Target::parse(&args.url)?;
    if let Some(url) = &args.persist.database_url {
        local::ensure_loopback(url)?;
    }
    let mix = args.mix.validate()?;
    let run_id = match &args.run_id {
        Some(hex) => RunId::parse(hex).context("--run-id must be 8 hex digits")?,
        None => RunId::random(),
    };
    let pace = match (args.pace.concurrency, args.pace.rate) {
        (Some(concurrency), _) if (1..=10_000).contains(&concurrency) => {
            Pace::Closed { concurrency }
        }
        (None, Some(rate)) if rate > 0.0 && rate <= 1_000_000.0 => Pace::Open {
            rate,
            max_in_flight: args.max_in_flight.clamp(1, 10_000),
        },
        _ => bail!("--concurrency must be 1..=10000, --rate above 0 and at most 1000000"),
    };
    let time_limit = Duration::from_secs(args.time_limit_secs.clamp(1, 3600));
    let limits = match (args.stop.requests, args.stop.duration) {
        (Some(requests), _) => Limits {
            requests,
            duration: time_limit,
        },
        (None, Some(seconds)) if seconds > 0.0 => Limits {
            requests: load::MAX_REQUESTS,
            duration: Duration::from_secs_f64(seconds).min(time_limit),
        },
        _ => bail!("--duration must be above 0"),
    };
    let signed_url = args.signed_url.clone().unwrap_or_else(|| args.url.clone());
    let workload = Arc::new(Workload::new(
        signed_url,
        AuthToken::new(args.token.clone()),
        mix,
        run_id,
    ));
    if !args.json {
        eprintln!(
            "run {}: {} → {}",
            run_id.as_hex(),
            describe_pace(pace),
            args.url
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
    let client_cpu_s = cpu_before
        .zip(process_cpu_seconds())
        .map(|(before, after)| after - before);
    let http = HttpReport::new(&result);

    let persistence = match &args.persist.database_url {
        Some(database_url) => {
            if !args.json {
                eprintln!("waiting for the worker to store run {}...", run_id.as_hex());
            }
            Some(
                persistence::wait_and_check(
                    database_url,
                    Expectation {
                        run: run_id,
                        events: http.unique_accepted_events,
                        messages: http.accepted_messages,
                        unknown: http.unknown_outcome_events,
                    },
                    Duration::from_secs(args.persist.persist_timeout_secs.clamp(1, 3600)),
                    Duration::from_secs(args.persist.stall_secs.max(1)),
                )
                .await?,
            )
        }
        None => None,
    };
    let ok = http.unexpected_answers == 0 && persistence.as_ref().is_none_or(PersistenceReport::ok);
    let (mode, concurrency, rate) = match pace {
        Pace::Closed { concurrency } => ("closed", Some(concurrency), None),
        Pace::Open { rate, .. } => ("open", None, Some(rate)),
    };
    let report = RunReport {
        kind: "run",
        run_id: run_id.as_hex(),
        url: args.url,
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
        print_http(&report.http, mode == "open");
        if let Some(cpu) = report.client_cpu_s {
            println!("client CPU     {cpu:.2} s");
        }
        if let Some(persistence) = &report.persistence {
            print_persistence(persistence);
        }
        println!("run id         {}", report.run_id);
    }
    Ok(ok)
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

fn print_http(http: &HttpReport, open_loop: bool) {
    println!(
        "requests       {} in {:.2} s = {:.0}/s  (genuine {}, duplicate {}, bad signature {})",
        http.requests,
        http.elapsed_s,
        http.requests_per_s,
        http.sent.genuine,
        http.sent.duplicate,
        http.sent.bad_signature
    );
    println!(
        "accepted (200) {} = {:.0}/s; unique callbacks {} of {} messages",
        http.accepted, http.accepted_per_s, http.unique_accepted_events, http.accepted_messages
    );
    let answers: Vec<String> = http
        .status_counts
        .iter()
        .map(|(status, count)| format!("{status}: {count}"))
        .collect();
    println!(
        "answers        {}{}",
        answers.join(", "),
        if http.transport_errors > 0 {
            format!(", no answer: {}", http.transport_errors)
        } else {
            String::new()
        }
    );
    if http.unexpected_answers > 0 {
        println!(
            "UNEXPECTED     {} answers were not 200 for valid / 403 for bad signatures",
            http.unexpected_answers
        );
    }
    let label = if open_loop {
        "latency ms     (from scheduled send)"
    } else {
        "latency ms    "
    };
    println!("{label} {}", format_percentiles(&http.latency_ms));
    if open_loop {
        println!(
            "service ms     (from actual send) {}",
            format_percentiles(&http.service_latency_ms)
        );
    }
}

fn print_persistence(p: &PersistenceReport) {
    let mark = |ok: bool| if ok { "ok" } else { "MISMATCH" };
    println!(
        "stored rows    {} (expected {}{}) {}; messages {} (expected {}) {}",
        p.rows,
        p.expected_rows,
        if p.unknown_outcome_events > 0 {
            format!(" + up to {} unanswered", p.unknown_outcome_events)
        } else {
            String::new()
        },
        mark(p.rows_match),
        p.messages,
        p.expected_messages,
        mark(p.messages_match)
    );
    let rate = |r: Option<f64>| r.map_or_else(|| "n/a".to_owned(), |r| format!("{r:.0}"));
    println!(
        "end to end     {} rows/s (first received → last persisted); worker {} rows/s while busy; waited {:.1} s",
        rate(p.end_to_end_per_s),
        rate(p.persisted_per_s),
        p.waited_s
    );
    println!(
        "lag ms         (persisted_at − received_at) {}",
        format_percentiles(&p.lag_ms)
    );
}

fn format_percentiles(p: &load::Percentiles) -> String {
    format!(
        "p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  (n={})",
        p.p50, p.p90, p.p99, p.p99_9, p.max, p.count
    )
}

fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

async fn check(args: CheckArgs) -> anyhow::Result<bool> {
    local::ensure_loopback(&args.database_url)?;
    let run = RunId::parse(&args.run_id).context("--run-id must be 8 hex digits")?;
    let report = persistence::wait_and_check(
        &args.database_url,
        Expectation {
            run,
            events: args.expect_events,
            messages: args.expect_messages,
            unknown: args.unknown,
        },
        Duration::from_secs(args.persist_timeout_secs.clamp(1, 3600)),
        Duration::from_secs(args.stall_secs.max(1)),
    )
    .await?;
    if args.json {
        print_json(&report)?;
    } else {
        print_persistence(&report);
    }
    Ok(report.ok())
}

#[derive(Debug, Serialize)]
struct CeilingHttpReport {
    kind: &'static str,
    concurrency: usize,
    server_workers: usize,
    #[serde(flatten)]
    http: HttpReport,
    client_cpu_s: Option<f64>,
}

async fn ceiling_http(args: CeilingHttpArgs) -> anyhow::Result<bool> {
    let workers = args.server_workers.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let server = ceiling_http::BareServer::start(workers)?;
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
    let cpu = cpu_before
        .zip(process_cpu_seconds())
        .map(|(before, after)| after - before);
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

async fn ceiling_broker(args: CeilingBrokerArgs) -> anyhow::Result<bool> {
    local::ensure_loopback(&args.amqp_url)?;
    let cpu_before = process_cpu_seconds();
    let report = ceiling_broker::run(
        &args.amqp_url,
        args.concurrency.clamp(1, 10_000),
        args.messages.min(load::MAX_REQUESTS),
        Duration::from_secs(args.time_limit_secs.clamp(1, 3600)),
    )
    .await?;
    if args.json {
        print_json(&WithCpu {
            report: &report,
            client_cpu_s: cpu_since(cpu_before),
        })?;
    } else {
        println!(
            "RabbitMQ quorum queue, {} publishes in flight on one confirm channel, {}-byte bodies:",
            report.concurrency, report.body_bytes
        );
        println!(
            "confirmed      {} in {:.2} s = {:.0}/s (failed {})",
            report.confirmed, report.elapsed_s, report.confirmed_per_s, report.failed
        );
        println!(
            "confirm ms     {}",
            format_percentiles(&report.confirm_latency_ms)
        );
    }
    Ok(report.failed == 0)
}

async fn ceiling_db(args: CeilingDbArgs) -> anyhow::Result<bool> {
    local::ensure_loopback(&args.database_url)?;
    let cpu_before = process_cpu_seconds();
    let report = ceiling_db::run(
        &args.database_url,
        args.rows.min(load::MAX_REQUESTS),
        args.batch,
        args.concurrency.clamp(1, 64),
        Duration::from_secs(args.time_limit_secs.clamp(1, 3600)),
    )
    .await?;
    if args.json {
        // Includes building the statements before the timed part.
        print_json(&WithCpu {
            report: &report,
            client_cpu_s: cpu_since(cpu_before),
        })?;
    } else {
        println!(
            "Postgres, {}-row INSERT ... ON CONFLICT DO NOTHING, {} in flight (scratch database {}, dropped):",
            report.batch, report.concurrency, report.database
        );
        println!(
            "inserted       {} rows in {:.2} s = {:.0} rows/s",
            report.rows, report.elapsed_s, report.rows_per_s
        );
        println!(
            "batch ms       {}",
            format_percentiles(&report.batch_latency_ms)
        );
    }
    Ok(true)
}

async fn delete_topology(args: DeleteTopologyArgs) -> anyhow::Result<bool> {
    local::ensure_loopback(&args.amqp_url)?;
    if args.prefix == queue_wire::topology::DEFAULT_PREFIX {
        bail!("refusing to delete the default topology {}", args.prefix);
    }
    let connection =
        lapin::Connection::connect(&args.amqp_url, lapin::ConnectionProperties::default())
            .await
            .context("cannot connect to RabbitMQ")?;
    let channel = connection.create_channel().await?;
    let deleted = queue_wire::topology::Topology::new(args.prefix.clone())
        .delete(&channel)
        .await;
    let _ = connection.close(200, "loadgen clean-up".into()).await;
    deleted.with_context(|| format!("deleting topology {}", args.prefix))?;
    eprintln!("deleted the exchange and queues of {}", args.prefix);
    Ok(true)
}

/// A ceiling's report with this process's CPU time added.
#[derive(Serialize)]
struct WithCpu<'a, T: Serialize> {
    #[serde(flatten)]
    report: &'a T,
    client_cpu_s: Option<f64>,
}

fn cpu_since(before: Option<f64>) -> Option<f64> {
    before
        .zip(process_cpu_seconds())
        .map(|(before, after)| after - before)
}

/// CPU seconds (user + system) this process has used, from /proc (Linux).
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let after_name = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on every Linux this runs on.
    Some((utime + stime) / 100.0)
}
