//! Who may read: with a token configured, every API route asks for it; a
//! read token opens the reading routes only; the probes stay open.

use crate::helpers::{at, wait_for_event_rows, TestPipeline};
use testkit::{message_sid, status_params};

const FULL: &str = "full-access-token";
const READER: &str = "support-desk-token";

async fn get(url: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn reads_need_a_token_and_a_read_token_cannot_write() {
    let pipeline =
        TestPipeline::start_with(&["--api-token", FULL, "--api-read-tokens", READER]).await;
    let sid = message_sid(1);
    pipeline
        .broker
        .publish_callback(&status_params(&sid, "delivered", None), at(1))
        .await;
    wait_for_event_rows(&pipeline.db, 1).await;
    let base = &pipeline.worker.address;

    for path in [
        format!("/messages/{sid}"),
        "/messages?to=%2B15558675310".to_owned(),
        "/stats".to_owned(),
    ] {
        let url = format!("{base}{path}");
        let bare = get(&url, None).await;
        assert_eq!(bare.status(), 401, "{path} without a token");
        assert_eq!(bare.headers()["WWW-Authenticate"], "Bearer");
        let body = bare.text().await.unwrap();
        assert!(!body.contains("+1555"), "{path} leaked a number: {body}");
        assert_eq!(get(&url, Some("wrong")).await.status(), 401, "{path}");
        assert_eq!(
            get(&url, Some(&FULL[..FULL.len() - 1])).await.status(),
            401,
            "{path} with a prefix of the token"
        );
        assert_eq!(get(&url, Some(FULL)).await.status(), 200, "{path}");
        assert_eq!(get(&url, Some(READER)).await.status(), 200, "{path}");
    }
    let view: serde_json::Value = get(&format!("{base}/messages/{sid}"), Some(READER))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["to"], "+15558675310");

    // A read token may not send.
    let send = |token: &'static str| {
        reqwest::Client::new()
            .post(format!("{base}/messages"))
            .bearer_auth(token)
            .json(&serde_json::json!({"to": "+15558675310", "from": "+1", "body": "x"}))
            .send()
    };
    assert_eq!(send(READER).await.unwrap().status(), 403);
    // The full token passes the door (sending is not configured here: 503).
    assert_eq!(send(FULL).await.unwrap().status(), 503);

    for probe in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(
            get(&format!("{base}{probe}"), None).await.status(),
            200,
            "{probe}"
        );
    }
}
