//! What reaches the queue when a callback is accepted.

use crate::helpers::{send_many, TestApp};
use queue_wire::envelope::BodyKind;
use testkit::{message_sid, post_signed, sign, status_params, TEST_TOKEN};
use twilio_protocol::signature::{body_sha256_hex, compute_signature, AuthToken};

#[tokio::test]
async fn accepted_callback_is_queued_byte_for_byte_with_metadata() {
    let app = TestApp::spawn().await;
    // Parameter order, a repeated key, an unknown key and odd encoding must survive as sent.
    let body = format!(
        "To=%2B15558675310&MessageStatus=delivered&MessageSid={}&MediaUrl=b&MediaUrl=a&NewParam=h%C3%A9llo+%E2%9C%93",
        message_sid(1)
    );
    let params = twilio_protocol::form::FormParams::parse(body.as_bytes()).unwrap();
    let url = format!("{}/twilio/status", app.address);
    let response = app
        .client
        .post(&url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("X-Twilio-Signature", sign(&url, &params))
        .header("I-Twilio-Idempotency-Token", "idem-123")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();

    let callbacks = app.queued_callbacks().await;
    assert_eq!(callbacks.len(), 1);
    let (properties, envelope) = &callbacks[0];
    assert_eq!(envelope.body, body.as_bytes());
    assert_eq!(
        properties.content_type().as_ref().map(|ct| ct.as_str()),
        Some(queue_wire::batch::BATCH_CONTENT_TYPE)
    );
    assert_eq!(envelope.body_kind, BodyKind::Form);
    assert_eq!(envelope.idempotency_token.as_deref(), Some("idem-123"));
    assert_eq!(
        envelope.request_id.map(|id| id.to_string()),
        Some(request_id)
    );
    assert!(envelope.received_at <= chrono::Utc::now());
    assert_eq!(properties.delivery_mode(), &Some(2), "persistent");
}

#[tokio::test]
async fn duplicate_delivery_is_also_answered_200() {
    let app = TestApp::spawn().await;
    let params = status_params(&message_sid(2), "sent", None);
    for _ in 0..2 {
        assert_eq!(
            post_signed(&app.client, &app.address, &params)
                .await
                .status(),
            200
        );
    }
    // Both are queued; removing duplicates is the worker's job.
    assert_eq!(app.queued().await, 2);
}

#[tokio::test]
async fn json_callback_with_body_hash_is_accepted_and_a_wrong_hash_refused() {
    let app = TestApp::spawn().await;
    let body = format!(
        r#"{{"MessageSid":"{}","MessageStatus":"read","EventType":"READ"}}"#,
        message_sid(3)
    );
    let url = format!(
        "{}/twilio/status?bodySHA256={}",
        app.address,
        body_sha256_hex(body.as_bytes())
    );
    let signature = compute_signature(&AuthToken::new(TEST_TOKEN), &url, &Default::default());
    let post = |body: String| {
        app.client
            .post(&url)
            .header("Content-Type", "application/json")
            .header("X-Twilio-Signature", signature.clone())
            .body(body)
            .send()
    };
    assert_eq!(post(body.clone()).await.unwrap().status(), 200);
    // Same signed URL (so same hash claim), different body.
    assert_eq!(post(format!("{body} ")).await.unwrap().status(), 403);

    let callbacks = app.queued_callbacks().await;
    assert_eq!(callbacks.len(), 1);
    assert_eq!(callbacks[0].1.body, body.as_bytes());
    assert_eq!(callbacks[0].1.body_kind, BodyKind::Json);
}

#[tokio::test]
async fn a_thousand_concurrent_callbacks_are_all_confirmed_and_queued() {
    let app = TestApp::spawn().await;
    let statuses = send_many(&app.client, &app.address, 0..1000, "delivered", 250).await;
    assert_eq!(statuses.len(), 1000);
    assert!(
        statuses.iter().all(|s| *s == 200),
        "{:?}",
        statuses.iter().filter(|s| **s != 200).collect::<Vec<_>>()
    );
    assert_eq!(app.queued().await, 1000);
}

#[tokio::test]
async fn concurrent_callbacks_share_messages_within_the_count_cap() {
    let app = TestApp::spawn_with(crate::helpers::Options {
        tune: Some(|config| config.batching.max_callbacks = 8),
        ..Default::default()
    })
    .await;
    let statuses = send_many(&app.client, &app.address, 0..200, "sent", 100).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let messages = app.broker.take_all(&app.broker.topology.main_queue()).await;
    let mut sids = std::collections::BTreeSet::new();
    let mut total = 0;
    for (properties, data) in messages {
        let queue_wire::batch::QueueMessage::Batch(callbacks) =
            queue_wire::batch::QueueMessage::decode(&properties, data).unwrap()
        else {
            panic!("ingest publishes batch messages");
        };
        assert!((1..=8).contains(&callbacks.len()), "{}", callbacks.len());
        total += callbacks.len();
        for callback in callbacks {
            let params = twilio_protocol::form::FormParams::parse(&callback.body).unwrap();
            sids.insert(params.get("MessageSid").unwrap().to_owned());
        }
    }
    assert_eq!(
        (total, sids.len()),
        (200, 200),
        "every callback queued exactly once"
    );
}
