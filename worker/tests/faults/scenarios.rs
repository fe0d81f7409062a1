//! Processes killed or stopped under load, then an exact accounting.

use crate::rig::*;
use std::time::Duration;
use testkit::wait_for;

#[tokio::test]
async fn worker_killed_mid_batch_and_restarted() {
    let rig = Rig::new().await;
    let ingest = rig.ingest().await;
    let worker = rig.worker().await;
    let traffic = Traffic::a_third_in(&ingest).await;
    worker.kill();
    let _restarted = rig.worker().await;
    let (load, all) = traffic.finished().await;
    rig.assert_exact(&load, &all, "worker SIGKILL mid-batch")
        .await;
}

#[tokio::test]
async fn two_workers_one_killed() {
    let rig = Rig::new().await;
    let ingest = rig.ingest().await;
    let survivor = rig.worker().await;
    let victim = rig.worker().await;
    let traffic = Traffic::a_third_in(&ingest).await;
    victim.kill();
    let (load, all) = traffic.finished().await;
    rig.assert_exact(&load, &all, "two workers, one SIGKILLed")
        .await;
    drop(survivor);
}

#[tokio::test]
async fn ingest_killed_while_spooling_and_restarted() {
    let rig = Rig::new().await;
    let uri: lapin::uri::AMQPUri = testkit::amqp_url().parse().unwrap();
    let proxy =
        testkit::ToggleProxy::start(&format!("{}:{}", uri.authority.host, uri.authority.port))
            .await;
    let via_proxy = format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port);
    let ingest = rig.ingest_via(&via_proxy).await;
    let _worker = rig.worker().await;
    let traffic = Traffic::start(&ingest, 16, Some(300), |total| total / 4).await;
    proxy.cut();
    wait_for(
        "callbacks in the spool",
        Duration::from_secs(30),
        || async { (metric(&ingest, "ingest_spool_callbacks").await? >= 100.0).then_some(()) },
    )
    .await;
    // Kill ingest with a full spool and no chance to drain it.
    ingest.kill();
    proxy.restore();
    // The same spool directory, a new process (on a new port: the rest of
    // the traffic meets a closed port and counts as refused).
    let _restarted = rig.ingest_via(&via_proxy).await;
    let (load, all) = traffic.finished().await;
    assert!(!load.accepted.is_empty());
    rig.assert_exact(&load, &all, "ingest SIGKILLed while spooling, restarted")
        .await;
}

#[tokio::test]
async fn ingest_stopped_under_load() {
    let rig = Rig::new().await;
    let ingest = rig.ingest().await;
    let _worker = rig.worker().await;
    let traffic = Traffic::a_third_in(&ingest).await;
    assert_eq!(ingest.terminate(), Some(0), "ingest exits 0 on SIGTERM");
    let (load, all) = traffic.finished().await;
    assert!(
        !load.refused.is_empty(),
        "requests after the stop must fail"
    );
    rig.assert_exact(&load, &all, "ingest SIGTERM under load")
        .await;
}

/// The change feed through two worker SIGKILLs under load, with duplicates
/// and out-of-order arrival: every message's changes arrive, in sequence
/// order, never backwards, copies only of the same change, and the last one
/// is the status Postgres holds.
#[tokio::test]
async fn change_feed_through_two_worker_kills() {
    let rig = Rig::new().await;
    let mut listener =
        testkit::ChangeListener::bind(&rig.broker.connection, &rig.broker.topology, &["#"]).await;
    let ingest = rig.ingest().await;
    let first = rig.worker().await;
    let traffic = Traffic::with_duplicates(600, &ingest, 32).await;
    first.kill();
    let second = rig.worker().await;
    traffic.wait_until_answered(0.66).await;
    second.kill();
    let _third = rig.worker().await;
    let (load, all) = traffic.finished().await;
    rig.assert_exact(&load, &all, "change feed, worker SIGKILLed twice")
        .await;
    let stored = stored_statuses(&rig.db).await;
    assert_eq!(stored.len(), 600);
    listener
        .wait_for_last_statuses(&stored, Duration::from_secs(120))
        .await;
    let copies = testkit::check_feed_order(&listener.received);
    println!(
        "feed through two kills: {} changes received, {copies} copies",
        listener.received.len()
    );
}

async fn stored_statuses(
    db: &sea_orm::DatabaseConnection,
) -> std::collections::BTreeMap<String, String> {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    db.query_all_raw(Statement::from_string(
        DbBackend::Postgres,
        "SELECT message_sid, status FROM messages",
    ))
    .await
    .unwrap()
    .into_iter()
    .map(|row| {
        (
            row.try_get::<String>("", "message_sid").unwrap(),
            row.try_get::<String>("", "status").unwrap(),
        )
    })
    .collect()
}
