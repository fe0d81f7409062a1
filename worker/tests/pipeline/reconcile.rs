//! Reconciliation against a fake Twilio Messages API (wiremock; the one
//! thing we mock) and the real pipeline: callbacks go through RabbitMQ and
//! the worker into a database of the test's own.

use crate::helpers::{message_row, wait_for_event_rows, TestPipeline};
use chrono::{Duration as Age, Utc};
use clap::Parser;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use testkit::message_sid;
use twilio_protocol::form::FormParams;
use twilio_protocol::status::MessageStatus;
use wiremock::matchers::{basic_auth, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};
use worker::config::{Command, ReconcileRunConfig, WorkerCli};
use worker::entity::message_status_event;
use worker::reconcile::{Action, Reconciler, RunSummary};
use worker::store::projection::SentMessage;

const MAIN: &str = "AC000000000000000000000000000000aa";
const SUB: &str = "AC000000000000000000000000000000bb";

struct Rig {
    pipeline: TestPipeline,
    twilio: MockServer,
}

/// A pipeline whose worker runs no periodic reconciliation (the tests run it).
async fn rig() -> Rig {
    let pipeline = TestPipeline::start_with(&["--reconcile-interval-secs", "0"]).await;
    Rig {
        pipeline,
        twilio: MockServer::start().await,
    }
}

impl Rig {
    fn db(&self) -> &DatabaseConnection {
        &self.pipeline.db
    }

    /// A reconciler on the fake API: main account `MAIN` (token `main-token`),
    /// subaccount `SUB` (token `sub-token`), and `extra` flags.
    fn reconciler(&self, extra: &[&str]) -> Reconciler {
        let uri = self.twilio.uri();
        let tokens = format!("{SUB}=sub-token|sub-old");
        let mut argv = vec![
            "worker",
            "reconcile",
            "--twilio-api-base-url",
            &uri,
            "--twilio-account-sid",
            MAIN,
            "--twilio-auth-token",
            "main-token",
            "--twilio-account-tokens",
            &tokens,
        ];
        argv.extend_from_slice(extra);
        let Some(Command::Reconcile(command)) = WorkerCli::parse_from(argv).command else {
            panic!("not the reconcile command");
        };
        let config = ReconcileRunConfig::new(command).unwrap();
        let twilio = worker::twilio_api::TwilioClient::new(config.twilio_api, None).unwrap();
        Reconciler::new(self.pipeline.db.clone(), twilio, config.reconcile)
    }

    /// Stores one callback of `sid` from `account`, received `age` ago.
    async fn callback(&self, sid: &str, status: &str, account: &str, age: Age) {
        let params = FormParams::from_pairs(
            [
                ("AccountSid", account),
                ("MessageSid", sid),
                ("MessageStatus", status),
                ("To", "+15558675310"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        let before = crate::helpers::event_rows(self.db()).await;
        self.pipeline
            .broker
            .publish_callback(&params, Utc::now() - age)
            .await;
        wait_for_event_rows(self.db(), before + 1).await;
    }

    /// The fake API answers one lookup of `sid` with `status`, and expects
    /// exactly one.
    async fn answers_once(&self, sid: &str, account: &str, status: &str, error_code: Option<i32>) {
        Mock::given(method("GET"))
            .and(path(message_path(account, sid)))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(resource(account, sid, status, error_code)),
            )
            .expect(1)
            .mount(&self.twilio)
            .await;
    }

    async fn events(&self, sid: &str) -> Vec<message_status_event::Model> {
        message_status_event::Entity::find()
            .filter(message_status_event::Column::MessageSid.eq(sid))
            .order_by_asc(message_status_event::Column::PersistedAt)
            .all(self.db())
            .await
            .unwrap()
    }
}

fn message_path(account: &str, sid: &str) -> String {
    format!("/2010-04-01/Accounts/{account}/Messages/{sid}.json")
}

/// When the fake API says its messages last changed: an hour ago, to the
/// second (RFC 2822, as Twilio writes dates).
fn updated_an_hour_ago() -> chrono::DateTime<Utc> {
    let at = Utc::now() - Age::hours(1);
    chrono::DateTime::from_timestamp(at.timestamp(), 0).unwrap()
}

fn resource(account: &str, sid: &str, status: &str, error_code: Option<i32>) -> serde_json::Value {
    json!({
        "sid": sid, "account_sid": account, "status": status, "error_code": error_code,
        "error_message": null, "from": "+15017122661", "to": "+15558675310",
        "date_updated": updated_an_hour_ago().to_rfc2822(), "num_segments": "1"
    })
}

const HOURS_13: Age = Age::hours(13);

#[tokio::test]
async fn a_sent_message_whose_receipt_never_came_gets_delivered_from_the_api() {
    let rig = rig().await;
    let (stuck, fresh, finished) = (message_sid(1), message_sid(2), message_sid(3));
    rig.callback(&stuck, "sent", MAIN, HOURS_13).await;
    // Sent an hour ago: the receipt may still come, not due (12 h).
    rig.callback(&fresh, "sent", MAIN, Age::hours(1)).await;
    // Final already.
    rig.callback(&finished, "delivered", MAIN, HOURS_13).await;
    let answer = resource(MAIN, &stuck, "delivered", None);
    Mock::given(method("GET"))
        .and(path(message_path(MAIN, &stuck)))
        .and(basic_auth(MAIN, "main-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(&answer))
        .expect(1)
        .mount(&rig.twilio)
        .await;

    let reconciler = rig.reconciler(&[]);
    let (summary, findings) = reconciler.run_once(false).await.unwrap();
    assert_eq!(
        summary,
        RunSummary {
            checked: 1,
            recorded: 1,
            ..RunSummary::default()
        },
        "{findings:?}"
    );
    let row = message_row(rig.db(), &stuck).await;
    assert_eq!(row.status, "delivered");
    assert_eq!(row.event_count, 2);
    assert!(row.final_at.is_some());
    assert_eq!(row.reconcile_checks, 1);
    let events = rig.events(&stuck).await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].source, "callback");
    assert_eq!(events[1].source, "reconciliation");
    assert_eq!(
        events[1].raw_payload, answer,
        "Twilio's answer is the raw payload"
    );
    // The event's time is Twilio's date_updated, so time to final is Twilio's.
    let updated = chrono::DateTime::parse_from_rfc2822(answer["date_updated"].as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc);
    assert_eq!(events[1].received_at, updated);
    assert_eq!(message_row(rig.db(), &stuck).await.final_at, Some(updated));
    assert_eq!(message_row(rig.db(), &fresh).await.status, "sent");

    // Final now: never asked again (the mock expects exactly one lookup).
    let (again, _) = reconciler.run_once(false).await.unwrap();
    assert_eq!(again.checked, 0);
}

#[tokio::test]
async fn a_queued_message_we_sent_and_never_heard_of_gets_failed_with_30007() {
    let rig = rig().await;
    let sid = message_sid(7);
    // What POST /messages records: no event, only the row.
    worker::store::record_sent_message(
        rig.db(),
        SentMessage {
            message_sid: &sid,
            status: MessageStatus::Queued,
            account_sid: Some(MAIN.to_owned()),
            from_address: Some("+15017122661".into()),
            to_address: Some("+15558675310".into()),
            seen_at: Utc::now() - Age::hours(5),
        },
    )
    .await
    .unwrap();
    rig.answers_once(&sid, MAIN, "failed", Some(30007)).await;
    let (summary, _) = rig.reconciler(&[]).run_once(false).await.unwrap();
    assert_eq!(summary.recorded, 1);
    let row = message_row(rig.db(), &sid).await;
    assert_eq!(row.status, "failed");
    assert_eq!(row.error_code, Some(30007));
    assert_eq!(row.event_count, 1);
}

/// Answers 429 with `Retry-After` first, then the message, noting when each
/// request came.
struct RateLimitedOnce {
    seen: Arc<Mutex<Vec<Instant>>>,
    answer: serde_json::Value,
}

impl Respond for RateLimitedOnce {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let mut seen = self.seen.lock().unwrap();
        seen.push(Instant::now());
        if seen.len() == 1 {
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "2")
                .set_body_json(
                    json!({"status": 429, "code": 20429, "message": "Too Many Requests"}),
                )
        } else {
            ResponseTemplate::new(200).set_body_json(&self.answer)
        }
    }
}

#[tokio::test]
async fn a_429_with_retry_after_holds_the_account_back_that_long() {
    let rig = rig().await;
    let sid = message_sid(9);
    rig.callback(&sid, "sent", MAIN, HOURS_13).await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    Mock::given(method("GET"))
        .and(path(message_path(MAIN, &sid)))
        .respond_with(RateLimitedOnce {
            seen: seen.clone(),
            answer: resource(MAIN, &sid, "undelivered", Some(30003)),
        })
        .expect(2)
        .mount(&rig.twilio)
        .await;
    let (summary, _) = rig.reconciler(&[]).run_once(false).await.unwrap();
    assert_eq!(summary.recorded, 1);
    let seen = seen.lock().unwrap().clone();
    // A lower bound only: waiting at least Retry-After is the behaviour.
    assert!(
        seen[1] - seen[0] >= std::time::Duration::from_secs(2),
        "asked again after {:?}",
        seen[1] - seen[0]
    );
    assert_eq!(message_row(rig.db(), &sid).await.error_code, Some(30003));
}

#[tokio::test]
async fn a_message_twilio_does_not_know_is_recorded_once_and_never_asked_again() {
    let rig = rig().await;
    let sid = message_sid(11);
    rig.callback(&sid, "queued", MAIN, Age::hours(5)).await;
    Mock::given(method("GET"))
        .and(path(message_path(MAIN, &sid)))
        .respond_with(ResponseTemplate::new(404).set_body_json(
            json!({"status": 404, "code": 20404, "message": "The requested resource was not found"}),
        ))
        .expect(1)
        .mount(&rig.twilio)
        .await;
    // Due again at once after a lookup, were it not for the 404.
    let reconciler = rig.reconciler(&["--reconcile-after", "queued=1s"]);
    let (first, findings) = reconciler.run_once(false).await.unwrap();
    assert_eq!(first.not_found, 1);
    assert_eq!(findings[0].action, Action::NotFound);
    let row = message_row(rig.db(), &sid).await;
    assert!(row.twilio_not_found_at.is_some());
    assert_eq!(row.status, "queued", "a 404 changes no status");
    assert_eq!(row.event_count, 1);
    let (second, _) = reconciler.run_once(false).await.unwrap();
    assert_eq!(second.checked, 0);
}

#[tokio::test]
async fn each_account_is_asked_with_its_own_credentials() {
    let rig = rig().await;
    let (of_sub, of_other) = (message_sid(21), message_sid(22));
    let other = "AC000000000000000000000000000000cc";
    rig.callback(&of_sub, "sent", SUB, HOURS_13).await;
    rig.callback(&of_other, "sent", other, HOURS_13).await;
    // The subaccount with its own (first) token; an unlisted account through
    // the main account's credentials, at its own URL.
    Mock::given(method("GET"))
        .and(path(message_path(SUB, &of_sub)))
        .and(basic_auth(SUB, "sub-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(resource(
            SUB,
            &of_sub,
            "delivered",
            None,
        )))
        .expect(1)
        .mount(&rig.twilio)
        .await;
    Mock::given(method("GET"))
        .and(path(message_path(other, &of_other)))
        .and(basic_auth(MAIN, "main-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(resource(
            other,
            &of_other,
            "delivered",
            None,
        )))
        .expect(1)
        .mount(&rig.twilio)
        .await;
    let (summary, findings) = rig.reconciler(&[]).run_once(false).await.unwrap();
    assert_eq!(summary.recorded, 2, "{findings:?}");
    assert_eq!(message_row(rig.db(), &of_sub).await.status, "delivered");
    assert_eq!(message_row(rig.db(), &of_other).await.status, "delivered");
}

#[tokio::test]
async fn callbacks_after_reconciliation_are_deduplicated_or_ordered() {
    let rig = rig().await;
    let sid = message_sid(31);
    rig.callback(&sid, "queued", MAIN, Age::hours(5)).await;
    Mock::given(method("GET"))
        .and(path(message_path(MAIN, &sid)))
        .respond_with(ResponseTemplate::new(200).set_body_json(resource(MAIN, &sid, "sent", None)))
        .mount(&rig.twilio)
        .await;
    let reconciler = rig.reconciler(&["--reconcile-after", "queued=1s,sent=1s"]);
    let (first, _) = reconciler.run_once(false).await.unwrap();
    assert_eq!(first.recorded, 1);
    // Asked again: Twilio says what we have now, so nothing is recorded.
    execute_backdate(rig.db(), &sid).await;
    let (second, findings) = reconciler.run_once(false).await.unwrap();
    assert_eq!(second.unchanged, 1, "{findings:?}");
    assert_eq!(rig.events(&sid).await.len(), 2);

    // The callbacks Twilio did send arrive late, out of order.
    rig.callback(&sid, "delivered", MAIN, Age::zero()).await;
    rig.callback(&sid, "sent", MAIN, Age::hours(4)).await;
    let row = message_row(rig.db(), &sid).await;
    assert_eq!(row.status, "delivered", "never moves backwards");
    assert!(!row.conflicting_outcomes);
    let sources: Vec<String> = rig
        .events(&sid)
        .await
        .into_iter()
        .map(|e| e.source)
        .collect();
    assert_eq!(
        sources,
        ["callback", "reconciliation", "callback", "callback"]
    );
}

/// Makes the message look silent for long enough to be due again.
async fn execute_backdate(db: &DatabaseConnection, sid: &str) {
    crate::helpers::execute(
        db,
        &format!(
            "UPDATE messages SET last_seen_at = last_seen_at - interval '1 hour', \
             reconciled_at = reconciled_at - interval '1 hour' WHERE message_sid = '{sid}'"
        ),
    )
    .await;
}

#[tokio::test]
async fn a_dry_run_asks_but_writes_nothing() {
    let rig = rig().await;
    let sid = message_sid(41);
    rig.callback(&sid, "sent", MAIN, HOURS_13).await;
    rig.answers_once(&sid, MAIN, "delivered", None).await;
    let (summary, findings) = rig.reconciler(&[]).run_once(true).await.unwrap();
    assert_eq!(summary.recorded, 1);
    assert_eq!(findings[0].twilio_status.as_deref(), Some("delivered"));
    let row = message_row(rig.db(), &sid).await;
    assert_eq!(
        (row.status.as_str(), row.event_count, row.reconcile_checks),
        ("sent", 1, 0)
    );
}

#[tokio::test]
async fn the_command_prints_a_line_per_message_and_refuses_to_run_without_credentials() {
    let rig = rig().await;
    let sid = message_sid(51);
    rig.callback(&sid, "sent", MAIN, HOURS_13).await;
    rig.answers_once(&sid, MAIN, "delivered", None).await;
    let run = |with_credentials: bool| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_worker"));
        command
            .args(["reconcile", "--dry-run"])
            .env_clear()
            .env("DATABASE_URL", &rig.pipeline.database.url)
            .env("TWILIO_API_BASE_URL", rig.twilio.uri())
            .env("LOG_FORMAT", "json");
        if with_credentials {
            command
                .env("TWILIO_ACCOUNT_SID", MAIN)
                .env("TWILIO_AUTH_TOKEN", "main-token");
        }
        command.output().unwrap()
    };
    let refused = run(false);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("credentials"));

    let output = run(true);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    assert_eq!(lines[0]["message_sid"], sid.as_str());
    assert_eq!(lines[0]["stored_status"], "sent");
    assert_eq!(lines[0]["twilio_status"], "delivered");
    assert_eq!(lines[0]["action"], "recorded");
    assert_eq!(
        message_row(rig.db(), &sid).await.status,
        "sent",
        "a dry run"
    );
}

#[tokio::test]
async fn workers_side_by_side_share_the_due_messages() {
    let rig = rig().await;
    let sids: Vec<String> = (61..69).map(message_sid).collect();
    for sid in &sids {
        rig.callback(sid, "sent", MAIN, HOURS_13).await;
        Mock::given(method("GET"))
            .and(path(message_path(MAIN, sid)))
            .respond_with(ResponseTemplate::new(200).set_body_json(resource(
                MAIN,
                sid,
                "delivered",
                None,
            )))
            .expect(1)
            .mount(&rig.twilio)
            .await;
    }
    // Two workers' runs at once: each message is asked about once.
    let (first, second) = (rig.reconciler(&[]), rig.reconciler(&[]));
    let (a, b) = tokio::join!(first.run_once(false), second.run_once(false));
    let (a, b) = (a.unwrap().0, b.unwrap().0);
    assert_eq!(a.checked + b.checked, sids.len(), "{a:?} {b:?}");
    assert_eq!(a.recorded + b.recorded, sids.len());
}

#[tokio::test]
async fn a_failing_lookup_does_not_hold_up_the_others() {
    let rig = rig().await;
    let (failing, next) = (message_sid(71), message_sid(72));
    // The failing one is older, so it comes first.
    rig.callback(&failing, "sent", MAIN, Age::hours(14)).await;
    rig.callback(&next, "sent", MAIN, HOURS_13).await;
    Mock::given(method("GET"))
        .and(path(message_path(MAIN, &failing)))
        .respond_with(ResponseTemplate::new(500).set_body_json(
            json!({"status": 500, "code": 20500, "message": "Internal Server Error"}),
        ))
        .expect(1)
        .mount(&rig.twilio)
        .await;
    rig.answers_once(&next, MAIN, "delivered", None).await;
    let reconciler = rig.reconciler(&["--reconcile-max-per-run", "1"]);
    let (first, findings) = reconciler.run_once(false).await.unwrap();
    assert_eq!((first.checked, first.failed), (1, 1), "{findings:?}");
    assert_eq!(findings[0].message_sid, failing);
    let (second, findings) = reconciler.run_once(false).await.unwrap();
    assert_eq!((second.checked, second.recorded), (1, 1), "{findings:?}");
    assert_eq!(findings[0].message_sid, next);
    let row = message_row(rig.db(), &failing).await;
    assert_eq!(row.reconcile_checks, 0, "a failed lookup is not an answer");
    assert!(
        row.reconciled_at.is_some(),
        "but it waits before the next attempt"
    );
}
