//! Every refusal: the right status and nothing published.

use crate::helpers::{Options, TestApp};
use testkit::{message_sid, sign, status_params};
use twilio_protocol::form::FormParams;

async fn assert_refused(app: &TestApp, response: reqwest::Response, status: u16) {
    assert_eq!(response.status(), status);
    assert_eq!(app.queued().await, 0, "nothing may be published");
}

fn valid_params() -> FormParams {
    status_params(&message_sid(7), "delivered", None)
}

#[tokio::test]
async fn wrong_token_is_403() {
    let app = TestApp::spawn().await;
    let url = format!("{}/twilio/status", app.address);
    let forged = twilio_protocol::signature::compute_signature(
        &twilio_protocol::signature::AuthToken::new("not-the-token"),
        &url,
        &valid_params(),
    );
    let response = app
        .post_form("/twilio/status", valid_params().encode(), Some(&forged))
        .await;
    assert_refused(&app, response, 403).await;
}

#[tokio::test]
async fn tampered_parameter_is_403() {
    let app = TestApp::spawn().await;
    let signature = sign(&format!("{}/twilio/status", app.address), &valid_params());
    let tampered = valid_params().encode().replace("delivered", "undelivered");
    let response = app
        .post_form("/twilio/status", tampered, Some(&signature))
        .await;
    assert_refused(&app, response, 403).await;
}

#[tokio::test]
async fn missing_signature_header_is_403() {
    let app = TestApp::spawn().await;
    let response = app
        .post_form("/twilio/status", valid_params().encode(), None)
        .await;
    assert_refused(&app, response, 403).await;
}

#[tokio::test]
async fn wrong_scheme_in_public_base_url_is_403() {
    // Twilio signed https://example.com/...; we are told http://example.com.
    let app = TestApp::spawn_with(Options {
        public_base_url: Some("http://example.com"),
        ..Options::default()
    })
    .await;
    let signature = sign("https://example.com/twilio/status", &valid_params());
    let response = app
        .post_form("/twilio/status", valid_params().encode(), Some(&signature))
        .await;
    assert_refused(&app, response, 403).await;
}

#[tokio::test]
async fn signature_for_another_path_or_query_is_403() {
    let app = TestApp::spawn().await;
    let signature = sign(
        &format!("{}/twilio/status?tenant=1", app.address),
        &valid_params(),
    );
    let response = app
        .post_form(
            "/twilio/status?tenant=2",
            valid_params().encode(),
            Some(&signature),
        )
        .await;
    assert_refused(&app, response, 403).await;
}

#[tokio::test]
async fn rotated_tokens_are_both_accepted() {
    let app = TestApp::spawn_with(Options {
        tokens: Some("new-token,12345"),
        ..Options::default()
    })
    .await;
    let url = format!("{}/twilio/status", app.address);
    for token in ["new-token", "12345"] {
        let signature = twilio_protocol::signature::compute_signature(
            &twilio_protocol::signature::AuthToken::new(token),
            &url,
            &valid_params(),
        );
        let response = app
            .post_form("/twilio/status", valid_params().encode(), Some(&signature))
            .await;
        assert_eq!(response.status(), 200, "token {token}");
    }
    assert_eq!(app.queued().await, 2);
}

#[tokio::test]
async fn missing_message_sid_or_status_is_400() {
    let app = TestApp::spawn().await;
    let url = format!("{}/twilio/status", app.address);
    for missing in ["MessageSid", "MessageStatus"] {
        let params = FormParams::from_pairs(
            valid_params()
                .iter()
                .filter(|(k, _)| *k != missing)
                .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        let response = app
            .post_form(
                "/twilio/status",
                params.encode(),
                Some(&sign(&url, &params)),
            )
            .await;
        assert_eq!(response.status(), 400, "without {missing}");
        assert!(response.text().await.unwrap().contains(missing));
    }
    assert_eq!(app.queued().await, 0);
}

#[tokio::test]
async fn unparseable_body_is_400() {
    let app = TestApp::spawn().await;
    let response = app
        .post_form(
            "/twilio/status",
            "MessageSid=%ZZ&MessageStatus=sent".to_owned(),
            Some("x"),
        )
        .await;
    assert_refused(&app, response, 400).await;
}

#[tokio::test]
async fn oversized_body_is_413() {
    let app = TestApp::spawn().await;
    let mut params: Vec<(String, String)> = valid_params()
        .iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    params.push(("Body".to_owned(), "x".repeat(70 * 1024)));
    let params = FormParams::from_pairs(params);
    let signature = sign(&format!("{}/twilio/status", app.address), &params);
    let response = app
        .post_form("/twilio/status", params.encode(), Some(&signature))
        .await;
    assert_refused(&app, response, 413).await;
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let app = TestApp::spawn().await;
    let signature = sign(&format!("{}/twilio/status", app.address), &valid_params());
    let response = app
        .client
        .post(format!("{}/twilio/status", app.address))
        .header("Content-Type", "text/plain")
        .header("X-Twilio-Signature", signature)
        .body(valid_params().encode())
        .send()
        .await
        .unwrap();
    assert_refused(&app, response, 415).await;
}
