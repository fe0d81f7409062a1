//! `/console/outcomes`: the `/stats` figures as pictures: how messages first
//! seen in the window fared, how long they took to a final status, and
//! which error codes stopped them.

use actix_web::{web, HttpResponse};
use maud::{html, Markup};
use serde::Deserialize;

use crate::console::charts::{bars, Bar};
use crate::console::error::ConsoleError;
use crate::console::layout::{self, Section};
use crate::console::session::Viewer;
use crate::http::{ApiError, HttpState};
use crate::stats::{Stats, Window};

#[derive(Deserialize)]
pub struct OutcomesQuery {
    since: Option<String>,
}

const WINDOWS: [(&str, &str); 4] = [
    ("1h", "Last hour"),
    ("24h", "Last 24 hours"),
    ("7d", "Last 7 days"),
    ("31d", "Last 31 days"),
];

pub async fn page(
    viewer: Viewer,
    query: web::Query<OutcomesQuery>,
    state: web::Data<HttpState>,
) -> Result<HttpResponse, ConsoleError> {
    let since = query
        .since
        .clone()
        .filter(|since| !since.is_empty())
        .unwrap_or_else(|| "24h".to_owned());
    let window =
        Window::parse(Some(&since), None, chrono::Utc::now()).map_err(ConsoleError::BadRequest)?;
    let stats = tokio::time::timeout(std::time::Duration::from_secs(12), async {
        state
            .stats
            .get_or_compute(
                (Some(since.clone()), None),
                window,
                &state.reads,
                &state.stale_after,
            )
            .await
            .map_err(ApiError::from_read)?
            .ok_or(ApiError::Busy)
    })
    .await
    .unwrap_or(Err(ApiError::TooSlow))?;
    Ok(layout::html_response(
        actix_web::http::StatusCode::OK,
        layout::page(
            "Outcomes",
            Some(Section::Outcomes),
            &viewer,
            html! {
                h1 { "Outcomes" }
                form.card.filters method="get" action="/console/outcomes" {
                    label { "Messages first seen"
                        select name="since" {
                            @for (value, label) in WINDOWS {
                                option value=(value) selected[since == value] { (label) }
                            }
                        }
                    }
                    button.primary type="submit" { "Show" }
                }
                (figures(&stats))
            },
        ),
    ))
}

fn figures(stats: &Stats) -> Markup {
    let mut mix: Vec<(&String, &i64)> = stats.by_status.iter().collect();
    mix.sort_by(|a, b| b.1.cmp(a.1));
    let total = stats.messages.max(1) as f64;
    let status_mix: Vec<Bar> = mix
        .into_iter()
        .map(|(status, count)| Bar {
            label: status.clone(),
            value: *count as f64,
            shown: format!("{count} ({:.1}%)", *count as f64 / total * 100.0),
            tone: layout::tone(status),
        })
        .collect();
    let errors: Vec<Bar> = stats
        .top_error_codes
        .iter()
        .map(|error| Bar {
            label: format!("{} {}", error.code, error.title),
            value: error.messages as f64,
            shown: error.messages.to_string(),
            tone: "bad",
        })
        .collect();
    let time_to_final = &stats.time_to_final;
    let percentiles = |p: &crate::stats::Percentiles| -> Vec<Bar> {
        [
            ("median", p.p50),
            ("90th percentile", p.p90),
            ("99th percentile", p.p99),
        ]
        .into_iter()
        .filter_map(|(label, seconds)| {
            seconds.map(|seconds| Bar {
                label: label.to_owned(),
                value: seconds,
                shown: format!("{seconds:.1} s"),
                tone: "neutral",
            })
        })
        .collect()
    };
    html! {
        div.grid {
            div.card { h2 { "Messages" } div.figure #messages-total { (stats.messages) } p.muted { "first seen from " (layout::time(stats.since)) " to " (layout::time(stats.until)) } }
            div.card { h2 { "Conflicting outcomes" } div.figure { (stats.conflicting.messages) } p.muted { (format!("{:.2}%", stats.conflicting.share * 100.0)) " of the messages with an outcome" } }
        }
        div.card #status-mix { h2 { "Current status" } (bars("Messages by current status", &status_mix)) }
        div.card #time-to-final {
            h2 { "Time to a final status" }
            (bars("Seconds from first event to final status", &percentiles(&time_to_final.all)))
            @if !time_to_final.by_outcome.is_empty() {
                table {
                    thead { tr { th { "Outcome" } th { "Messages" } th { "Median" } th { "90th" } th { "99th" } } }
                    tbody {
                        @for (outcome, p) in &time_to_final.by_outcome {
                            tr {
                                td { (layout::status_badge(outcome)) }
                                td { (p.messages) }
                                td { (seconds(p.p50)) } td { (seconds(p.p90)) } td { (seconds(p.p99)) }
                            }
                        }
                    }
                }
            }
        }
        div.card #error-codes { h2 { "Top error codes" } (bars("Messages by error code", &errors)) }
        @let stale: Vec<_> = stats.stale.iter().filter(|(_, count)| **count > 0).collect();
        @if !stale.is_empty() {
            div.card #stale {
                h2 { "Without news for too long" }
                table {
                    thead { tr { th { "Status" } th { "Messages" } } }
                    tbody { @for (status, count) in stale { tr { td { (layout::status_badge(status)) } td { (count) } } } }
                }
            }
        }
    }
}

fn seconds(value: Option<f64>) -> String {
    value.map_or_else(|| "—".to_owned(), |s| format!("{s:.1} s"))
}
