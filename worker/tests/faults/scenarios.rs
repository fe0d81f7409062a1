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
