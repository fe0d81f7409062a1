//! Broker trouble: unreachable at start, connection killed under us.

use crate::helpers::{Options, TestApp};
use std::time::Duration;
use testkit::{message_sid, post_signed, status_params};

#[tokio::test]
async fn unreachable_broker_gives_503_before_twilio_gives_up() {
    let app = TestApp::spawn_with(Options {
        // Nothing listens on port 1.
        amqp_url: Some("amqp://guest:guest@127.0.0.1:1/%2f".to_owned()),
        without_spool: true,
        ..Options::default()
    })
    .await;
    // Twilio waits 15 s in all; the answer has to come well inside that.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let params = status_params(&message_sid(9), "sent", None);
    let response = post_signed(&client, &app.address, &params).await;
    assert_eq!(response.status(), 503);
    assert_eq!(app.readyz().await, 503);
    let health = client
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(app.queued().await, 0);
}

#[tokio::test]
async fn recovers_after_the_broker_drops_the_connection() {
    // Without a spool, so that what is not confirmed is refused (see spool.rs
    // for the same with one).
    let app = TestApp::spawn_with(Options {
        without_spool: true,
        ..Options::default()
    })
    .await;
    let first = status_params(&message_sid(10), "sent", None);
    assert_eq!(
        post_signed(&app.client, &app.address, &first)
            .await
            .status(),
        200
    );

    testkit::close_broker_connection(&format!("ingest {}", app.broker.topology.prefix()));

    // It comes back by itself; meanwhile answers are 503, never a lost 200.
    let second = status_params(&message_sid(11), "delivered", None);
    let mut answers = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = post_signed(&app.client, &app.address, &second)
            .await
            .status()
            .as_u16();
        answers.push(status);
        if status == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no recovery: {answers:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        answers.iter().all(|s| *s == 200 || *s == 503),
        "{answers:?}"
    );
    assert_eq!(app.readyz().await, 200);
    let accepted = answers.iter().filter(|s| **s == 200).count() as u32;
    assert_eq!(app.queued().await, 1 + accepted);
}

#[tokio::test]
async fn graceful_stop_answers_in_flight_requests_and_loses_no_200() {
    let app = TestApp::spawn().await;
    let requests: Vec<_> = (0..200u64)
        .map(|n| {
            let client = app.client.clone();
            let address = app.address.clone();
            tokio::spawn(async move {
                let params = status_params(&message_sid(100 + n), "sent", None);
                let url = format!("{address}/twilio/status");
                client
                    .post(&url)
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .header("X-Twilio-Signature", testkit::sign(&url, &params))
                    .body(params.encode())
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    app.handle.stop(true).await;

    let mut accepted = 0;
    for request in requests {
        match request.await.unwrap() {
            Ok(200) => accepted += 1,
            Ok(other) => panic!("in-flight request answered {other}"),
            // Not accepted any more: the client sees a refused connection, never a 2xx.
            Err(_) => {}
        }
    }
    assert_eq!(app.queued().await, accepted);
}
