//! Poison messages, transient database errors, database and broker outages.

use crate::helpers::{
    accept_inserts_and_replay, assert_nothing_retried_or_dead_lettered, at, dead_letters,
    message_row, reject_inserts_of, the_exhausted_letter_of, wait_for_dead_letters,
    wait_for_event_rows, RunningWorker, TestPipeline,
};
use lapin::BasicProperties;
use std::time::Duration;
use testkit::{message_sid, status_params, wait_for, TestBroker, TestDatabase, ToggleProxy};
use worker::test_support::dlq;

#[tokio::test]
async fn poison_messages_go_straight_to_the_dead_letter_queue_with_a_reason() {
    let pipeline = TestPipeline::start().await;
    // No metadata at all.
    pipeline
        .broker
        .publish(BasicProperties::default(), b"\xff not a callback")
        .await;
    // Metadata fine, but the callback has no MessageStatus.
    let mut params = status_params(&message_sid(1), "sent", None);
    params = twilio_protocol::form::FormParams::from_pairs(
        params
            .iter()
            .filter(|(k, _)| *k != "MessageStatus")
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    pipeline.broker.publish_callback(&params, at(1)).await;
    // And a good one, which must not be held up by them.
    pipeline
        .broker
        .publish_callback(&status_params(&message_sid(2), "sent", None), at(2))
        .await;

    wait_for_event_rows(&pipeline.db, 1).await;
    wait_for_dead_letters(&pipeline.broker, 2).await;
    let mut letters = dead_letters(&pipeline.broker).await;
    letters.sort_by_key(|l| l.message_sid.clone());
    assert_eq!(letters[0].message_sid, None);
    assert!(
        letters[0].reason.contains("undecodable"),
        "{:?}",
        letters[0]
    );
    assert_eq!(
        letters[1].message_sid.as_deref(),
        Some(message_sid(1).as_str())
    );
    assert!(
        letters[1].reason.contains("MessageStatus"),
        "{:?}",
        letters[1]
    );
    assert!(letters
        .iter()
        .all(|l| l.attempts == 1 && l.first_failure_at.is_some()));
    // Listing does not consume.
    assert_eq!(dead_letters(&pipeline.broker).await.len(), 2);
}

#[tokio::test]
async fn transient_failures_are_retried_then_dead_lettered_and_replay_stores_them() {
    let pipeline = TestPipeline::start().await;
    let doomed = message_sid(666);
    reject_inserts_of(&pipeline.db, &doomed).await;
    for n in 1..=3 {
        pipeline
            .broker
            .publish_callback(&status_params(&message_sid(n), "sent", None), at(n as i64))
            .await;
    }
    pipeline
        .broker
        .publish_callback(&status_params(&doomed, "delivered", None), at(9))
        .await;

    // The others are stored despite sharing a batch with it.
    wait_for_event_rows(&pipeline.db, 3).await;
    wait_for_dead_letters(&pipeline.broker, 1).await;
    let letter = the_exhausted_letter_of(&pipeline.broker, &doomed).await;
    assert!(
        letter.reason.contains("retries exhausted"),
        "{}",
        letter.reason
    );

    // Fix the cause, replay: it is stored and the dead-letter queue is empty.
    accept_inserts_and_replay(&pipeline).await;
    wait_for_event_rows(&pipeline.db, 4).await;
    assert_eq!(message_row(&pipeline.db, &doomed).await.status, "delivered");
    assert_eq!(
        pipeline
            .broker
            .ready_count(&pipeline.broker.topology.dead_letter_queue())
            .await,
        0
    );
}

#[tokio::test]
async fn purge_empties_the_dead_letter_queue() {
    let broker = TestBroker::new().await;
    broker
        .channel
        .basic_publish(
            "".into(),
            broker.topology.dead_letter_queue().into(),
            Default::default(),
            b"x",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    wait_for_dead_letters(&broker, 1).await;
    assert_eq!(
        dlq::purge(&testkit::amqp_url(), &broker.topology)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        broker
            .ready_count(&broker.topology.dead_letter_queue())
            .await,
        0
    );
}

#[tokio::test]
async fn database_outage_pauses_consumption_and_nothing_is_dead_lettered() {
    let broker = TestBroker::new().await;
    let database = TestDatabase::new().await;
    let proxy = ToggleProxy::start("127.0.0.1:5432").await;
    let proxied_url = format!(
        "postgres://postgres@127.0.0.1:{}/{}",
        proxy.port, database.name
    );
    let worker = RunningWorker::start(&broker, &proxied_url).await;
    worker.wait_ready().await;
    let db = database.connect().await; // direct, not through the proxy

    for n in 0..30u64 {
        broker
            .publish_callback(&status_params(&message_sid(n), "sent", None), at(n as i64))
            .await;
    }
    wait_for_event_rows(&db, 30).await;

    proxy.cut();
    for n in 30..60u64 {
        broker
            .publish_callback(&status_params(&message_sid(n), "sent", None), at(n as i64))
            .await;
    }
    wait_for(
        "the worker to report not ready",
        Duration::from_secs(30),
        || async { (worker.readyz().await == 503).then_some(()) },
    )
    .await;
    // Give it time to (wrongly) burn retries, then check it did not.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_nothing_retried_or_dead_lettered(&broker).await;
    assert_eq!(crate::helpers::event_rows(&db).await, 30);

    proxy.restore();
    wait_for_event_rows(&db, 60).await;
    worker.wait_ready().await;
    assert_eq!(
        broker
            .ready_count(&broker.topology.dead_letter_queue())
            .await,
        0
    );
    worker.stop().await;
}

#[tokio::test]
async fn broker_connection_loss_mid_stream_loses_and_duplicates_nothing() {
    let pipeline = TestPipeline::start().await;
    for n in 0..200u64 {
        pipeline
            .broker
            .publish_callback(
                &status_params(&message_sid(n), "delivered", None),
                at(n as i64),
            )
            .await;
        if n == 100 {
            testkit::close_broker_connection(&format!(
                "worker {}",
                pipeline.broker.topology.prefix()
            ));
        }
    }
    pipeline.broker.wait_until_none_ready().await;
    wait_for_event_rows(&pipeline.db, 200).await;
    pipeline.worker.wait_ready().await;
    for n in [0u64, 100, 199] {
        assert_eq!(
            message_row(&pipeline.db, &message_sid(n)).await.event_count,
            1
        );
    }
    assert_eq!(
        pipeline
            .broker
            .ready_count(&pipeline.broker.topology.dead_letter_queue())
            .await,
        0
    );
}
