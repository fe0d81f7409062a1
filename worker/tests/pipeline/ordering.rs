//! Out-of-order arrival: the current status is the same whatever the order.

use crate::helpers::{at, event_statuses, message_row, wait_for_event_rows, TestPipeline};
use testkit::{message_sid, status_params};

fn permutations(items: &[&'static str]) -> Vec<Vec<&'static str>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut all = Vec::new();
    for i in 0..items.len() {
        let mut rest = items.to_vec();
        let first = rest.remove(i);
        for mut tail in permutations(&rest) {
            tail.insert(0, first);
            all.push(tail);
        }
    }
    all
}

#[tokio::test]
async fn every_arrival_order_gives_the_same_current_status_and_full_history() {
    every_arrival_order_converges(TestPipeline::start().await).await;
}

/// Many small transactions in flight at once, so events of one message are
/// stored by different consumers concurrently and their upserts of the same
/// `messages` row race each other.
#[tokio::test]
async fn concurrent_consumers_storing_one_message_still_converge() {
    let pipeline = TestPipeline::start_tuned(&["--concurrency", "4"], |config| {
        config.max_batch = 2;
        config.prefetch = 4;
    })
    .await;
    every_arrival_order_converges(pipeline).await;
}

async fn every_arrival_order_converges(pipeline: TestPipeline) {
    let lifecycles: [(&[&str], &str); 4] = [
        (&["queued", "sent", "delivered", "read"], "read"),
        (&["queued", "failed"], "failed"),
        (&["sent", "undelivered"], "undelivered"),
        (
            &["accepted", "queued", "sending", "sent", "delivered"],
            "delivered",
        ),
    ];
    let mut cases = Vec::new();
    let mut sid_number = 0;
    let mut second = 0;
    for (lifecycle, expected) in lifecycles {
        for order in permutations(lifecycle) {
            sid_number += 1;
            let sid = message_sid(sid_number);
            for status in &order {
                second += 1;
                let error_code = (*status == "undelivered" || *status == "failed").then_some(30003);
                pipeline
                    .broker
                    .publish_callback(&status_params(&sid, status, error_code), at(second))
                    .await;
            }
            cases.push((sid, order, expected));
        }
    }
    let total: usize = cases.iter().map(|(_, order, _)| order.len()).sum();
    assert_eq!(cases.len(), 24 + 2 + 2 + 120);
    wait_for_event_rows(&pipeline.db, total as u64).await;

    for (sid, order, expected) in &cases {
        let row = message_row(&pipeline.db, sid).await;
        assert_eq!(&row.status, expected, "{sid} arrived as {order:?}");
        assert_eq!(row.event_count as usize, order.len());
        let expected_error = (*expected == "failed" || *expected == "undelivered").then_some(30003);
        assert_eq!(row.error_code, expected_error, "{sid}");
        assert!(!row.conflicting_outcomes);
    }
    // The history comes back in the order received.
    let (sid, order, _) = &cases[5];
    let view = pipeline.message_view(sid).await;
    assert_eq!(&event_statuses(&view), order);
}

#[tokio::test]
async fn contradictory_receipts_are_both_kept_and_flagged() {
    let pipeline = TestPipeline::start().await;
    let sid = message_sid(1);
    pipeline
        .broker
        .publish_callback(&status_params(&sid, "undelivered", Some(30005)), at(2))
        .await;
    pipeline
        .broker
        .publish_callback(&status_params(&sid, "delivered", None), at(1))
        .await;
    wait_for_event_rows(&pipeline.db, 2).await;
    let row = message_row(&pipeline.db, &sid).await;
    assert_eq!(row.status, "delivered");
    assert_eq!(row.error_code, None);
    assert!(row.conflicting_outcomes);
}
