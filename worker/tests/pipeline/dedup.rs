//! At-least-once delivery in, exactly-once rows out.

use crate::helpers::{
    at, event_rows, message_row, wait_for_event_rows, wait_until_drained, RunningWorker,
    TestPipeline,
};
use queue_wire::envelope::CallbackEnvelope;
use testkit::{callback_envelope, message_sid, status_params};

#[tokio::test]
async fn each_callback_delivered_three_times_to_two_workers_is_one_row() {
    let pipeline = TestPipeline::start().await;
    let second_worker = RunningWorker::start(&pipeline.broker, &pipeline.database.url).await;
    second_worker.wait_ready().await;

    let statuses = ["queued", "sent", "delivered"];
    let mut envelopes = Vec::new();
    for n in 0..40u64 {
        for (i, status) in statuses.iter().enumerate() {
            envelopes.push(callback_envelope(
                &status_params(&message_sid(n), status, None),
                at(i as i64),
            ));
        }
    }
    // Three copies of each, interleaved so both workers see copies at once.
    for _round in 0..3 {
        for envelope in &envelopes {
            pipeline
                .broker
                .publish(envelope.to_properties(), &envelope.body)
                .await;
        }
    }
    wait_until_drained(&pipeline.broker).await;
    wait_for_event_rows(&pipeline.db, envelopes.len() as u64).await;
    for n in 0..40u64 {
        let row = message_row(&pipeline.db, &message_sid(n)).await;
        assert_eq!(row.event_count, 3);
        assert_eq!(row.status, "delivered");
    }
    second_worker.stop().await;
}

#[tokio::test]
async fn commit_without_ack_then_redelivery_is_still_one_row() {
    let pipeline = TestPipeline::start().await;
    let envelope = callback_envelope(&status_params(&message_sid(1), "delivered", None), at(1));
    let properties = envelope.to_properties();
    // A worker committed this callback and died before its ack...
    let decoded = worker::decode::decode(&properties, envelope.body.clone()).unwrap();
    worker::store::persist_batch(&pipeline.db, &decoded.callbacks)
        .await
        .unwrap();
    assert_eq!(event_rows(&pipeline.db).await, 1);
    // ...so the broker redelivers it.
    pipeline.broker.publish(properties, &envelope.body).await;
    wait_until_drained(&pipeline.broker).await;

    // Let the worker finish with it, then count: still one.
    let sentinel: CallbackEnvelope =
        callback_envelope(&status_params(&message_sid(2), "sent", None), at(2));
    pipeline
        .broker
        .publish(sentinel.to_properties(), &sentinel.body)
        .await;
    wait_for_event_rows(&pipeline.db, 2).await;
    assert_eq!(
        message_row(&pipeline.db, &message_sid(1)).await.event_count,
        1
    );
}
