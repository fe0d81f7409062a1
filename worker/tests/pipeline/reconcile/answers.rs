//! What Twilio's answers lead to: a status recorded, a 404 remembered, a
//! 429 waited out, each account asked as itself.

use super::rig::*;
use crate::helpers::message_row;
use chrono::{Duration as Age, Utc};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use testkit::message_sid;
use twilio_protocol::status::MessageStatus;
use wiremock::matchers::{basic_auth, method, path};
use wiremock::{Mock, Request, Respond, ResponseTemplate};
use worker::test_support::feed::ChangeFeed;
use worker::test_support::reconcile::{Action, RunSummary};
use worker::test_support::store::projection::SentMessage;

#[tokio::test]
async fn a_sent_message_whose_receipt_never_came_gets_delivered_from_the_api() {
    let rig = rig().await;
    let (stuck, fresh, finished) = (message_sid(1), message_sid(2), message_sid(3));
    rig.callback(&stuck, "sent", MAIN, HOURS_13).await;
    // Sent an hour ago: the receipt may still come, not due (12 h).
    rig.callback(&fresh, "sent", MAIN, Age::hours(1)).await;
    // Final already.
    rig.callback(&finished, "delivered", MAIN, HOURS_13).await;
    let answer = resource(MAIN, &stuck, "delivered", None);
    Mock::given(method("GET"))
        .and(path(message_path(MAIN, &stuck)))
        .and(basic_auth(MAIN, "main-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(&answer))
        .expect(1)
        .mount(&rig.twilio)
        .await;

    let reconciler = rig.reconciler(&[]);
    let (summary, findings) = reconciler.run_once(false).await.unwrap();
    assert_eq!(
        summary,
        RunSummary {
            checked: 1,
            recorded: 1,
            ..RunSummary::default()
        },
        "{findings:?}"
    );
    let row = message_row(rig.db(), &stuck).await;
    assert_eq!(row.status, "delivered");
    assert_eq!(row.event_count, 2);
    assert!(row.final_at.is_some());
    assert_eq!(row.reconcile_checks, 1);
    let events = rig.events(&stuck).await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].source, "callback");
    assert_eq!(events[1].source, "reconciliation");
    assert_eq!(
        events[1].raw_payload, answer,
        "Twilio's answer is the raw payload"
    );
    // The event's time is Twilio's date_updated, so time to final is Twilio's.
    let updated = chrono::DateTime::parse_from_rfc2822(answer["date_updated"].as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc);
    assert_eq!(events[1].received_at, updated);
    assert_eq!(message_row(rig.db(), &stuck).await.final_at, Some(updated));
    assert_eq!(message_row(rig.db(), &fresh).await.status, "sent");

    // Final now: never asked again (the mock expects exactly one lookup).
    let (again, _) = reconciler.run_once(false).await.unwrap();
    assert_eq!(again.checked, 0);
}

#[tokio::test]
async fn a_queued_message_we_sent_and_never_heard_of_gets_failed_with_30007() {
    let rig = rig().await;
    let sid = message_sid(7);
    // What POST /messages records: no event, only the row.
    worker::test_support::store::record_sent_message(
        rig.db(),
        SentMessage {
            message_sid: &sid,
            status: MessageStatus::Queued,
            account_sid: Some(MAIN.to_owned()),
            from_address: Some("+15017122661".into()),
            to_address: Some("+15558675310".into()),
            seen_at: Utc::now() - Age::hours(5),
            traceparent: None,
        },
        ChangeFeed::On,
    )
    .await
    .unwrap();
    rig.answers_once(&sid, MAIN, "failed", Some(30007)).await;
    let (summary, _) = rig.reconciler(&[]).run_once(false).await.unwrap();
    assert_eq!(summary.recorded, 1);
    let row = message_row(rig.db(), &sid).await;
    assert_eq!(row.status, "failed");
    assert_eq!(row.error_code, Some(30007));
    assert_eq!(row.event_count, 1);
}

/// Answers 429 with `Retry-After` first, then the message, noting when each
/// request came.
struct RateLimitedOnce {
    seen: Arc<Mutex<Vec<Instant>>>,
    answer: serde_json::Value,
}

impl Respond for RateLimitedOnce {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let mut seen = self.seen.lock().unwrap();
        seen.push(Instant::now());
        if seen.len() == 1 {
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "2")
                .set_body_json(
                    json!({"status": 429, "code": 20429, "message": "Too Many Requests"}),
                )
        } else {
            ResponseTemplate::new(200).set_body_json(&self.answer)
        }
    }
}

#[tokio::test]
async fn a_429_with_retry_after_holds_the_account_back_that_long() {
    let rig = rig().await;
    let sid = message_sid(9);
    rig.callback(&sid, "sent", MAIN, HOURS_13).await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    Mock::given(method("GET"))
        .and(path(message_path(MAIN, &sid)))
        .respond_with(RateLimitedOnce {
            seen: seen.clone(),
            answer: resource(MAIN, &sid, "undelivered", Some(30003)),
        })
        .expect(2)
        .mount(&rig.twilio)
        .await;
    let (summary, _) = rig.reconciler(&[]).run_once(false).await.unwrap();
    assert_eq!(summary.recorded, 1);
    let seen = seen.lock().unwrap().clone();
    // A lower bound only: waiting at least Retry-After is the behaviour.
    assert!(
        seen[1] - seen[0] >= std::time::Duration::from_secs(2),
        "asked again after {:?}",
        seen[1] - seen[0]
    );
    assert_eq!(message_row(rig.db(), &sid).await.error_code, Some(30003));
}

#[tokio::test]
async fn a_message_twilio_does_not_know_is_recorded_once_and_never_asked_again() {
    let rig = rig().await;
    let sid = message_sid(11);
    rig.callback(&sid, "queued", MAIN, Age::hours(5)).await;
    Mock::given(method("GET"))
        .and(path(message_path(MAIN, &sid)))
        .respond_with(ResponseTemplate::new(404).set_body_json(
            json!({"status": 404, "code": 20404, "message": "The requested resource was not found"}),
        ))
        .expect(1)
        .mount(&rig.twilio)
        .await;
    // Due again at once after a lookup, were it not for the 404.
    let reconciler = rig.reconciler(&["--reconcile-after", "queued=1s"]);
    let (first, findings) = reconciler.run_once(false).await.unwrap();
    assert_eq!(first.not_found, 1);
    assert_eq!(findings[0].action, Action::NotFound);
    let row = message_row(rig.db(), &sid).await;
    assert!(row.twilio_not_found_at.is_some());
    assert_eq!(row.status, "queued", "a 404 changes no status");
    assert_eq!(row.event_count, 1);
    let (second, _) = reconciler.run_once(false).await.unwrap();
    assert_eq!(second.checked, 0);
}

#[tokio::test]
async fn each_account_is_asked_with_its_own_credentials() {
    let rig = rig().await;
    let (of_sub, of_other) = (message_sid(21), message_sid(22));
    let other = "AC000000000000000000000000000000cc";
    rig.callback(&of_sub, "sent", SUB, HOURS_13).await;
    rig.callback(&of_other, "sent", other, HOURS_13).await;
    // The subaccount with its own (first) token; an unlisted account through
    // the main account's credentials, at its own URL.
    Mock::given(method("GET"))
        .and(path(message_path(SUB, &of_sub)))
        .and(basic_auth(SUB, "sub-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(resource(
            SUB,
            &of_sub,
            "delivered",
            None,
        )))
        .expect(1)
        .mount(&rig.twilio)
        .await;
    Mock::given(method("GET"))
        .and(path(message_path(other, &of_other)))
        .and(basic_auth(MAIN, "main-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(resource(
            other,
            &of_other,
            "delivered",
            None,
        )))
        .expect(1)
        .mount(&rig.twilio)
        .await;
    let (summary, findings) = rig.reconciler(&[]).run_once(false).await.unwrap();
    assert_eq!(summary.recorded, 2, "{findings:?}");
    assert_eq!(message_row(rig.db(), &of_sub).await.status, "delivered");
    assert_eq!(message_row(rig.db(), &of_other).await.status, "delivered");
}
