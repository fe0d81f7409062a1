//! The page shell every console page shares (head, navigation, sign-out),
//! the sign-in and problem pages, and the small pieces pages repeat: a
//! status badge, a time, an error code with its title.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use chrono::{DateTime, Utc};
use maud::{html, Markup, DOCTYPE};
use twilio_protocol::error_codes::describe;

use super::session::Viewer;

/// The console's sections, in the navigation's order.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Search,
    Outcomes,
    DeadLetters,
}

pub fn html_response(status: StatusCode, markup: Markup) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        // Pages show personal data: never kept by a browser or proxy cache.
        .insert_header(("Cache-Control", "no-store"))
        .body(markup.into_string())
}

pub fn page(title: &str, section: Option<Section>, viewer: &Viewer, content: Markup) -> Markup {
    let link = |href: &str, label: &str, this: Section| {
        html! { a href=(href) class=[(section == Some(this)).then_some("current")] { (label) } }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Twilio status console" }
                link rel="stylesheet" href="/console/assets/console.css";
            }
            body {
                header.top {
                    span.brand { "Twilio status" }
                    nav {
                        (link("/console/", "Messages", Section::Search))
                        (link("/console/outcomes", "Outcomes", Section::Outcomes))
                        (link("/console/dead-letters", "Dead letters", Section::DeadLetters))
                    }
                    @if viewer.signed_in {
                        form method="post" action="/console/sign-out" {
                            input type="hidden" name="csrf" value=(viewer.csrf_token());
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { (content) }
            }
        }
    }
}

fn bare(title: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) " · Twilio status console" }
                link rel="stylesheet" href="/console/assets/console.css";
            }
            body { main { (content) } }
        }
    }
}

pub fn sign_in(next: &str, problem: Option<&str>) -> Markup {
    bare(
        "Sign in",
        html! {
            div.card.sign-in {
                h1 { "Sign in" }
                p.muted { "Use the worker's API token (WORKER_API_TOKEN), or a read token to look without replaying." }
                @if let Some(problem) = problem {
                    div.notice.error role="alert" { (problem) }
                }
                form method="post" action="/console/sign-in" {
                    input type="hidden" name="next" value=(next);
                    label for="token" { "API token" }
                    input id="token" type="password" name="token" autocomplete="current-password" required autofocus;
                    button.primary type="submit" { "Sign in" }
                }
            }
        },
    )
}

pub fn problem(status: StatusCode, message: &str) -> Markup {
    bare(
        status.canonical_reason().unwrap_or("Error"),
        html! {
            div.card {
                h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
                p.notice.error role="alert" { (message) }
                p { a href="/console/" { "Back to the console" } }
            }
        },
    )
}

/// Green for a message that arrived, red for one that did not, amber for
/// one still on its way.
pub fn tone(status: &str) -> &'static str {
    match status {
        "delivered" | "read" | "received" => "good",
        "undelivered" | "failed" | "canceled" => "bad",
        "accepted" | "scheduled" | "queued" | "sending" | "sent" | "receiving" => "pending",
        _ => "neutral",
    }
}

pub fn status_badge(status: &str) -> Markup {
    html! { span class={ "status " (tone(status)) } { (status) } }
}

pub fn time(at: DateTime<Utc>) -> Markup {
    html! {
        time datetime=(at.to_rfc3339()) { (at.format("%Y-%m-%d %H:%M:%S UTC")) }
    }
}

/// To the millisecond: events of one message are often that close.
pub fn precise_time(at: DateTime<Utc>) -> Markup {
    html! {
        time datetime=(at.to_rfc3339()) { (at.format("%Y-%m-%d %H:%M:%S%.3f UTC")) }
    }
}

pub fn error_code(code: Option<i32>) -> Markup {
    match code {
        None => html! { span.muted { "—" } },
        Some(code) => {
            let info = describe(code);
            html! { span.mono { (code) } " " span { (info.title) } }
        }
    }
}
