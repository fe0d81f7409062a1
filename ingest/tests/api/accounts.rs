//! Subaccount tokens, per-account rotation and SharedKey signatures, over
//! HTTP: which secret verifies a callback, and what is refused and counted.

use crate::helpers::{Options, TestApp};
use queue_wire::envelope::BodyKind;
use testkit::{message_sid, status_params, TEST_TOKEN};
use twilio_protocol::form::FormParams;
use twilio_protocol::keyring::SIGNATURE_SETTINGS_HEADER;
use twilio_protocol::signature::{body_sha256_hex, compute_signature_with, Algorithm, AuthToken};

const SHA1: Algorithm = Algorithm::HmacSha1;
const SHA256: Algorithm = Algorithm::HmacSha256;

/// A delivered callback of message `n` from `account`.
fn from_account(n: u64, account: &str) -> FormParams {
    let pairs = status_params(&message_sid(n), "delivered", None)
        .iter()
        .map(|(name, value)| {
            let value = if name == "AccountSid" { account } else { value };
            (name.to_owned(), value.to_owned())
        })
        .collect::<Vec<_>>();
    FormParams::from_pairs(pairs)
}

/// Posts `params` to /twilio/status, signed for `signed_url` with `secret`
/// under `algorithm`, with the settings header when given.
async fn post(
    app: &TestApp,
    params: &FormParams,
    signed_url: &str,
    secret: &str,
    algorithm: Algorithm,
    settings: Option<&str>,
) -> u16 {
    let signature = compute_signature_with(algorithm, &AuthToken::new(secret), signed_url, params);
    let mut request = app
        .client
        .post(format!("{}/twilio/status", app.address))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("X-Twilio-Signature", signature)
        .body(params.encode());
    if let Some(settings) = settings {
        request = request.header(SIGNATURE_SETTINGS_HEADER, settings);
    }
    request.send().await.unwrap().status().as_u16()
}

async fn outcome_count(app: &TestApp, outcome: &str) -> f64 {
    let metrics = app.metrics().await;
    let label = format!("outcome=\"{outcome}\"");
    metrics
        .lines()
        .filter(|line| line.starts_with("ingest_callbacks_received_total") && line.contains(&label))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn each_account_verifies_with_its_own_tokens_and_rotates_on_its_own() {
    let app = TestApp::spawn_with(Options {
        extra_args: vec!["--account-tokens", "ACsub1=sub1-new|sub1-old,ACsub2=sub2"],
        ..Options::default()
    })
    .await;
    let url = format!("{}/twilio/status", app.address);
    let accepted = [
        (1, "ACsub1", "sub1-new"),
        (2, "ACsub1", "sub1-old"),
        (3, "ACsub2", "sub2"),
        // Not listed: the main token serves it.
        (4, "ACother", TEST_TOKEN),
    ];
    for (n, account, token) in accepted {
        let status = post(&app, &from_account(n, account), &url, token, SHA1, None).await;
        assert_eq!(status, 200, "{account} signed with {token}");
    }
    let refused = [
        // A listed account's callbacks are not verified with the main token,
        (5, "ACsub1", TEST_TOKEN),
        // nor with another account's.
        (6, "ACsub2", "sub1-new"),
        (7, "ACother", "sub2"),
    ];
    for (n, account, token) in refused {
        let status = post(&app, &from_account(n, account), &url, token, SHA1, None).await;
        assert_eq!(status, 403, "{account} signed with {token}");
    }
    let queued: Vec<String> = app
        .queued_callbacks()
        .await
        .into_iter()
        .map(|(_, envelope)| {
            let params = FormParams::parse(&envelope.body).unwrap();
            params.get("MessageSid").unwrap().to_owned()
        })
        .collect();
    let mut expected: Vec<String> = (1..=4).map(message_sid).collect();
    let mut queued_sorted = queued;
    queued_sorted.sort();
    expected.sort();
    assert_eq!(queued_sorted, expected);
}

#[tokio::test]
async fn an_account_without_a_token_is_refused_with_its_own_outcome() {
    // Only subaccount tokens: no main token to fall back on.
    let app = TestApp::spawn_with(Options {
        tokens: Some(""),
        extra_args: vec!["--account-tokens", "ACsub1=sub1"],
        ..Options::default()
    })
    .await;
    let url = format!("{}/twilio/status", app.address);
    let before = outcome_count(&app, "unknown_account").await;
    assert_eq!(
        post(&app, &from_account(1, "ACsub1"), &url, "sub1", SHA1, None).await,
        200
    );
    assert_eq!(
        post(
            &app,
            &from_account(2, "ACunknown"),
            &url,
            "sub1",
            SHA1,
            None
        )
        .await,
        403
    );
    assert_eq!(outcome_count(&app, "unknown_account").await, before + 1.0);
    assert_eq!(app.queued().await, 1);
}

#[tokio::test]
async fn shared_key_signatures_verify_with_the_named_key_and_algorithm() {
    let app = TestApp::spawn_with(Options {
        extra_args: vec![
            "--signing-keys",
            "webhooks_k1=secret-one,webhooks_k2=secret-two",
        ],
        ..Options::default()
    })
    .await;
    let url = format!("{}/twilio/status", app.address);
    // The SDKs also accept the URL with its port removed.
    let port = app.address.rsplit(':').next().unwrap().to_owned();
    let without_port = url.replace(&format!(":{port}"), "");
    let k1_sha256 = "key=webhooks_k1,algorithm=HMAC_SHA256";
    let k2_sha1 = "key=webhooks_k2,algorithm=HMAC_SHA1";

    let accepted = [
        (1, url.as_str(), "secret-one", SHA256, k1_sha256),
        (2, without_port.as_str(), "secret-one", SHA256, k1_sha256),
        (3, url.as_str(), "secret-two", SHA1, k2_sha1),
        // No algorithm named: HMAC_SHA1.
        (4, url.as_str(), "secret-two", SHA1, "key=webhooks_k2"),
    ];
    for (n, signed_url, secret, algorithm, settings) in accepted {
        let params = from_account(n, "ACother");
        let status = post(&app, &params, signed_url, secret, algorithm, Some(settings)).await;
        assert_eq!(status, 200, "{settings} signed for {signed_url}");
    }

    let before = key_refusals(&app).await;
    let refused = [
        // SHA-256 signature, header says SHA-1.
        (
            5,
            "secret-one",
            SHA256,
            "key=webhooks_k1,algorithm=HMAC_SHA1",
        ),
        // The other key's secret.
        (6, "secret-two", SHA256, k1_sha256),
        // The main token does not stand in for a named key.
        (7, TEST_TOKEN, SHA1, k2_sha1),
        (
            8,
            "secret-one",
            SHA256,
            "key=webhooks_k9,algorithm=HMAC_SHA256",
        ),
        (
            9,
            "secret-one",
            SHA256,
            "key=webhooks_k1,algorithm=HMAC_SHA512",
        ),
    ];
    for (n, secret, algorithm, settings) in refused {
        let params = from_account(n, "ACother");
        let status = post(&app, &params, &url, secret, algorithm, Some(settings)).await;
        assert_eq!(status, 403, "{settings} signed with {secret}");
    }
    let after = key_refusals(&app).await;
    assert_eq!(after[1] - before[1], 1.0, "unknown key");
    assert_eq!(after[2] - before[2], 1.0, "unsupported algorithm");
    assert!(
        after[0] - before[0] >= 3.0,
        "bad signatures: {before:?} → {after:?}"
    );

    json_signed_with_a_named_key(&app, &url, k1_sha256).await;

    let queued = app.queued_callbacks().await;
    assert_eq!(queued.len(), 5, "4 form callbacks and 1 JSON");
    assert_eq!(
        queued
            .iter()
            .filter(|(_, envelope)| envelope.body_kind == BodyKind::Json)
            .count(),
        1
    );
}

/// The refusals a named key can meet: bad signature, unknown key,
/// unsupported algorithm.
async fn key_refusals(app: &TestApp) -> [f64; 3] {
    [
        outcome_count(app, "bad_signature").await,
        outcome_count(app, "unknown_signing_key").await,
        outcome_count(app, "unsupported_algorithm").await,
    ]
}

/// A JSON callback signed with `secret-one` under `settings`, on the URL
/// that carries the body's hash: accepted as sent, refused once changed.
async fn json_signed_with_a_named_key(app: &TestApp, url: &str, settings: &str) {
    // JSON, signed on the URL that carries the body's hash.
    let body = format!(
        r#"{{"AccountSid":"ACother","MessageSid":"{}","MessageStatus":"read"}}"#,
        message_sid(10)
    );
    let json_url = format!("{url}?bodySHA256={}", body_sha256_hex(body.as_bytes()));
    let signature = compute_signature_with(
        SHA256,
        &AuthToken::new("secret-one"),
        &json_url,
        &FormParams::default(),
    );
    let post_json = |body: String| {
        app.client
            .post(&json_url)
            .header("Content-Type", "application/json")
            .header("X-Twilio-Signature", signature.clone())
            .header(SIGNATURE_SETTINGS_HEADER, settings)
            .body(body)
            .send()
    };
    assert_eq!(post_json(body.clone()).await.unwrap().status(), 200);
    assert_eq!(post_json(format!("{body} ")).await.unwrap().status(), 403);
}

#[tokio::test]
async fn a_subaccount_json_callback_uses_its_account_token() {
    let app = TestApp::spawn_with(Options {
        extra_args: vec!["--account-tokens", "ACsub1=sub1"],
        ..Options::default()
    })
    .await;
    let body = format!(
        r#"{{"AccountSid":"ACsub1","MessageSid":"{}","MessageStatus":"sent"}}"#,
        message_sid(1)
    );
    let url = format!(
        "{}/twilio/status?bodySHA256={}",
        app.address,
        body_sha256_hex(body.as_bytes())
    );
    let sign = |token: &str| {
        compute_signature_with(SHA1, &AuthToken::new(token), &url, &FormParams::default())
    };
    for (token, expected) in [(TEST_TOKEN, 403), ("sub1", 200)] {
        let status = app
            .client
            .post(&url)
            .header("Content-Type", "application/json")
            .header("X-Twilio-Signature", sign(token))
            .body(body.clone())
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, expected, "signed with {token}");
    }
    assert_eq!(app.queued().await, 1);
}
