//! The worker's HTTP port.

use crate::helpers::{at, wait_for_event_rows, TestPipeline};
use testkit::{message_sid, status_params};

#[tokio::test]
async fn message_view_has_status_error_description_and_history() {
    let pipeline = TestPipeline::start().await;
    let sid = message_sid(1);
    pipeline
        .broker
        .publish_callback(&status_params(&sid, "sent", None), at(1))
        .await;
    pipeline
        .broker
        .publish_callback(&status_params(&sid, "undelivered", Some(30003)), at(2))
        .await;
    wait_for_event_rows(&pipeline.db, 2).await;

    let response = reqwest::get(format!("{}/messages/{sid}", pipeline.worker.address))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let view: serde_json::Value = response.json().await.unwrap();
    assert_eq!(view["status"], "undelivered");
    assert_eq!(view["error_code"], 30003);
    assert_eq!(view["error"]["title"], "Unreachable destination handset");
    assert_eq!(view["to"], "+15558675310");
    let events = view["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["status"], "sent");
    assert_eq!(events[1]["raw_payload"]["ErrorCode"], "30003");
}

#[tokio::test]
async fn unknown_sid_is_404_and_malformed_sid_is_400() {
    let pipeline = TestPipeline::start().await;
    let unknown = reqwest::get(format!(
        "{}/messages/{}",
        pipeline.worker.address,
        message_sid(42)
    ))
    .await
    .unwrap();
    assert_eq!(unknown.status(), 404);
    let malformed = reqwest::get(format!("{}/messages/not-a-sid", pipeline.worker.address))
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
}

#[tokio::test]
async fn probes_and_metrics_answer() {
    let pipeline = TestPipeline::start().await;
    let base = &pipeline.worker.address;
    assert_eq!(
        reqwest::get(format!("{base}/healthz"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(pipeline.worker.readyz().await, 200);
    pipeline
        .broker
        .publish_callback(&status_params(&message_sid(1), "sent", None), at(1))
        .await;
    wait_for_event_rows(&pipeline.db, 1).await;
    let metrics = testkit::scrape_metrics(base).await;
    assert!(
        metrics.contains("worker_events_persisted_total"),
        "{metrics}"
    );
}
