//! POST /messages against a fake Twilio REST API (the one thing we mock).

use crate::helpers::{message_row, RunningWorker};
use serde_json::json;
use testkit::{TestBroker, TestDatabase};
use wiremock::matchers::{basic_auth, body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const ACCOUNT: &str = "AC00000000000000000000000000000000";
const SENT_SID: &str = "SM99999999999999999999999999999999";

struct Sender {
    twilio: MockServer,
    worker: RunningWorker,
    _broker: TestBroker,
    database: TestDatabase,
}

async fn start(extra: &[&str]) -> Sender {
    let twilio = MockServer::start().await;
    let broker = TestBroker::new().await;
    let database = TestDatabase::new().await;
    let uri = twilio.uri();
    let mut args = vec![
        "--twilio-account-sid",
        ACCOUNT,
        "--twilio-auth-token",
        "account-token",
        "--twilio-api-base-url",
        &uri,
        "--public-base-url",
        "https://hooks.example.com",
    ];
    args.extend_from_slice(extra);
    let worker = RunningWorker::start_with(&broker, &database.url, &args).await;
    worker.wait_ready().await;
    Sender {
        twilio,
        worker,
        _broker: broker,
        database,
    }
}

fn messages_path() -> String {
    format!("/2010-04-01/Accounts/{ACCOUNT}/Messages.json")
}

async fn post(sender: &Sender, body: serde_json::Value, bearer: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(format!("{}/messages", sender.worker.address))
        .json(&body);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn sends_with_our_status_callback_and_records_the_initial_status() {
    let sender = start(&[]).await;
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .and(basic_auth(ACCOUNT, "account-token"))
        .and(header("Content-Type", "application/x-www-form-urlencoded"))
        .and(body_string_contains(
            "StatusCallback=https%3A%2F%2Fhooks.example.com%2Ftwilio%2Fstatus",
        ))
        .and(body_string_contains("To=%2B15558675310"))
        .and(body_string_contains("Body=hello+there"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "sid": SENT_SID, "status": "queued", "account_sid": ACCOUNT,
            "from": "+15017122661", "to": "+15558675310", "error_code": null
        })))
        .expect(1)
        .mount(&sender.twilio)
        .await;

    let response = post(
        &sender,
        json!({"to": "+15558675310", "from": "+15017122661", "body": "hello there"}),
        None,
    )
    .await;
    assert_eq!(response.status(), 201);
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(answer["sid"], SENT_SID);
    assert_eq!(answer["recorded"], true);

    let db = sender.database.connect().await;
    let row = message_row(&db, SENT_SID).await;
    assert_eq!(row.status, "queued");
    assert_eq!(row.event_count, 0, "no callback has arrived yet");
    assert_eq!(row.to_address.as_deref(), Some("+15558675310"));
}

#[tokio::test]
async fn twilio_errors_come_back_with_twilio_code_and_message() {
    let sender = start(&[]).await;
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "status": 400, "code": 21211, "message": "The 'To' number +1 is not a valid phone number.",
            "more_info": "https://www.twilio.com/docs/errors/21211"
        })))
        .mount(&sender.twilio)
        .await;
    let response = post(
        &sender,
        json!({"to": "+1", "from": "+15017122661", "body": "x"}),
        None,
    )
    .await;
    assert_eq!(response.status(), 400);
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(answer["twilio_code"], 21211);
    assert!(answer["error"]
        .as_str()
        .unwrap()
        .contains("not a valid phone number"));
}

#[tokio::test]
async fn twilio_outage_and_bad_credentials_are_502_and_rate_limits_429() {
    let sender = start(&[]).await;
    for (twilio_status, code, expected) in [(500, 20500, 502), (401, 20003, 502), (429, 20429, 429)]
    {
        sender.twilio.reset().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(twilio_status).set_body_json(json!({
                "status": twilio_status, "code": code, "message": "nope"
            })))
            .mount(&sender.twilio)
            .await;
        let response = post(
            &sender,
            json!({"to": "+15558675310", "from": "+1", "body": "x"}),
            None,
        )
        .await;
        assert_eq!(
            response.status(),
            expected,
            "Twilio answered {twilio_status}"
        );
    }
}

#[tokio::test]
async fn invalid_requests_are_400_without_calling_twilio() {
    let sender = start(&[]).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&sender.twilio)
        .await;
    for body in [
        json!({"to": "+15558675310", "body": "no sender"}),
        json!({"to": "+15558675310", "from": "+1"}),
        json!({"from": "+1", "body": "no recipient"}),
    ] {
        assert_eq!(
            post(&sender, body.clone(), None).await.status(),
            400,
            "{body}"
        );
    }
}

#[tokio::test]
async fn a_configured_api_token_is_required() {
    let sender = start(&["--api-token", "let-me-in"]).await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({"sid": SENT_SID, "status": "accepted"})),
        )
        .mount(&sender.twilio)
        .await;
    let body = json!({"to": "+15558675310", "messaging_service_sid": "MG1", "body": "x"});
    assert_eq!(post(&sender, body.clone(), None).await.status(), 401);
    assert_eq!(
        post(&sender, body.clone(), Some("wrong")).await.status(),
        401
    );
    assert_eq!(post(&sender, body, Some("let-me-in")).await.status(), 201);
}

#[tokio::test]
async fn bound_beyond_loopback_without_a_token_the_api_is_refused() {
    let twilio = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&twilio)
        .await;
    let broker = TestBroker::new().await;
    let database = TestDatabase::new().await;
    let uri = twilio.uri();
    let worker = RunningWorker::start_with(
        &broker,
        &database.url,
        &[
            "--addr",
            "0.0.0.0:0",
            "--twilio-account-sid",
            ACCOUNT,
            "--twilio-auth-token",
            "t",
            "--twilio-api-base-url",
            &uri,
            "--public-base-url",
            "https://hooks.example.com",
        ],
    )
    .await;
    worker.wait_ready().await;
    let response = reqwest::Client::new()
        .post(format!("{}/messages", worker.address))
        .json(&json!({"to": "+15558675310", "from": "+1", "body": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    // Reads too: they show phone numbers. The probes stay open.
    for path in [format!("/messages/{SENT_SID}"), "/stats".to_owned()] {
        let refused = reqwest::get(format!("{}{path}", worker.address))
            .await
            .unwrap();
        assert_eq!(refused.status(), 403, "{path}");
    }
    for probe in ["/healthz", "/readyz", "/metrics"] {
        let open = reqwest::get(format!("{}{probe}", worker.address))
            .await
            .unwrap();
        assert_eq!(open.status(), 200, "{probe}");
    }
}

#[tokio::test]
async fn a_subaccount_sends_with_its_own_token() {
    const SUB: &str = "AC11111111111111111111111111111111";
    let tokens = format!("{SUB}=sub-token|sub-old");
    let sender = start(&["--twilio-account-tokens", &tokens]).await;
    Mock::given(method("POST"))
        .and(path(format!("/2010-04-01/Accounts/{SUB}/Messages.json")))
        .and(basic_auth(SUB, "sub-token"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "sid": SENT_SID, "status": "queued", "account_sid": SUB,
            "from": "+15017122661", "to": "+15558675310"
        })))
        .expect(1)
        .mount(&sender.twilio)
        .await;
    let response = post(
        &sender,
        json!({"account_sid": SUB, "to": "+15558675310", "from": "+15017122661", "body": "hi"}),
        None,
    )
    .await;
    assert_eq!(response.status(), 201);
    let db = sender.database.connect().await;
    assert_eq!(
        message_row(&db, SENT_SID).await.account_sid.as_deref(),
        Some(SUB)
    );
}
