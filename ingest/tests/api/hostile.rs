//! Hostile input: each gets its answer and nothing is published.

use crate::helpers::{Options, TestApp};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use testkit::{message_sid, sign, status_params};
use twilio_protocol::form::FormParams;

fn port_of(app: &TestApp) -> u16 {
    app.address.rsplit(':').next().unwrap().parse().unwrap()
}

async fn post_raw(app: &TestApp, body: Vec<u8>, signature: &str) -> reqwest::Response {
    app.client
        .post(format!("{}/twilio/status", app.address))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("X-Twilio-Signature", signature)
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn truncated_or_invalid_percent_encoding_and_invalid_utf8_are_400() {
    let app = TestApp::spawn().await;
    let sid = message_sid(1);
    for body in [
        format!("MessageSid={sid}&MessageStatus=sent&Body=%E2%9C").into_bytes(), // truncated UTF-8 sequence
        format!("MessageSid={sid}&MessageStatus=sent&Body=%4").into_bytes(),     // truncated escape
        format!("MessageSid={sid}&MessageStatus=sent&Body=%G1").into_bytes(),    // not hex
        [
            format!("MessageSid={sid}&MessageStatus=sent&Body=").into_bytes(),
            vec![0xff, 0xfe],
        ]
        .concat(),
    ] {
        let response = post_raw(&app, body.clone(), "irrelevant").await;
        assert_eq!(response.status(), 400, "{}", String::from_utf8_lossy(&body));
    }
    assert_eq!(app.queued().await, 0);
}

#[tokio::test]
async fn a_million_parameters_is_413_without_reading_it_all() {
    let app = TestApp::spawn().await;
    let body = "a=1&".repeat(1_000_000).into_bytes();
    assert_eq!(post_raw(&app, body, "x").await.status(), 413);
    assert_eq!(app.queued().await, 0);
}

#[tokio::test]
async fn duplicate_message_sid_keys_are_400_even_when_signed() {
    let app = TestApp::spawn().await;
    let params = FormParams::from_pairs(
        [
            ("MessageSid", message_sid(1)),
            ("MessageSid", message_sid(2)),
            ("MessageStatus", "sent".to_owned()),
        ]
        .map(|(k, v)| (k.to_owned(), v)),
    );
    let signature = sign(&format!("{}/twilio/status", app.address), &params);
    let response = post_raw(&app, params.encode().into_bytes(), &signature).await;
    assert_eq!(response.status(), 400);
    assert_eq!(app.queued().await, 0);
}

#[tokio::test]
async fn replay_with_a_changed_or_added_parameter_is_403() {
    let app = TestApp::spawn().await;
    let params = status_params(&message_sid(1), "undelivered", Some(30003));
    let signature = sign(&format!("{}/twilio/status", app.address), &params);
    let original = params.encode();
    for changed in [
        original.replace("30003", "30004"),
        format!("{original}&Extra=1"),
        original.replacen("AccountSid=", "AccountSid=x", 1),
    ] {
        assert_eq!(
            post_raw(&app, changed.into_bytes(), &signature)
                .await
                .status(),
            403
        );
    }
    assert_eq!(
        post_raw(&app, original.into_bytes(), &signature)
            .await
            .status(),
        200
    );
    assert_eq!(app.queued().await, 1);
}

#[tokio::test]
async fn a_huge_header_is_refused() {
    let app = TestApp::spawn().await;
    let params = status_params(&message_sid(1), "sent", None);
    let url = format!("{}/twilio/status", app.address);
    let result = app
        .client
        .post(&url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("X-Twilio-Signature", sign(&url, &params))
        .header("X-Padding", "a".repeat(200 * 1024))
        .body(params.encode())
        .send()
        .await;
    match result {
        Ok(response) => assert_eq!(response.status(), 431),
        // The server may also close the connection on it.
        Err(error) => assert!(
            error.is_request() || error.is_connect() || error.is_body(),
            "{error}"
        ),
    }
    assert_eq!(app.queued().await, 0);
}

#[tokio::test]
async fn wrong_methods_and_paths() {
    let app = TestApp::spawn().await;
    let get = app
        .client
        .get(format!("{}/twilio/status", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 405);
    assert_eq!(get.headers()["allow"], "POST");
    let put = app
        .client
        .put(format!("{}/twilio/status", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 405);
    let params = status_params(&message_sid(1), "sent", None);
    let elsewhere = format!("{}/twilio/other", app.address);
    let response = app
        .client
        .post(&elsewhere)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("X-Twilio-Signature", sign(&elsewhere, &params))
        .body(params.encode())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(app.queued().await, 0);
}

#[tokio::test]
async fn a_slow_client_is_cut_off() {
    let app = TestApp::spawn_with(Options {
        tune: Some(|config| config.body_timeout = Duration::from_millis(500)),
        ..Options::default()
    })
    .await;
    let port = port_of(&app);
    let answer = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        // Headers promise 100 bytes; only 10 ever come.
        let head = "POST /twilio/status HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nX-Twilio-Signature: x\r\nContent-Length: 100\r\n\r\nMessageSid";
        stream.write_all(head.as_bytes()).unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert_eq!(app.queued().await, 0);
}

#[tokio::test]
async fn a_flood_of_idle_connections_does_not_starve_real_callbacks() {
    use std::io::Write;
    let app = TestApp::spawn().await;
    let port = port_of(&app);
    // Half idle, half announcing a 64 KiB body and sending none: the
    // pre-signature state the README bounds.
    let idle: Vec<TcpStream> = (0..500)
        .map(|n| {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
            if n % 2 == 0 {
                write!(
                    stream,
                    "POST /twilio/status HTTP/1.1\r\nHost: x\r\n\
                     Content-Type: application/x-www-form-urlencoded\r\n\
                     Content-Length: 65536\r\n\r\n"
                )
                .unwrap();
            }
            stream
        })
        .collect();
    let params = status_params(&message_sid(1), "sent", None);
    let response = testkit::post_signed(&app.client, &app.address, &params).await;
    assert_eq!(response.status(), 200);
    assert_eq!(app.queued().await, 1);
    drop(idle);
}

#[tokio::test]
async fn forwarded_headers_are_ignored_unless_trusted() {
    let params = status_params(&message_sid(1), "sent", None);
    let signature = sign("https://hooks.example.com/twilio/status", &params);
    let post = |app: &TestApp| {
        app.client
            .post(format!("{}/twilio/status", app.address))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("X-Twilio-Signature", signature.clone())
            .header("X-Forwarded-Proto", "https")
            .header("X-Forwarded-Host", "hooks.example.com")
            .body(params.encode())
            .send()
    };
    let untrusting = TestApp::spawn().await;
    assert_eq!(post(&untrusting).await.unwrap().status(), 403);
    let trusting = TestApp::spawn_with(Options {
        extra_args: vec!["--trust-forwarded-headers", "true"],
        ..Options::default()
    })
    .await;
    assert_eq!(post(&trusting).await.unwrap().status(), 200);
}

#[tokio::test]
async fn metrics_never_show_the_token() {
    let app = TestApp::spawn_with(Options {
        tokens: Some("super-secret-token-42,12345"),
        ..Options::default()
    })
    .await;
    let params = status_params(&message_sid(1), "sent", None);
    testkit::post_signed(&app.client, &app.address, &params).await;
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("ingest_callbacks_received_total"),
        "{metrics}"
    );
    assert!(!metrics.contains("super-secret-token-42"));
}
