//! The protocol file's vectors whose URL is our route, end to end over HTTP:
//! the public base URL is set to the vector's host, the body carries the
//! vector's parameters, the header its signature.

use crate::helpers::{Options, TestApp};
use testkit::vectors::{tv4, tv5};
use twilio_protocol::form::FormParams;

/// (public base URL, path and query, parameters, signature Twilio sent)
fn accepted_vectors() -> Vec<(&'static str, &'static str, FormParams, &'static str)> {
    vec![
        (
            "https://example.com",
            "/twilio/status",
            tv4(),
            "b1qZ72pOUUWY6H7AzyGhZMfr2js=",
        ),
        (
            "https://example.com",
            "/twilio/status",
            tv4(),
            "qVPHOgehesvghAjaW63wK/Rrtfs=",
        ),
        (
            "https://example.com",
            "/twilio/status",
            tv5(),
            "QmwTNjaqH1I3ZNvzAlMOa6fBtFk=",
        ),
        (
            "https://example.com:8443",
            "/twilio/status",
            tv4(),
            "2MT4sMvn4sFKzJlYZS7HMUZvKC8=",
        ),
        (
            "https://example.com:8443",
            "/twilio/status",
            tv4(),
            "b1qZ72pOUUWY6H7AzyGhZMfr2js=",
        ),
        (
            "http://example.com",
            "/twilio/status",
            tv4(),
            "A2CQo9W115k3nMCYn9We/1dX6aw=",
        ),
        (
            "http://example.com",
            "/twilio/status",
            tv4(),
            "5WrHWad5DwDWGk1p0D+OWmGzl1c=",
        ),
        (
            "https://example.com",
            "/twilio/status?tenant=42&b=x%20y",
            tv4(),
            "dQIzWxdiFwYTsAR/TPFDeznCwHo=",
        ),
    ]
}

#[tokio::test]
async fn every_routable_vector_is_accepted_over_http() {
    for (base, path, params, signature) in accepted_vectors() {
        let app = TestApp::spawn_with(Options {
            public_base_url: Some(base),
            ..Options::default()
        })
        .await;
        let response = app.post_form(path, params.encode(), Some(signature)).await;
        assert_eq!(response.status(), 200, "{base}{path} with {signature}");
        assert_eq!(app.queued().await, 1, "{base}{path}");
    }
}

#[tokio::test]
async fn tv6_signature_for_port_8443_is_refused_without_the_port() {
    let app = TestApp::spawn_with(Options {
        public_base_url: Some("https://example.com"),
        ..Options::default()
    })
    .await;
    let response = app
        .post_form(
            "/twilio/status",
            tv4().encode(),
            Some("2MT4sMvn4sFKzJlYZS7HMUZvKC8="),
        )
        .await;
    assert_eq!(response.status(), 403);
    assert_eq!(app.queued().await, 0);
}

#[tokio::test]
async fn tv10_repeated_keys_verify_but_lack_required_fields() {
    let app = TestApp::spawn_with(Options {
        public_base_url: Some("https://example.com"),
        ..Options::default()
    })
    .await;
    let body = "MediaUrl=https%3A%2F%2Fb.example%2F2.jpg&Body=hi&MediaUrl=https%3A%2F%2Fa.example%2F1.jpg&To=%2B15558675310";
    let response = app
        .post_form(
            "/twilio/status",
            body.to_owned(),
            Some("sLq9nY0x9Fjk3C9rLh6KUShOUlk="),
        )
        .await;
    // Signature valid, so the refusal is about content: 400, not 403.
    assert_eq!(response.status(), 400);
    assert!(response.text().await.unwrap().contains("MessageSid"));
    assert_eq!(app.queued().await, 0);
}
