//! Accounts own their messages: a callback signed for another account's
//! message is kept in the history, marked, and never moves its state.

use crate::helpers::{at, message_row, wait_for_event_rows, TestPipeline};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use testkit::{message_sid, status_params};
use twilio_protocol::form::FormParams;
use worker::test_support::entity::message_status_event;

const MAIN: &str = "AC00000000000000000000000000000000";
const SUB: &str = "AC0000000000000000000000000000000f";

/// Twilio's parameters for `status` of `sid`, as account `account` sends them.
fn as_account(sid: &str, status: &str, account: &str) -> FormParams {
    let params = status_params(sid, status, None);
    FormParams::from_pairs(params.iter().map(|(name, value)| {
        let value = if name == "AccountSid" { account } else { value };
        (name.to_owned(), value.to_owned())
    }))
}

async fn foreign_events(pipeline: &TestPipeline, sid: &str) -> Vec<bool> {
    message_status_event::Entity::find()
        .filter(message_status_event::Column::MessageSid.eq(sid))
        .all(&pipeline.db)
        .await
        .unwrap()
        .into_iter()
        .map(|event| event.foreign_account)
        .collect()
}

#[tokio::test]
async fn another_accounts_callbacks_never_move_a_message() {
    let pipeline = TestPipeline::start().await;
    let sids: Vec<String> = (1..=10).map(message_sid).collect();
    for sid in &sids {
        pipeline
            .broker
            .publish_callback(&as_account(sid, "sent", MAIN), at(1))
            .await;
    }
    wait_for_event_rows(&pipeline.db, 10).await;
    // The same messages, signed as `read` (and one `undelivered`) by a subaccount.
    let forged: Vec<_> = sids
        .iter()
        .enumerate()
        .map(|(n, sid)| {
            let status = if n == 0 { "undelivered" } else { "read" };
            (as_account(sid, status, SUB), at(2))
        })
        .collect();
    pipeline.broker.publish_batch(&forged).await;
    wait_for_event_rows(&pipeline.db, 20).await;

    for sid in &sids {
        let message = message_row(&pipeline.db, sid).await;
        assert_eq!(message.status.as_str(), "sent", "{sid} moved");
        assert_eq!(message.account_sid.as_deref(), Some(MAIN));
        assert_eq!(message.final_at, None, "{sid} got a final time");
        assert!(!message.conflicting_outcomes);
        let mut marks = foreign_events(&pipeline, sid).await;
        marks.sort_unstable();
        assert_eq!(
            marks,
            [false, true],
            "{sid}: the forged event is kept, marked"
        );
    }
    // The owner's own later callback still moves it.
    pipeline
        .broker
        .publish_callback(&as_account(&sids[1], "delivered", MAIN), at(3))
        .await;
    wait_for_event_rows(&pipeline.db, 21).await;
    let moved = message_row(&pipeline.db, &sids[1]).await;
    assert_eq!(moved.status.as_str(), "delivered");

    let view: serde_json::Value =
        reqwest::get(format!("{}/messages/{}", pipeline.worker.address, sids[0]))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let events = view["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1]["status"], "undelivered");
    assert_eq!(events[1]["foreign_account"], true);
    assert_eq!(view["status"], "sent");

    let metrics = testkit::scrape_metrics(&pipeline.worker.address).await;
    let counted = testkit::metric_value(&metrics, "worker_foreign_account_events_total")
        .expect("the foreign-account counter is exported");
    assert!(counted >= 10.0, "counted {counted}");
}

/// A message new to the store belongs to the account of its earliest
/// callback, even when both accounts' callbacks come in one batch.
#[tokio::test]
async fn a_new_message_belongs_to_its_earliest_account() {
    let pipeline = TestPipeline::start().await;
    let sid = message_sid(77);
    pipeline
        .broker
        .publish_batch(&[
            (as_account(&sid, "delivered", SUB), at(5)),
            (as_account(&sid, "sent", MAIN), at(4)),
        ])
        .await;
    wait_for_event_rows(&pipeline.db, 2).await;
    let message = message_row(&pipeline.db, &sid).await;
    assert_eq!(message.account_sid.as_deref(), Some(MAIN));
    assert_eq!(message.status.as_str(), "sent");

    // A callback without an AccountSid belongs to nobody else: it applies.
    let anonymous: Vec<(String, String)> = status_params(&sid, "undelivered", Some(30003))
        .iter()
        .filter(|(name, _)| *name != "AccountSid")
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    pipeline
        .broker
        .publish_callback(&FormParams::from_pairs(anonymous), at(6))
        .await;
    wait_for_event_rows(&pipeline.db, 3).await;
    let message = message_row(&pipeline.db, &sid).await;
    assert_eq!(message.status.as_str(), "undelivered");
}
