//! A database that answers but refuses writes is an outage, not a bad
//! callback: consumption pauses, nothing is retried or dead-lettered, and
//! everything is stored once writes work again.

use crate::helpers::{
    assert_nothing_retried_or_dead_lettered, at, event_rows, execute, message_row,
    wait_for_event_rows, TestPipeline,
};
use sea_orm::{ConnectionTrait, Database};
use std::time::Duration;
use testkit::{message_sid, status_params, wait_for, TestBroker};

async fn admin() -> sea_orm::DatabaseConnection {
    Database::connect(format!("{}/postgres", testkit::postgres_server_url()))
        .await
        .unwrap()
}

/// Makes `database` read-only as a failed-over standby would be: new
/// sessions default to read-only, existing ones (the worker's pool) are cut.
async fn set_read_only(database: &str, read_only: bool) {
    let admin = admin().await;
    let value = if read_only { "on" } else { "off" };
    admin
        .execute_unprepared(&format!(
            "ALTER DATABASE {database} SET default_transaction_read_only = {value}"
        ))
        .await
        .unwrap();
    admin
        .execute_unprepared(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{database}' AND pid <> pg_backend_pid()"
        ))
        .await
        .unwrap();
    admin.close().await.unwrap();
}

async fn publish_range(broker: &TestBroker, range: std::ops::Range<u64>, status: &str) {
    for n in range {
        broker
            .publish_callback(&status_params(&message_sid(n), status, None), at(n as i64))
            .await;
    }
}

async fn wait_not_ready(pipeline: &TestPipeline) {
    wait_for(
        "the worker to report not ready",
        Duration::from_secs(30),
        || async { (pipeline.worker.readyz().await == 503).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn a_read_only_database_pauses_consumption_and_dead_letters_nothing() {
    // Retry delays far longer than the test: a callback sent to retry would
    // never be stored in time, so a full count proves none was.
    let pipeline = TestPipeline::start_with(&["--retry-delays-ms", "600000"]).await;
    publish_range(&pipeline.broker, 0..20, "sent").await;
    wait_for_event_rows(&pipeline.db, 20).await;

    set_read_only(&pipeline.database.name, true).await;
    publish_range(&pipeline.broker, 20..80, "delivered").await;
    wait_not_ready(&pipeline).await;
    // Long enough for several held retries of the batch.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_nothing_retried_or_dead_lettered(&pipeline.broker).await;

    set_read_only(&pipeline.database.name, false).await;
    let db = pipeline.database.connect().await;
    wait_for_event_rows(&db, 80).await;
    pipeline.worker.wait_ready().await;
    pipeline.broker.wait_until_none_ready().await;
    assert_nothing_retried_or_dead_lettered(&pipeline.broker).await;
    for n in [0u64, 20, 79] {
        assert_eq!(message_row(&db, &message_sid(n)).await.event_count, 1);
    }
}

#[tokio::test]
async fn a_full_disk_held_past_the_hold_limit_is_recycled_and_stored_once() {
    let pipeline = TestPipeline::start_tuned(&["--retry-delays-ms", "600000"], |config| {
        config.hold_limit = Duration::from_secs(1);
    })
    .await;
    // Every insert fails as a full disk would (SQLSTATE 53100).
    execute(
        &pipeline.db,
        "CREATE FUNCTION disk_full() RETURNS trigger AS $$ BEGIN \
           RAISE EXCEPTION 'could not extend file: No space left on device' \
             USING ERRCODE = '53100'; \
         END $$ LANGUAGE plpgsql; \
         CREATE TRIGGER disk_full BEFORE INSERT ON message_status_events \
           FOR EACH ROW EXECUTE FUNCTION disk_full();",
    )
    .await;
    publish_range(&pipeline.broker, 0..50, "delivered").await;
    wait_not_ready(&pipeline).await;
    // Several hold limits: the held deliveries are re-enqueued more than
    // once (no other test holds past a hold limit, so the process-wide
    // counter is this test's).
    wait_for(
        "the held deliveries to be re-enqueued twice over",
        Duration::from_secs(30),
        || async {
            let metrics = testkit::scrape_metrics(&pipeline.worker.address).await;
            let recycled = testkit::metric_value(&metrics, "worker_deliveries_recycled_total");
            (recycled >= Some(100.0)).then_some(())
        },
    )
    .await;
    assert_eq!(event_rows(&pipeline.db).await, 0);
    assert_nothing_retried_or_dead_lettered(&pipeline.broker).await;

    execute(
        &pipeline.db,
        "DROP TRIGGER disk_full ON message_status_events",
    )
    .await;
    wait_for_event_rows(&pipeline.db, 50).await;
    pipeline.worker.wait_ready().await;
    pipeline.broker.wait_until_none_ready().await;
    assert_nothing_retried_or_dead_lettered(&pipeline.broker).await;
    for n in 0..50u64 {
        assert_eq!(
            message_row(&pipeline.db, &message_sid(n)).await.event_count,
            1
        );
    }
}

#[tokio::test]
async fn serialization_failures_are_retried_in_place() {
    let pipeline = TestPipeline::start_with(&["--retry-delays-ms", "600000"]).await;
    // The first three inserts fail as a serialization failure would; the
    // sequence is not transactional, so it counts across the rollbacks.
    execute(
        &pipeline.db,
        "CREATE SEQUENCE conflicts; \
         CREATE FUNCTION conflict() RETURNS trigger AS $$ BEGIN \
           IF nextval('conflicts') <= 3 THEN \
             RAISE EXCEPTION 'could not serialize access' USING ERRCODE = '40001'; \
           END IF; RETURN NEW; \
         END $$ LANGUAGE plpgsql; \
         CREATE TRIGGER conflict BEFORE INSERT ON message_status_events \
           FOR EACH ROW EXECUTE FUNCTION conflict();",
    )
    .await;
    publish_range(&pipeline.broker, 0..5, "sent").await;
    wait_for_event_rows(&pipeline.db, 5).await;
    assert_nothing_retried_or_dead_lettered(&pipeline.broker).await;
}

#[tokio::test]
async fn a_dead_consumer_task_stops_the_worker_with_an_error() {
    let pipeline = TestPipeline::start().await;
    pipeline.worker.shutdown.kill_consumer();
    let ended = tokio::time::timeout(Duration::from_secs(30), pipeline.worker.stopped)
        .await
        .expect("the worker must stop when its consumer dies")
        .unwrap();
    assert!(ended.is_err(), "{ended:?}");
}

/// An upgrade's schema change under way (a column the store statement
/// writes renamed for a while) is a deployment fault, not a fault of the
/// callbacks: they are held, `/readyz` says why, and all are stored once
/// the schema fits again. Nothing is retried or dead-lettered.
#[tokio::test]
async fn a_schema_that_does_not_fit_holds_and_dead_letters_nothing() {
    let pipeline = TestPipeline::start_with(&["--retry-delays-ms", "600000"]).await;
    publish_range(&pipeline.broker, 0..10, "sent").await;
    wait_for_event_rows(&pipeline.db, 10).await;

    execute(
        &pipeline.db,
        "ALTER TABLE messages RENAME COLUMN to_address TO to_address_renamed",
    )
    .await;
    publish_range(&pipeline.broker, 10..60, "delivered").await;
    let holding = wait_for(
        "the worker to say it holds for the schema",
        Duration::from_secs(30),
        || async {
            let response = reqwest::get(format!("{}/readyz", pipeline.worker.address))
                .await
                .ok()?;
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.ok()?;
            (status == 503 && body["holding"] == "schema_mismatch").then_some(body)
        },
    )
    .await;
    assert_eq!(holding["database"], true, "{holding}");
    // Long enough for several held retries of the batch.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(event_rows(&pipeline.db).await, 10);
    assert_nothing_retried_or_dead_lettered(&pipeline.broker).await;

    execute(
        &pipeline.db,
        "ALTER TABLE messages RENAME COLUMN to_address_renamed TO to_address",
    )
    .await;
    wait_for_event_rows(&pipeline.db, 60).await;
    pipeline.worker.wait_ready().await;
    pipeline.broker.wait_until_none_ready().await;
    assert_nothing_retried_or_dead_lettered(&pipeline.broker).await;
    for n in [10u64, 35, 59] {
        let message = message_row(&pipeline.db, &message_sid(n)).await;
        assert_eq!(message.event_count, 1);
        assert_eq!(message.to_address.as_deref(), Some("+15558675310"));
    }
}
