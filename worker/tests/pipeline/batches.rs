//! Batch messages (ingest's group commit): every callback of a delivery is
//! stored with the rest of the batch; a callback that cannot be stored is
//! split out, and the retry and dead-letter queues keep one callback per
//! message.

use crate::helpers::{
    accept_inserts_and_replay, at, dead_letters, event_rows, message_row, reject_inserts_of,
    the_exhausted_letter_of, wait_for_dead_letters, wait_for_event_rows, TestPipeline,
};
use queue_wire::batch::QueueMessage;
use testkit::{message_sid, status_params};
use twilio_protocol::form::FormParams;

fn without_status(params: FormParams) -> FormParams {
    FormParams::from_pairs(
        params
            .iter()
            .filter(|(k, _)| *k != "MessageStatus")
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
    )
}

#[tokio::test]
async fn batch_and_single_messages_are_stored_alike() {
    let pipeline = TestPipeline::start().await;
    let batch: Vec<_> = (1..=5)
        .map(|n| {
            (
                status_params(&message_sid(n), "delivered", None),
                at(n as i64),
            )
        })
        .collect();
    pipeline.broker.publish_batch(&batch).await;
    // Today's single-callback format, as a retry or an older ingest sends it.
    pipeline
        .broker
        .publish_callback(&status_params(&message_sid(6), "sent", None), at(6))
        .await;
    wait_for_event_rows(&pipeline.db, 6).await;
    pipeline.broker.wait_until_none_ready().await;
    for n in 1..=5 {
        assert_eq!(
            message_row(&pipeline.db, &message_sid(n)).await.status,
            "delivered"
        );
    }
    assert_eq!(
        message_row(&pipeline.db, &message_sid(6)).await.status,
        "sent"
    );
    // A redelivered batch adds nothing.
    pipeline.broker.publish_batch(&batch).await;
    pipeline.broker.wait_until_none_ready().await;
    assert_eq!(event_rows(&pipeline.db).await, 6);
}

#[tokio::test]
async fn a_poison_entry_is_dead_lettered_alone_and_its_neighbours_are_stored() {
    let pipeline = TestPipeline::start().await;
    let poison = without_status(status_params(&message_sid(2), "sent", None));
    pipeline
        .broker
        .publish_batch(&[
            (status_params(&message_sid(1), "sent", None), at(1)),
            (poison.clone(), at(2)),
            (status_params(&message_sid(3), "sent", None), at(3)),
        ])
        .await;
    wait_for_event_rows(&pipeline.db, 2).await;
    wait_for_dead_letters(&pipeline.broker, 1).await;
    pipeline.broker.wait_until_none_ready().await;
    let letters = dead_letters(&pipeline.broker).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(
        letters[0].message_sid.as_deref(),
        Some(message_sid(2).as_str())
    );
    assert!(
        letters[0].reason.contains("MessageStatus"),
        "{:?}",
        letters[0]
    );
    assert_eq!(letters[0].attempts, 1);
    // The letter holds that one callback, in the single-callback format.
    let taken = pipeline
        .broker
        .take_all(&pipeline.broker.topology.dead_letter_queue())
        .await;
    let QueueMessage::Single(envelope) =
        QueueMessage::decode(&taken[0].0, taken[0].1.clone()).unwrap()
    else {
        panic!("a dead letter holds one callback");
    };
    assert_eq!(envelope.body, poison.encode().into_bytes());
    assert_eq!(event_rows(&pipeline.db).await, 2);
}

#[tokio::test]
async fn a_failing_callback_is_split_out_retried_alone_and_replayed() {
    let pipeline = TestPipeline::start().await;
    let doomed = message_sid(666);
    reject_inserts_of(&pipeline.db, &doomed).await;
    pipeline
        .broker
        .publish_batch(&[
            (status_params(&message_sid(1), "sent", None), at(1)),
            (status_params(&doomed, "delivered", None), at(2)),
            (status_params(&message_sid(3), "sent", None), at(3)),
        ])
        .await;
    // Its neighbours are stored; it goes through every retry queue alone.
    wait_for_event_rows(&pipeline.db, 2).await;
    wait_for_dead_letters(&pipeline.broker, 1).await;
    the_exhausted_letter_of(&pipeline.broker, &doomed).await;

    accept_inserts_and_replay(&pipeline).await;
    wait_for_event_rows(&pipeline.db, 3).await;
    pipeline.broker.wait_until_none_ready().await;
    assert_eq!(message_row(&pipeline.db, &doomed).await.status, "delivered");
    assert_eq!(event_rows(&pipeline.db).await, 3);
}
