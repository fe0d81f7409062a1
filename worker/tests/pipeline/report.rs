//! The delivery report: what the store says a batch did to it (first final
//! statuses, conflicts), and `GET /stats` over a window, against the
//! callbacks that made it.

use crate::helpers::{wait_for_event_rows, TestPipeline};
use chrono::{Duration as Age, Utc};
use queue_wire::envelope::CallbackEnvelope;
use testkit::{callback_envelope, message_sid, status_params};
use twilio_protocol::status::MessageStatus;
use worker::test_support::feed::ChangeFeed;
use worker::test_support::store::outcomes::FinalOutcome;

/// The account `status_params` sends as.
const ACCOUNT: &str = "AC00000000000000000000000000000000";

fn decoded(envelopes: &[CallbackEnvelope]) -> Vec<worker::test_support::decode::DecodedCallback> {
    envelopes
        .iter()
        .flat_map(|envelope| {
            worker::test_support::decode::decode(&envelope.to_properties(), &envelope.body)
                .unwrap()
                .callbacks
        })
        .collect()
}

#[tokio::test]
async fn a_message_counts_once_when_it_first_reaches_a_final_status() {
    let pipeline = TestPipeline::start().await;
    let base = Utc::now() - Age::minutes(10);
    let at = |seconds: i64| base + Age::seconds(seconds);
    let (one, two) = (message_sid(1), message_sid(2));

    let first = decoded(&[
        callback_envelope(&status_params(&one, "sent", None), at(0)),
        callback_envelope(&status_params(&one, "delivered", None), at(30)),
        callback_envelope(&status_params(&two, "queued", None), at(5)),
    ]);
    let outcome = worker::test_support::store::persist_batch(&pipeline.db, &first, ChangeFeed::On)
        .await
        .unwrap();
    assert_eq!(
        outcome.report.finals,
        [FinalOutcome {
            status: MessageStatus::Delivered,
            error_code: None,
            account_sid: Some(ACCOUNT.to_owned()),
            seconds: 30.0
        }]
    );
    assert_eq!(outcome.report.newly_conflicting, 0);

    // Later batches: `one` is final already (a read receipt and a
    // contradicting undelivered do not count it again, but the contradiction
    // counts); `two` fails for the first time, 60 s after it was first seen.
    let second = decoded(&[
        callback_envelope(&status_params(&one, "read", None), at(40)),
        callback_envelope(&status_params(&one, "undelivered", Some(30003)), at(45)),
        callback_envelope(&status_params(&two, "failed", Some(30007)), at(65)),
    ]);
    let outcome = worker::test_support::store::persist_batch(&pipeline.db, &second, ChangeFeed::On)
        .await
        .unwrap();
    assert_eq!(
        outcome.report.finals,
        [FinalOutcome {
            status: MessageStatus::Failed,
            error_code: Some(30007),
            account_sid: Some(ACCOUNT.to_owned()),
            seconds: 60.0
        }]
    );
    assert_eq!(outcome.report.newly_conflicting, 1);

    // The same callbacks again: duplicates change nothing.
    let again = worker::test_support::store::persist_batch(&pipeline.db, &second, ChangeFeed::On)
        .await
        .unwrap();
    assert_eq!(again.inserted, 0);
    assert!(again.report.finals.is_empty());
    assert_eq!(again.report.newly_conflicting, 0);
}

#[tokio::test]
async fn stats_report_the_window_as_the_database_holds_it() {
    let pipeline = TestPipeline::start_with(&["--reconcile-after", "sent=12h,queued=4h"]).await;
    let now = Utc::now();
    let ago = |seconds: i64| now - Age::seconds(seconds);
    let sid = |n: u64| message_sid(n);
    let callbacks = [
        // Delivered after 30 s.
        (sid(1), "sent", None, ago(60)),
        (sid(1), "delivered", None, ago(30)),
        // Undelivered (30003) after 60 s.
        (sid(2), "queued", None, ago(100)),
        (sid(2), "undelivered", Some(30003), ago(40)),
        // Failed (30007) after 30 s.
        (sid(3), "sent", None, ago(50)),
        (sid(3), "failed", Some(30007), ago(20)),
        // Delivered and undelivered: conflicting, final at once.
        (sid(4), "delivered", None, ago(10)),
        (sid(4), "undelivered", Some(30003), ago(5)),
        // Sent 13 hours ago and never heard of again: stale.
        (sid(5), "sent", None, now - Age::hours(13)),
        // Outside the window.
        (sid(6), "delivered", None, now - Age::hours(48)),
    ];
    for (sid, status, error_code, received_at) in &callbacks {
        pipeline
            .broker
            .publish_callback(&status_params(sid, status, *error_code), *received_at)
            .await;
    }
    wait_for_event_rows(&pipeline.db, callbacks.len() as u64).await;

    let stats: serde_json::Value =
        reqwest::get(format!("{}/stats?since=24h", pipeline.worker.address))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(stats["messages"], 5, "{stats:#}");
    assert_eq!(
        stats["by_status"],
        serde_json::json!({"delivered": 2, "undelivered": 1, "failed": 1, "sent": 1})
    );
    let errors = &stats["top_error_codes"];
    assert_eq!(errors[0]["code"], 30003);
    assert_eq!(
        errors[0]["messages"], 1,
        "message 4 shows delivered, without its code"
    );
    assert_eq!(errors[0]["title"], "Unreachable destination handset");
    assert_eq!(errors[1]["code"], 30007);
    let to_final = &stats["time_to_final"];
    assert_eq!(to_final["messages"], 4);
    // 0, 30, 30, 60 seconds.
    assert_eq!(to_final["p50"], 30.0);
    assert_eq!(to_final["by_outcome"]["delivered"]["messages"], 2);
    assert_eq!(to_final["by_outcome"]["undelivered"]["p50"], 60.0);
    assert_eq!(stats["conflicting"]["messages"], 1);
    assert_eq!(stats["conflicting"]["share"], 0.25);
    assert_eq!(stats["stale"], serde_json::json!({"sent": 1, "queued": 0}));

    let bad = reqwest::get(format!("{}/stats?since=tomorrow", pipeline.worker.address))
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}
