//! `worker_final_outcomes_total` on `/metrics`: each message counted once,
//! for its first final status, under its owner account and its error code,
//! whatever comes after (read receipts, contradictions, redeliveries,
//! another account's callbacks).

use crate::helpers::{at, wait_for_event_rows, TestPipeline};
use std::collections::BTreeMap;
use std::time::Duration;
use testkit::{message_sid, scrape_metrics, status_params, wait_for};
use twilio_protocol::form::FormParams;

/// Accounts no other test sends as: the tests share the process's metrics,
/// so these series are this test's alone.
const ACCOUNT: &str = "AC0000000000000000000000000000c0de";
const OTHER_ACCOUNT: &str = "AC0000000000000000000000000000c0df";

/// Outcome series of one account: `(status, error_code)` to value.
type Outcomes = BTreeMap<(String, String), f64>;

/// Twilio's parameters for `status` of message `n`, as `account` sends them.
fn callback(n: u64, status: &str, error_code: Option<i32>, account: &str) -> FormParams {
    let params = status_params(&message_sid(n), status, error_code);
    FormParams::from_pairs(params.iter().map(|(name, value)| {
        let value = if name == "AccountSid" { account } else { value };
        (name.to_owned(), value.to_owned())
    }))
}

/// The `worker_final_outcomes_total` series of `account` in Prometheus
/// text, whatever order the labels come in.
fn outcomes_of(metrics: &str, account: &str) -> Outcomes {
    metrics
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("worker_final_outcomes_total{")?;
            let (labels, value) = rest.split_once("} ")?;
            let labels: BTreeMap<&str, &str> = labels
                .split("\",")
                .filter_map(|pair| {
                    let (name, value) = pair.split_once("=\"")?;
                    Some((name, value.trim_end_matches('"')))
                })
                .collect();
            (labels.get("account_sid") == Some(&account)).then(|| {
                let key = (labels["status"].to_owned(), labels["error_code"].to_owned());
                (key, value.trim().parse().unwrap())
            })
        })
        .collect()
}

fn expected(series: &[(&str, &str, f64)]) -> Outcomes {
    series
        .iter()
        .map(|&(status, code, value)| ((status.to_owned(), code.to_owned()), value))
        .collect()
}

/// Waits until the two accounts' series add up to `total`, and returns them.
async fn wait_for_outcomes(pipeline: &TestPipeline, total: f64) -> (Outcomes, Outcomes) {
    wait_for(
        &format!("{total} final outcomes on /metrics"),
        Duration::from_secs(30),
        || async {
            let metrics = scrape_metrics(&pipeline.worker.address).await;
            let (mine, other) = (
                outcomes_of(&metrics, ACCOUNT),
                outcomes_of(&metrics, OTHER_ACCOUNT),
            );
            let counted: f64 = mine.values().chain(other.values()).sum();
            (counted >= total).then_some((mine, other))
        },
    )
    .await
}

#[tokio::test]
async fn final_outcomes_are_counted_once_per_message_by_account_and_error_code() {
    let pipeline = TestPipeline::start().await;
    let lifecycles = [
        // Delivered.
        callback(1, "queued", None, ACCOUNT),
        callback(1, "sent", None, ACCOUNT),
        callback(1, "delivered", None, ACCOUNT),
        // Unreachable handsets: undelivered 30003, twice.
        callback(2, "sent", None, ACCOUNT),
        callback(2, "undelivered", Some(30003), ACCOUNT),
        callback(3, "undelivered", Some(30003), ACCOUNT),
        // Filtered by the carrier: failed 30007.
        callback(4, "queued", None, ACCOUNT),
        callback(4, "failed", Some(30007), ACCOUNT),
        // A code Twilio's table does not have.
        callback(5, "sent", None, ACCOUNT),
        callback(5, "undelivered", Some(99_999), ACCOUNT),
        // Not final yet.
        callback(6, "sent", None, ACCOUNT),
        // Another account's messages.
        callback(7, "failed", Some(30007), OTHER_ACCOUNT),
        callback(8, "sent", None, OTHER_ACCOUNT),
        callback(8, "delivered", None, OTHER_ACCOUNT),
    ];
    let batch: Vec<_> = lifecycles
        .into_iter()
        .zip(0..)
        .map(|(params, second)| (params, at(second)))
        .collect();
    pipeline.broker.publish_batch(&batch).await;
    wait_for_event_rows(&pipeline.db, batch.len() as u64).await;

    let (mine, other) = wait_for_outcomes(&pipeline, 7.0).await;
    assert_eq!(
        mine,
        expected(&[
            ("delivered", "", 1.0),
            ("undelivered", "30003", 2.0),
            ("failed", "30007", 1.0),
            ("undelivered", "other", 1.0),
        ])
    );
    assert_eq!(
        other,
        expected(&[("failed", "30007", 1.0), ("delivered", "", 1.0)])
    );

    // Later: a read receipt and a contradiction for a delivered message, a
    // redelivered undelivered, and the pending message delivered, with a
    // contradicting callback another account signed. Only the last counts,
    // once, under its owner.
    let later = [
        (callback(1, "read", None, ACCOUNT), at(100)),
        (callback(1, "undelivered", Some(30003), ACCOUNT), at(101)),
        (callback(2, "undelivered", Some(30003), ACCOUNT), at(102)),
        (callback(6, "delivered", None, ACCOUNT), at(103)),
        (callback(6, "failed", Some(30007), OTHER_ACCOUNT), at(104)),
    ];
    pipeline.broker.publish_batch(&later).await;
    // The redelivery adds no row.
    wait_for_event_rows(&pipeline.db, batch.len() as u64 + 4).await;

    let (mine, other) = wait_for_outcomes(&pipeline, 8.0).await;
    assert_eq!(
        mine,
        expected(&[
            ("delivered", "", 2.0),
            ("undelivered", "30003", 2.0),
            ("failed", "30007", 1.0),
            ("undelivered", "other", 1.0),
        ])
    );
    assert_eq!(
        other,
        expected(&[("failed", "30007", 1.0), ("delivered", "", 1.0)])
    );
}
