//! `/console/dead-letters`: the letters with their reason, attempts, SID and
//! times, filtered by reason, time range and SID; replay one, or every
//! letter matching the filter (`crate::dlq`, as `worker dlq replay` does).

use actix_web::{web, HttpResponse};
use maud::{html, Markup};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde::Deserialize;

use crate::console::error::ConsoleError;
use crate::console::layout::{self, Section};
use crate::console::session::{see_other, Viewer};
use crate::dlq::{self, DeadLetterSummary, LetterFilter};
use crate::http::HttpState;
use crate::stats::{instant, instant_or_ago};

/// Listing reads every letter in the queue (and puts it back): a queue this
/// large is a job for `worker dlq list`, not a page.
const READ_DEADLINE: std::time::Duration = std::time::Duration::from_secs(12);

#[derive(Clone, Default, Deserialize)]
pub struct LetterForm {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    sid: String,
    /// One letter (its `letter_id`), for replaying just that one.
    #[serde(default)]
    letter: String,
    /// How many the last replay moved back (shown once after it).
    #[serde(default)]
    replayed: Option<usize>,
}

impl LetterForm {
    fn filter(&self) -> Result<LetterFilter, ConsoleError> {
        let now = chrono::Utc::now();
        let given = |value: &str| Some(value.trim().to_owned()).filter(|v| !v.is_empty());
        Ok(LetterFilter {
            reason: given(&self.reason),
            since: given(&self.since)
                .map(|raw| instant_or_ago("since", &raw, now))
                .transpose()
                .map_err(ConsoleError::BadRequest)?,
            until: given(&self.until)
                .map(|raw| instant("until", &raw))
                .transpose()
                .map_err(ConsoleError::BadRequest)?,
            message_sid: given(&self.sid),
            letter_id: given(&self.letter),
        })
    }

    /// The filter's query string, to come back to after a replay.
    fn query_string(&self) -> String {
        [
            ("reason", &self.reason),
            ("since", &self.since),
            ("until", &self.until),
            ("sid", &self.sid),
        ]
        .iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(name, value)| format!("{name}={}", utf8_percent_encode(value, NON_ALPHANUMERIC)))
        .collect::<Vec<_>>()
        .join("&")
    }
}

pub async fn page(
    viewer: Viewer,
    form: web::Query<LetterForm>,
    state: web::Data<HttpState>,
) -> Result<HttpResponse, ConsoleError> {
    let form = form.into_inner();
    let filter = form.filter()?;
    let letters = tokio::time::timeout(
        READ_DEADLINE,
        dlq::list(&state.amqp_url, &state.topology, &filter),
    )
    .await
    .map_err(|_| {
        ConsoleError::Unavailable(
            "the dead-letter queue took too long to read; use `worker dlq list`".into(),
        )
    })?
    .map_err(|error| ConsoleError::Unavailable(format!("RabbitMQ: {error}")))?;
    Ok(layout::html_response(
        actix_web::http::StatusCode::OK,
        layout::page(
            "Dead letters",
            Some(Section::DeadLetters),
            &viewer,
            html! {
                h1 { "Dead letters" }
                @if let Some(replayed) = form.replayed {
                    div.notice.ok #replayed role="status" { "Replayed " (replayed) " dead letter(s)." }
                }
                (filter_form(&form))
                (letter_table(&form, &letters, &viewer))
            },
        ),
    ))
}

fn filter_form(form: &LetterForm) -> Markup {
    html! {
        form.card.filters method="get" action="/console/dead-letters" {
            label { "Reason contains" input type="text" name="reason" value=(form.reason); }
            label { "First failure since" input type="text" name="since" value=(form.since) placeholder="24h or 2026-12-01T09:00:00Z"; }
            label { "until" input type="text" name="until" value=(form.until) placeholder="2026-12-02T00:00:00Z"; }
            label { "MessageSid" input type="text" name="sid" value=(form.sid) size="36"; }
            button.primary type="submit" { "Filter" }
        }
    }
}

/// The filter's fields, hidden, for a replay form.
fn hidden_filter(form: &LetterForm) -> Markup {
    html! {
        input type="hidden" name="reason" value=(form.reason);
        input type="hidden" name="since" value=(form.since);
        input type="hidden" name="until" value=(form.until);
        input type="hidden" name="sid" value=(form.sid);
    }
}

fn letter_table(form: &LetterForm, letters: &[DeadLetterSummary], viewer: &Viewer) -> Markup {
    html! {
        div.card {
            @if letters.is_empty() {
                p.muted #no-letters { "No dead letter matches." }
            } @else {
                form method="post" action="/console/dead-letters/replay" {
                    input type="hidden" name="csrf" value=(viewer.csrf_token());
                    (hidden_filter(form))
                    button.primary #replay-all type="submit" disabled[!viewer.may_change()] {
                        "Replay all " (letters.len()) " matching"
                    }
                    @if !viewer.may_change() { " " span.muted { "(a read token cannot replay)" } }
                }
                table #letters {
                    thead { tr {
                        th { "Letter" } th { "Reason" } th { "Attempts" } th { "MessageSid" }
                        th { "First failure" } th { "Received" } th {}
                    } }
                    tbody {
                        @for letter in letters {
                            tr {
                                td.mono { (letter.letter_id) }
                                td { (letter.reason) }
                                td { (letter.attempts) }
                                td.mono {
                                    @match &letter.message_sid {
                                        Some(sid) => a href={ "/console/messages/" (sid) } { (sid) },
                                        None => span.muted { "—" },
                                    }
                                }
                                td { @match letter.first_failure_at { Some(at) => (layout::time(at)), None => span.muted { "—" } } }
                                td { @match letter.received_at { Some(at) => (layout::time(at)), None => span.muted { "—" } } }
                                td {
                                    form method="post" action="/console/dead-letters/replay" {
                                        input type="hidden" name="csrf" value=(viewer.csrf_token());
                                        input type="hidden" name="letter" value=(letter.letter_id);
                                        (hidden_filter(form))
                                        button.action type="submit" disabled[!viewer.may_change()] { "Replay" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[derive(Deserialize)]
pub struct ReplayForm {
    #[serde(default)]
    csrf: String,
    #[serde(flatten)]
    letters: LetterForm,
}

pub async fn replay(
    viewer: Viewer,
    form: web::Form<ReplayForm>,
    state: web::Data<HttpState>,
) -> Result<HttpResponse, ConsoleError> {
    viewer.check_change(&form.csrf)?;
    let filter = form.letters.filter()?;
    let replayed = dlq::replay(&state.amqp_url, &state.topology, &filter, None)
        .await
        .map_err(|error| ConsoleError::Unavailable(format!("RabbitMQ: {error}")))?;
    tracing::info!(replayed, ?filter, "dead letters replayed from the console");
    let back = form.letters.query_string();
    let separator = if back.is_empty() { "" } else { "&" };
    Ok(see_other(&format!(
        "/console/dead-letters?{back}{separator}replayed={replayed}"
    )))
}
