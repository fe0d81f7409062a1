//! Ingest and worker together, in-process: signed HTTP callbacks in, rows out.

use crate::helpers::{
    event_statuses, message_row, start_ingest, wait_for_event_rows, TestPipeline,
};
use testkit::{message_sid, post_signed, status_params};

#[tokio::test]
async fn signed_callbacks_over_http_become_rows_and_the_read_api_shows_them() {
    let pipeline = TestPipeline::start().await;
    let ingest_address = start_ingest(&pipeline.broker).await;
    let client = reqwest::Client::new();

    let statuses = ["queued", "sent", "delivered"];
    let mut posted = 0;
    for n in 0..20u64 {
        for status in statuses {
            let response = post_signed(
                &client,
                &ingest_address,
                &status_params(&message_sid(n), status, None),
            )
            .await;
            assert_eq!(response.status(), 200);
            posted += 1;
        }
    }
    // A duplicate delivery from Twilio: accepted, but no new row.
    let duplicate = post_signed(
        &client,
        &ingest_address,
        &status_params(&message_sid(0), "sent", None),
    )
    .await;
    assert_eq!(duplicate.status(), 200);

    wait_for_event_rows(&pipeline.db, posted).await;
    for n in 0..20u64 {
        let row = message_row(&pipeline.db, &message_sid(n)).await;
        assert_eq!(row.status, "delivered");
        assert_eq!(row.event_count, 3);
    }
    let view = pipeline.message_view(&message_sid(7)).await;
    assert_eq!(event_statuses(&view), statuses);
}
