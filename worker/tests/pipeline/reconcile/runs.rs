//! Runs: after and before callbacks, dry, from the command line, side by
//! side, and past a failing lookup.

use super::rig::*;
use crate::helpers::message_row;
use chrono::Duration as Age;
use sea_orm::DatabaseConnection;
use serde_json::json;
use testkit::message_sid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

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
    let reconciler = rig.reconciler_tuned(&[], |config| config.max_per_run = 1);
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
