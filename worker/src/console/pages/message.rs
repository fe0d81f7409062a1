//! `/console/messages/{MessageSid}`: a message's current state, its
//! reconciliation with Twilio's API, and its timeline: every event in the
//! order received, each with its raw parameters on demand.

use actix_web::{web, HttpResponse};
use maud::{html, Markup};
use twilio_protocol::callback::MessageSid;
use twilio_protocol::error_codes::describe;

use crate::console::error::ConsoleError;
use crate::console::layout::{self, Section};
use crate::console::session::Viewer;
use crate::entity::{message, message_status_event};
use crate::http::{ApiError, HttpState};
use crate::search::{message_history, MessageHistory};

pub async fn page(
    viewer: Viewer,
    path: web::Path<String>,
    state: web::Data<HttpState>,
) -> Result<HttpResponse, ConsoleError> {
    let raw = path.into_inner();
    let sid =
        MessageSid::parse(&raw).map_err(|error| ConsoleError::BadRequest(error.to_string()))?;
    let MessageHistory { message, events } = message_history(&state.reads, &sid)
        .await
        .map_err(ApiError::from_read)?
        .ok_or_else(|| ConsoleError::NotFound(sid.as_str().to_owned()))?;
    Ok(layout::html_response(
        actix_web::http::StatusCode::OK,
        layout::page(
            sid.as_str(),
            Some(Section::Search),
            &viewer,
            html! {
                h1 { "Message " span.mono { (sid.as_str()) } }
                (current_state(&message))
                h2 { "Timeline" }
                div.card { (timeline(&events)) }
            },
        ),
    ))
}

fn current_state(message: &message::Model) -> Markup {
    html! {
        div.grid {
            div.card #current {
                dl.facts {
                    dt { "Status" } dd #current-status { (layout::status_badge(message.status.as_str())) }
                    dt { "Error" } dd { (layout::error_code(message.error_code)) }
                    @if let Some(code) = message.error_code {
                        dt { "What to do" } dd { (describe(code).advice) }
                    }
                    dt { "To" } dd.mono { (message.to_address.as_deref().unwrap_or("—")) }
                    dt { "From" } dd.mono { (message.from_address.as_deref().unwrap_or("—")) }
                    dt { "Account" } dd.mono { (message.account_sid.as_deref().unwrap_or("—")) }
                    dt { "First seen" } dd { (layout::time(message.first_seen_at)) }
                    dt { "Last seen" } dd { (layout::time(message.last_seen_at)) }
                    dt { "Final status at" } dd { @match message.final_at { Some(at) => (layout::time(at)), None => span.muted { "not final yet" } } }
                    dt { "Events" } dd { (message.event_count) }
                    @if message.conflicting_outcomes {
                        dt { "Outcomes" } dd { span.status.bad { "conflicting" } " Twilio reported more than one final outcome." }
                    }
                }
            }
            div.card #reconciliation {
                h2 { "Reconciliation with Twilio" }
                dl.facts {
                    dt { "Checks" } dd { (message.reconcile_checks) }
                    dt { "Last checked" } dd { @match message.reconciled_at { Some(at) => (layout::time(at)), None => span.muted { "never" } } }
                    @if let Some(at) = message.twilio_not_found_at {
                        dt { "Twilio" } dd { "answered 404 at " (layout::time(at)) "; not asked again" }
                    }
                }
            }
        }
    }
}

fn timeline(events: &[message_status_event::Model]) -> Markup {
    html! {
        ol.timeline #timeline {
            @for event in events {
                li class=(layout::tone(event.status.as_str())) {
                    span.when { (layout::precise_time(event.received_at)) }
                    " "
                    (layout::status_badge(event.status.as_str()))
                    " "
                    @if event.error_code.is_some() {
                        (layout::error_code(event.error_code))
                        " "
                    }
                    span.muted { "via " (event.source) }
                    @if event.foreign_account {
                        " " span.status.bad { "signed by another account: changed nothing" }
                    }
                    details {
                        summary { "Raw parameters" }
                        (raw_parameters(&event.raw_payload))
                    }
                }
            }
        }
    }
}

fn raw_parameters(payload: &serde_json::Value) -> Markup {
    match payload {
        serde_json::Value::Object(fields) => html! {
            table.raw {
                tbody {
                    @for (name, value) in fields {
                        tr {
                            td.mono { (name) }
                            td.mono { @match value { serde_json::Value::String(text) => (text), other => (other.to_string()) } }
                        }
                    }
                }
            }
        },
        other => html! { pre.mono { (other.to_string()) } },
    }
}
