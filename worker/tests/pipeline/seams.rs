//! What Twilio's signature cannot tell apart, and what it signs that we do
//! not understand: through ingest and the worker, end to end.

use crate::helpers::{
    event_rows, event_statuses, message_row, start_ingest, wait_for_event_rows, TestPipeline,
};
use std::time::Duration;
use testkit::{message_sid, sign, status_params};

/// Posts a raw form body with the given signature.
async fn post_raw(base: &str, body: &str, signature: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{base}/twilio/status"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("X-Twilio-Signature", signature)
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The original TV4-like undelivered callback and bodies that verify with its
/// signature: an appended `&=`, a repeated pair, a moved name/value boundary,
/// and combinations.
fn original_and_variants(sid: &str) -> (String, Vec<String>) {
    let original = format!(
        "AccountSid=AC00000000000000000000000000000000&ErrorCode=30003&From=%2B15017122661\
         &MessageSid={sid}&MessageStatus=undelivered&To=%2B15558675310"
    );
    let moved = original.replace("ErrorCode=30003", "ErrorCod=e30003");
    let variants = vec![
        format!("{original}&="),
        format!("{original}&MessageStatus=undelivered"),
        moved.clone(),
        format!("{moved}&=&To=%2B15558675310"),
        format!("=&{original}&From=%2B15017122661&="),
    ];
    (original, variants)
}

#[tokio::test]
async fn bodies_that_verify_with_a_stored_signature_add_no_event() {
    let pipeline = TestPipeline::start().await;
    let ingest = start_ingest(&pipeline.broker).await;
    let sid = message_sid(1);
    let (original, variants) = original_and_variants(&sid);
    let url = format!("{ingest}/twilio/status");
    let signature = sign(
        &url,
        &twilio_protocol::form::FormParams::parse(original.as_bytes()).unwrap(),
    );
    assert_eq!(post_raw(&ingest, &original, &signature).await, 200);
    wait_for_event_rows(&pipeline.db, 1).await;
    for variant in &variants {
        // Each really verifies: a wrong signature would be 403.
        assert_eq!(
            post_raw(&ingest, variant, &signature).await,
            200,
            "{variant}"
        );
    }
    // A marker callback after the variants: once it is stored, so would they be.
    let marker = status_params(&message_sid(2), "sent", None);
    assert_eq!(
        testkit::post_signed(&reqwest::Client::new(), &ingest, &marker)
            .await
            .status(),
        200
    );
    wait_for_event_rows(&pipeline.db, 2).await;
    pipeline.broker.wait_until_none_ready().await;
    assert_eq!(event_rows(&pipeline.db).await, 2);
    let row = message_row(&pipeline.db, &sid).await;
    assert_eq!(row.event_count, 1);
    assert_eq!(row.error_code, Some(30003));
    let view = pipeline.message_view(&sid).await;
    assert_eq!(view["events"].as_array().unwrap().len(), 1);
    assert_eq!(view["events"][0]["raw_payload"]["ErrorCode"], "30003");
}

#[tokio::test]
async fn a_variant_that_arrives_first_is_the_event_and_the_original_a_duplicate() {
    let pipeline = TestPipeline::start().await;
    let ingest = start_ingest(&pipeline.broker).await;
    let sid = message_sid(3);
    let (original, variants) = original_and_variants(&sid);
    let url = format!("{ingest}/twilio/status");
    let signature = sign(
        &url,
        &twilio_protocol::form::FormParams::parse(original.as_bytes()).unwrap(),
    );
    // The moved boundary first: its fields are what is stored.
    assert_eq!(post_raw(&ingest, &variants[2], &signature).await, 200);
    wait_for_event_rows(&pipeline.db, 1).await;
    assert_eq!(post_raw(&ingest, &original, &signature).await, 200);
    assert_eq!(post_raw(&ingest, &variants[0], &signature).await, 200);
    pipeline.broker.wait_until_none_ready().await;
    // Nothing in flight: both duplicates were consumed and absorbed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(event_rows(&pipeline.db).await, 1);
    let row = message_row(&pipeline.db, &sid).await;
    assert_eq!(row.event_count, 1);
    assert_eq!(row.status, "undelivered");
    assert_eq!(row.error_code, None, "the first arrival had no ErrorCode");
}

#[tokio::test]
async fn an_unknown_status_is_captured_without_moving_the_current_status() {
    let pipeline = TestPipeline::start().await;
    let ingest = start_ingest(&pipeline.broker).await;
    let client = reqwest::Client::new();
    let sid = message_sid(4);
    let future_status = "delivered_to_wearable";
    for status in ["sent", future_status] {
        let response =
            testkit::post_signed(&client, &ingest, &status_params(&sid, status, None)).await;
        assert_eq!(response.status(), 200, "{status}");
    }
    // A message whose only callback so far has an unknown status, one that is
    // very long, and an ErrorCode that is not a number.
    let only_unknown = message_sid(5);
    let long_status = "x".repeat(5000);
    let mut odd_code = status_params(&message_sid(6), "failed", None);
    odd_code = twilio_protocol::form::FormParams::from_pairs(
        odd_code
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .chain([("ErrorCode".to_owned(), "30003x".to_owned())]),
    );
    for params in [status_params(&only_unknown, &long_status, None), odd_code] {
        assert_eq!(
            testkit::post_signed(&client, &ingest, &params)
                .await
                .status(),
            200
        );
    }
    wait_for_event_rows(&pipeline.db, 4).await;

    let row = message_row(&pipeline.db, &sid).await;
    assert_eq!(row.status, "sent");
    assert_eq!(row.event_count, 2);
    let view = pipeline.message_view(&sid).await;
    assert_eq!(view["status"], "sent");
    assert_eq!(event_statuses(&view), ["sent", future_status]);

    // Any known status still takes over from an unknown one.
    assert_eq!(
        message_row(&pipeline.db, &only_unknown).await.status,
        long_status
    );
    assert_eq!(
        testkit::post_signed(
            &client,
            &ingest,
            &status_params(&only_unknown, "queued", None)
        )
        .await
        .status(),
        200
    );
    wait_for_event_rows(&pipeline.db, 5).await;
    assert_eq!(
        message_row(&pipeline.db, &only_unknown).await.status,
        "queued"
    );

    let odd = message_row(&pipeline.db, &message_sid(6)).await;
    assert_eq!((odd.status.as_str(), odd.error_code), ("failed", None));

    let metrics = testkit::scrape_metrics(&pipeline.worker.address).await;
    assert!(
        metrics.contains("worker_unrecognised_statuses_total"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_nul_is_refused_before_the_answer_and_nothing_is_published() {
    let pipeline = TestPipeline::start().await;
    let ingest = start_ingest(&pipeline.broker).await;
    let sid = message_sid(7);
    let with_nul = twilio_protocol::form::FormParams::from_pairs(
        status_params(&sid, "delivered", None)
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .chain([("Body".to_owned(), "a\0b".to_owned())]),
    );
    let response = testkit::post_signed(&reqwest::Client::new(), &ingest, &with_nul).await;
    assert_eq!(response.status(), 400);
    assert!(response.text().await.unwrap().contains("NUL"));
    // A good one after it is the only thing that arrives.
    let good = status_params(&message_sid(8), "delivered", None);
    assert_eq!(
        testkit::post_signed(&reqwest::Client::new(), &ingest, &good)
            .await
            .status(),
        200
    );
    wait_for_event_rows(&pipeline.db, 1).await;
    pipeline.broker.wait_until_none_ready().await;
    assert_eq!(event_rows(&pipeline.db).await, 1);
    assert_eq!(
        pipeline
            .broker
            .ready_count(&pipeline.broker.topology.dead_letter_queue())
            .await,
        0
    );
}
