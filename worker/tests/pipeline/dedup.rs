//! At-least-once delivery in, exactly-once rows out (across the upgrade to
//! the partitioned history too).

use crate::helpers::{
    at, event_rows, message_row, wait_for_event_rows, RunningWorker, TestPipeline,
};
use crate::history::decoded;
use chrono::{Duration as Age, Utc};
use queue_wire::envelope::CallbackEnvelope;
use sea_orm::{ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, Statement};
use testkit::{callback_envelope, message_sid, status_params};
use worker::test_support::entity::message_status_event;
use worker::test_support::feed::ChangeFeed;
use worker::test_support::store::partitions;

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
    pipeline.broker.wait_until_none_ready().await;
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
    let decoded = worker::test_support::decode::decode(&properties, &envelope.body).unwrap();
    worker::test_support::store::persist_batch(&pipeline.db, &decoded.callbacks, ChangeFeed::On)
        .await
        .unwrap();
    assert_eq!(event_rows(&pipeline.db).await, 1);
    // ...so the broker redelivers it.
    pipeline.broker.publish(properties, &envelope.body).await;
    pipeline.broker.wait_until_none_ready().await;

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

#[tokio::test]
async fn the_migration_keeps_every_row_and_its_duplicates_stay_duplicates() {
    use migrations::{Migrator, MigratorTrait};
    let database = testkit::TestDatabase::new().await;
    let db = database.connect().await;
    // The schema before the partitioned history, with rows as it held them.
    Migrator::up(&db, Some(3)).await.unwrap();
    let received_at = Utc::now() - Age::days(4);
    let envelopes: Vec<_> = (0..3u64)
        .map(|n| {
            callback_envelope(
                &status_params(&message_sid(n), "delivered", None),
                received_at,
            )
        })
        .collect();
    for (n, envelope) in envelopes.iter().enumerate() {
        let event = &decoded(envelope)[0];
        // Keys were the whole SHA-256 in hex; the first half is kept.
        let old_key = format!("{}{}", event.dedup_key, "0".repeat(32));
        let request_id = if n == 0 {
            "reconcile-20261201T000000.000Z".to_owned()
        } else {
            queue_wire::envelope::request_id_text(event.envelope.request_id)
        };
        db.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO message_status_events (dedup_key, message_sid, status, status_rank,
               raw_payload, content_type, request_id, received_at)
             VALUES ($1, $2, 'delivered', 4, '{}', 'application/x-www-form-urlencoded', $3, $4)",
            [
                old_key.into(),
                event.callback.message_sid.as_str().into(),
                request_id.into(),
                received_at.into(),
            ],
        ))
        .await
        .unwrap();
    }

    Migrator::up(&db, None).await.unwrap();
    assert_eq!(event_rows(&db).await, 3);
    let days = partitions::list(&db).await.unwrap();
    assert!(days
        .iter()
        .any(|partition| partition.day == received_at.date_naive()));
    let first = message_status_event::Entity::find()
        .filter(message_status_event::Column::MessageSid.eq(message_sid(0).as_str()))
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.request_id, None, "a request id that is not a UUID");
    // The same callbacks delivered again after the upgrade add nothing.
    for envelope in &envelopes {
        let outcome =
            worker::test_support::store::persist_batch(&db, &decoded(envelope), ChangeFeed::On)
                .await
                .unwrap();
        assert_eq!(outcome.inserted, 0);
    }
    assert_eq!(event_rows(&db).await, 3);
}
