//! `/console/`: find messages by SID or address, filtered by status, error
//! code and time; a SID goes straight to its message page.

use actix_web::{web, HttpResponse};
use maud::{html, Markup};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde::Deserialize;
use twilio_protocol::callback::MessageSid;
use twilio_protocol::status::MessageStatus;

use crate::console::error::ConsoleError;
use crate::console::layout::{self, Section};
use crate::console::session::{see_other, Viewer};
use crate::http::HttpState;
use crate::search::{search, Page, SearchParams};

#[derive(Clone, Default, Deserialize)]
pub struct SearchForm {
    /// A message SID, or an address.
    #[serde(default)]
    q: String,
    /// Whether `q` is the recipient (`to`, the default) or the sender.
    #[serde(default)]
    by: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    error_code: String,
    #[serde(default)]
    since: String,
    cursor: Option<String>,
}

/// The time windows offered (any other `since` the API takes works too).
const WINDOWS: [(&str, &str); 5] = [
    ("", "Any time"),
    ("1h", "Last hour"),
    ("24h", "Last 24 hours"),
    ("7d", "Last 7 days"),
    ("30d", "Last 30 days"),
];

impl SearchForm {
    fn by_sender(&self) -> bool {
        self.by == "from"
    }

    fn params(&self) -> SearchParams {
        let address = Some(self.q.clone()).filter(|q| !q.trim().is_empty());
        SearchParams {
            to: address.clone().filter(|_| !self.by_sender()),
            from: address.filter(|_| self.by_sender()),
            status: Some(self.status.clone()),
            error_code: Some(self.error_code.clone()),
            since: Some(self.since.clone()),
            cursor: self.cursor.clone(),
            ..SearchParams::default()
        }
    }

    /// This search's query string (without its cursor), for the next
    /// page's link.
    fn query_string(&self) -> String {
        [
            ("q", &self.q),
            ("by", &self.by),
            ("status", &self.status),
            ("error_code", &self.error_code),
            ("since", &self.since),
        ]
        .iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(name, value)| {
            let value = utf8_percent_encode(value, NON_ALPHANUMERIC);
            format!("{name}={value}")
        })
        .collect::<Vec<_>>()
        .join("&")
    }
}

pub async fn page(
    viewer: Viewer,
    form: web::Query<SearchForm>,
    state: web::Data<HttpState>,
) -> Result<HttpResponse, ConsoleError> {
    let form = form.into_inner();
    if let Ok(sid) = MessageSid::parse(form.q.trim()) {
        return Ok(see_other(&format!("/console/messages/{}", sid.as_str())));
    }
    let outcome = match form.params().parse(chrono::Utc::now()) {
        Err(problem) => Err(ConsoleError::BadRequest(problem)),
        Ok(filter) => search(&state.reads, &filter)
            .await
            .map_err(|error| ConsoleError::from(crate::http::ApiError::from_read(error))),
    };
    let status = match &outcome {
        Ok(_) => actix_web::http::StatusCode::OK,
        Err(error) => actix_web::ResponseError::status_code(error),
    };
    Ok(layout::html_response(
        status,
        layout::page(
            "Messages",
            Some(Section::Search),
            &viewer,
            html! {
                h1 { "Messages" }
                (search_form(&form))
                @match &outcome {
                    Ok(page) => (results(&form, page)),
                    Err(problem) => div.notice.error role="alert" { (problem) },
                }
            },
        ),
    ))
}

fn search_form(form: &SearchForm) -> Markup {
    html! {
        form.card.filters method="get" action="/console/" role="search" {
            label { "SID or address"
                input type="search" name="q" value=(form.q)
                    placeholder="SM… or +15551234567 or whatsapp:+1…" autofocus;
            }
            label { "Address is the"
                select name="by" {
                    option value="to" selected[!form.by_sender()] { "recipient (To)" }
                    option value="from" selected[form.by_sender()] { "sender (From)" }
                }
            }
            label { "Status"
                select name="status" {
                    option value="" { "Any" }
                    @for status in MessageStatus::ALL {
                        option value=(status.as_str()) selected[form.status == status.as_str()] { (status.as_str()) }
                    }
                }
            }
            label { "Error code"
                input type="text" name="error_code" value=(form.error_code) inputmode="numeric"
                    size="8" placeholder="30007";
            }
            label { "First seen"
                select name="since" {
                    @for (value, label) in WINDOWS {
                        option value=(value) selected[form.since == value] { (label) }
                    }
                    @if !WINDOWS.iter().any(|(value, _)| *value == form.since) {
                        option value=(form.since) selected { "since " (form.since) }
                    }
                }
            }
            button.primary type="submit" { "Search" }
        }
    }
}

fn results(form: &SearchForm, page: &Page) -> Markup {
    html! {
        div.card {
            @if page.messages.is_empty() {
                p.muted #no-results { "No message matches." }
            } @else {
                table #results {
                    thead { tr {
                        th { "Message" } th { "Status" } th { "Error" } th { "To" } th { "From" }
                        th { "First seen" } th { "Last seen" }
                    } }
                    tbody {
                        @for message in &page.messages {
                            tr {
                                td.mono { a href={ "/console/messages/" (message.message_sid) } { (message.message_sid) } }
                                td { (layout::status_badge(message.status.as_str())) }
                                td { (layout::error_code(message.error_code)) }
                                td.mono { (message.to.as_deref().unwrap_or("—")) }
                                td.mono { (message.from.as_deref().unwrap_or("—")) }
                                td { (layout::time(message.first_seen_at)) }
                                td { (layout::time(message.last_seen_at)) }
                            }
                        }
                    }
                }
            }
            div.pager {
                span.muted { (page.messages.len()) " shown, newest first" }
                @if let Some(next) = &page.next_cursor {
                    a #next-page rel="next" href={ "/console/?" (form.query_string()) "&cursor=" (next) } { "Older messages →" }
                }
            }
        }
    }
}
