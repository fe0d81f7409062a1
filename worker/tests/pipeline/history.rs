//! The history's day partitions: a copy of a callback on the other side of
//! midnight is the same event, a day with no partition yet is created on
//! the spot, and retention drops whole days past its horizon (and nothing
//! inside it) while callbacks stream in.

use crate::helpers::{event_rows, message_row, wait_for_event_rows, TestPipeline};
use chrono::{DateTime, Duration as Age, DurationRound, TimeDelta, Utc};
use queue_wire::envelope::CallbackEnvelope;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, QueryFilter,
    Statement,
};
use testkit::{callback_envelope, message_sid, status_params};
use worker::config::HistoryConfig;
use worker::test_support::entity::message_status_event;
use worker::test_support::feed::ChangeFeed;
use worker::test_support::store::partitions;

/// The callbacks of one envelope, as the worker decodes them.
pub(crate) fn decoded(
    envelope: &CallbackEnvelope,
) -> Vec<worker::test_support::decode::DecodedCallback> {
    worker::test_support::decode::decode(&envelope.to_properties(), &envelope.body)
        .unwrap()
        .callbacks
}

/// A UTC midnight a few days back (its partitions are made on demand).
fn a_midnight() -> DateTime<Utc> {
    (Utc::now() - Age::days(3))
        .duration_trunc(TimeDelta::days(1))
        .unwrap()
}

async fn rows_of(db: &DatabaseConnection, sid: &str) -> i64 {
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT count(*) AS n FROM message_status_events WHERE message_sid = $1",
            [sid.into()],
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get("", "n").unwrap()
}

async fn partition_days(db: &DatabaseConnection) -> Vec<chrono::NaiveDate> {
    partitions::list(db)
        .await
        .unwrap()
        .into_iter()
        .map(|partition| partition.day)
        .collect()
}

/// Retention of `days` days, applied by calling `retention::run_once`.
fn retaining(days: u32) -> HistoryConfig {
    HistoryConfig {
        retention_days: Some(days),
        upkeep_interval: std::time::Duration::from_secs(3600),
    }
}

/// Detaches a day's partition as a retention run stopped before its drop leaves it.
async fn detach_by_hand(db: &DatabaseConnection, name: &str) {
    db.execute_unprepared(&format!(
        "ALTER TABLE message_status_events DETACH PARTITION {name}"
    ))
    .await
    .unwrap();
}

#[tokio::test]
async fn a_retry_just_after_midnight_is_the_same_event_in_either_order() {
    let pipeline = TestPipeline::start().await;
    let midnight = a_midnight();
    let before = midnight - Age::milliseconds(100);
    let after = midnight + Age::milliseconds(100);
    for (n, (first, second)) in [(before, after), (after, before)].into_iter().enumerate() {
        let sid = message_sid(n as u64);
        let params = status_params(&sid, "delivered", None);
        for received_at in [first, second] {
            let outcome = worker::test_support::store::persist_batch(
                &pipeline.db,
                &decoded(&callback_envelope(&params, received_at)),
                ChangeFeed::On,
            )
            .await
            .unwrap();
            let expected = usize::from(received_at == first);
            assert_eq!(outcome.inserted, expected, "copy received at {received_at}");
        }
        assert_eq!(rows_of(&pipeline.db, &sid).await, 1);
        assert_eq!(message_row(&pipeline.db, &sid).await.event_count, 1);
        // The copy kept is the first, in its own day: the second met it
        // across the partition boundary.
        let kept = message_status_event::Entity::find()
            .filter(message_status_event::Column::MessageSid.eq(sid.as_str()))
            .one(&pipeline.db)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(kept.received_at, first);
    }
}

#[tokio::test]
async fn copies_written_at_once_on_both_sides_of_midnight_are_one_event() {
    let pipeline = TestPipeline::start().await;
    let midnight = a_midnight();
    // Both days exist first, so neither write waits on creating one.
    partitions::ensure_days_of(&pipeline.db, &[midnight - Age::hours(1), midnight])
        .await
        .unwrap();
    // Every insert takes 200 ms inside its transaction, so the two writes
    // of a pair overlap whatever the scheduling: only the lock orders them.
    pipeline
        .db
        .execute_unprepared(
            "CREATE FUNCTION slow_insert() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN PERFORM pg_sleep(0.2); RETURN NEW; END $$; \
             CREATE TRIGGER slow_insert BEFORE INSERT ON message_status_events \
             FOR EACH ROW EXECUTE FUNCTION slow_insert();",
        )
        .await
        .unwrap();
    let messages = 10u64;
    for n in 0..messages {
        let params = status_params(&message_sid(n), "sent", None);
        let early = decoded(&callback_envelope(&params, midnight - Age::milliseconds(5)));
        let late = decoded(&callback_envelope(&params, midnight + Age::milliseconds(5)));
        let (db_a, db_b) = (pipeline.db.clone(), pipeline.db.clone());
        let (a, b) = tokio::join!(
            tokio::spawn(async move {
                worker::test_support::store::persist_batch(&db_a, &early, ChangeFeed::On).await
            }),
            tokio::spawn(async move {
                worker::test_support::store::persist_batch(&db_b, &late, ChangeFeed::On).await
            }),
        );
        let inserted = a.unwrap().unwrap().inserted + b.unwrap().unwrap().inserted;
        assert_eq!(inserted, 1, "message {n}: one of the two copies is stored");
    }
    assert_eq!(event_rows(&pipeline.db).await, messages);
}

#[tokio::test]
async fn copies_hours_apart_on_the_same_day_are_one_event_and_other_statuses_are_not() {
    let pipeline = TestPipeline::start().await;
    let midnight = a_midnight();
    let sid = message_sid(7);
    let sent = status_params(&sid, "sent", None);
    let delivered = status_params(&sid, "delivered", None);
    for (params, received_at) in [
        (&sent, midnight + Age::hours(2)),
        (&sent, midnight + Age::hours(21)),
        (&delivered, midnight + Age::hours(22)),
        (&delivered, midnight + Age::hours(23)),
    ] {
        worker::test_support::store::persist_batch(
            &pipeline.db,
            &decoded(&callback_envelope(params, received_at)),
            ChangeFeed::On,
        )
        .await
        .unwrap();
    }
    assert_eq!(rows_of(&pipeline.db, &sid).await, 2);
    let message = message_row(&pipeline.db, &sid).await;
    assert_eq!(
        (message.status.as_str(), message.event_count),
        ("delivered", 2)
    );
}

#[tokio::test]
async fn a_callback_from_a_day_with_no_partition_is_stored_through_the_worker() {
    let pipeline = TestPipeline::start().await;
    let long_ago: DateTime<Utc> = "2020-02-29T12:00:00Z".parse().unwrap();
    assert!(!partition_days(&pipeline.db)
        .await
        .contains(&long_ago.date_naive()));
    let envelope = callback_envelope(&status_params(&message_sid(1), "delivered", None), long_ago);
    pipeline
        .broker
        .publish(envelope.to_properties(), &envelope.body)
        .await;
    wait_for_event_rows(&pipeline.db, 1).await;
    assert!(partition_days(&pipeline.db)
        .await
        .contains(&long_ago.date_naive()));
    let body: serde_json::Value = reqwest::get(format!(
        "{}/messages/{}",
        pipeline.worker.address,
        message_sid(1)
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(body["events"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["events"][0]["received_at"], "2020-02-29T12:00:00Z");
}

#[tokio::test]
async fn retention_drops_whole_days_past_the_horizon_while_callbacks_stream_in() {
    let pipeline = TestPipeline::start().await;
    let now = Utc::now();
    // History on 40 days back to now, one message a day.
    let days_back: Vec<i64> = (0..=40).collect();
    for &back in &days_back {
        let envelope = callback_envelope(
            &status_params(&message_sid(1_000 + back as u64), "delivered", None),
            now - Age::days(back),
        );
        worker::test_support::store::persist_batch(
            &pipeline.db,
            &decoded(&envelope),
            ChangeFeed::On,
        )
        .await
        .unwrap();
    }
    let config = retaining(30);
    let first_kept = partitions::horizon(now, 30);

    // A dry run says what would go and drops nothing.
    let dry = worker::test_support::retention::run_once(&pipeline.db, &config, now, true)
        .await
        .unwrap();
    assert_eq!(dry.dropped.len(), 10, "{:?}", dry.dropped);
    assert_eq!(event_rows(&pipeline.db).await, days_back.len() as u64);

    // Callbacks stream in through the worker while retention runs.
    let streamed = 300u64;
    let publish = async {
        for n in 0..streamed {
            let envelope =
                callback_envelope(&status_params(&message_sid(n), "sent", None), Utc::now());
            pipeline
                .broker
                .publish(envelope.to_properties(), &envelope.body)
                .await;
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    };
    let (upkeep, ()) = tokio::join!(
        worker::test_support::retention::run_once(&pipeline.db, &config, now, false),
        publish
    );
    let upkeep = upkeep.unwrap();
    let dropped_days: Vec<_> = upkeep.dropped.iter().map(|p| p.day).collect();
    assert!(dropped_days.iter().all(|day| *day < first_kept));
    assert_eq!(dropped_days.len(), 10);

    let kept = days_back
        .iter()
        .filter(|&&back| (now - Age::days(back)).date_naive() >= first_kept)
        .count() as u64;
    wait_for_event_rows(&pipeline.db, kept + streamed).await;
    for &back in &days_back {
        let sid = message_sid(1_000 + back as u64);
        let inside = (now - Age::days(back)).date_naive() >= first_kept;
        assert_eq!(
            rows_of(&pipeline.db, &sid).await,
            i64::from(inside),
            "{back} days back"
        );
        // The message's current state is kept either way.
        assert_eq!(message_row(&pipeline.db, &sid).await.status, "delivered");
    }
    assert!(partition_days(&pipeline.db)
        .await
        .iter()
        .all(|day| *day >= first_kept));
    // A second run has nothing left to drop.
    let again = worker::test_support::retention::run_once(&pipeline.db, &config, now, false)
        .await
        .unwrap();
    assert!(again.dropped.is_empty());
}

#[tokio::test]
async fn the_command_lists_then_drops_the_days_past_the_retention() {
    let pipeline = TestPipeline::start().await;
    let old = Utc::now() - Age::days(10);
    let envelope = callback_envelope(&status_params(&message_sid(1), "sent", None), old);
    worker::test_support::store::persist_batch(&pipeline.db, &decoded(&envelope), ChangeFeed::On)
        .await
        .unwrap();
    let run = |args: &[&str], retention_days: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_worker"))
            .args(args)
            .env_clear()
            .env("DATABASE_URL", &pipeline.database.url)
            .env("WORKER_RETENTION_DAYS", retention_days)
            .env("LOG_FORMAT", "json")
            .output()
            .unwrap()
    };
    let lines = |output: &std::process::Output| -> Vec<serde_json::Value> {
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    };

    // Kept for ever by default: nothing to drop.
    let forever = run(&["retention"], "0");
    assert!(forever.status.success(), "{forever:?}");
    assert!(lines(&forever).is_empty());
    assert_eq!(event_rows(&pipeline.db).await, 1);

    let dry = run(&["retention", "--dry-run"], "7");
    assert!(dry.status.success(), "{dry:?}");
    let listed = lines(&dry);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["day"], old.date_naive().to_string());
    assert_eq!(event_rows(&pipeline.db).await, 1, "a dry run");

    let real = run(&["retention"], "7");
    assert!(real.status.success(), "{real:?}");
    assert_eq!(lines(&real), listed);
    assert_eq!(event_rows(&pipeline.db).await, 0);
    assert!(!partition_days(&pipeline.db)
        .await
        .contains(&old.date_naive()));
    assert_eq!(
        message_row(&pipeline.db, &message_sid(1)).await.status,
        "sent"
    );
}

#[tokio::test]
async fn a_day_left_detached_is_attached_again_for_a_write_and_dropped_by_retention() {
    let pipeline = TestPipeline::start().await;
    let now = Utc::now();
    let old = now - Age::days(20);
    let (one, two) = (message_sid(1), message_sid(2));
    for sid in [&one, &two] {
        let envelope = callback_envelope(&status_params(sid, "sent", None), old);
        worker::test_support::store::persist_batch(
            &pipeline.db,
            &decoded(&envelope),
            ChangeFeed::On,
        )
        .await
        .unwrap();
    }
    // A retention run stopped between its detach and its drop.
    let name = format!("message_status_events_{}", old.format("%Y%m%d"));
    detach_by_hand(&pipeline.db, &name).await;
    assert!(!partition_days(&pipeline.db)
        .await
        .contains(&old.date_naive()));

    // A write for that day attaches it again, rows and all.
    let late = callback_envelope(&status_params(&one, "delivered", None), old);
    let outcome =
        worker::test_support::store::persist_batch(&pipeline.db, &decoded(&late), ChangeFeed::On)
            .await
            .unwrap();
    assert_eq!(outcome.inserted, 1);
    assert_eq!(rows_of(&pipeline.db, &one).await, 2);
    assert_eq!(rows_of(&pipeline.db, &two).await, 1);

    // Detached again and left so, it is dropped by the next retention run.
    detach_by_hand(&pipeline.db, &name).await;
    let config = retaining(7);
    let upkeep = worker::test_support::retention::run_once(&pipeline.db, &config, now, false)
        .await
        .unwrap();
    assert_eq!(upkeep.dropped.len(), 1, "{:?}", upkeep.dropped);
    assert!(!upkeep.dropped[0].attached);
    let left = pipeline
        .db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            format!("SELECT to_regclass('{name}') IS NULL AS gone"),
        ))
        .await
        .unwrap()
        .unwrap();
    assert!(left.try_get::<bool>("", "gone").unwrap());
}
