//! Printing shared by several subcommands' reports: JSON, percentiles, the
//! HTTP load and persistence summaries, and this process's CPU time (from
//! `/proc`).

use serde::Serialize;

use crate::latency::Percentiles;
use crate::persistence::PersistenceReport;
use crate::tally::HttpReport;

pub fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub fn format_percentiles(p: &Percentiles) -> String {
    format!(
        "p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  (n={})",
        p.p50, p.p90, p.p99, p.p99_9, p.max, p.count
    )
}

pub fn print_http(http: &HttpReport, open_loop: bool) {
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

pub fn print_persistence(p: &PersistenceReport) {
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

/// A ceiling's report with this process's CPU time added.
#[derive(Serialize)]
struct WithCpu<'a, T: Serialize> {
    #[serde(flatten)]
    report: &'a T,
    client_cpu_s: Option<f64>,
}

/// Prints a ceiling's report as JSON with the CPU seconds this process used
/// since `cpu_before` (a `process_cpu_seconds()`).
pub fn print_json_with_cpu(report: &impl Serialize, cpu_before: Option<f64>) -> anyhow::Result<()> {
    print_json(&WithCpu {
        report,
        client_cpu_s: cpu_since(cpu_before),
    })
}

/// CPU seconds this process used since `before` (a `process_cpu_seconds()`).
pub fn cpu_since(before: Option<f64>) -> Option<f64> {
    before
        .zip(process_cpu_seconds())
        .map(|(before, after)| after - before)
}

/// CPU seconds (user + system) this process has used, from /proc (Linux).
pub fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let after_name = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on every Linux this runs on.
    Some((utime + stime) / 100.0)
}
