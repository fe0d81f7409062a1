//! SIGTERM: the spool is drained into RabbitMQ before the process exits,
//! for as long as it is given; what is left is said, and stays on disk.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_the_spool_into_rabbitmq_before_exiting() {
    let broker = TestBroker::new().await;
    let spool = tempfile::tempdir().unwrap();
    let proxy = ToggleProxy::start(&broker_address()).await;
    proxy.cut();
    let ingest = start_ingest(
        &amqp_url_via(proxy.port),
        broker.topology.prefix(),
        spool.path(),
        &[("INGEST_SHUTDOWN_DRAIN_SECS", "60")],
    );
    let statuses = send(&ingest.address(), 1, 300).await;
    assert_eq!(statuses, vec![200; 300], "all spooled");
    assert_eq!(spooled_sids(spool.path()).len(), 300);

    // RabbitMQ is back as the process is told to go (a scale-down).
    proxy.restore();
    let (code, logs) = tokio::task::spawn_blocking(move || ingest.terminate())
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{logs}");
    // What the spool held when the drain began is what it says it drained.
    let line_with = |needle: &str| -> serde_json::Value {
        let line = logs
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?}:\n{logs}"));
        serde_json::from_str(line).unwrap()
    };
    let began = line_with("draining the spool into RabbitMQ before exiting");
    let ended = line_with("drained the spool into RabbitMQ before exiting");
    assert_eq!(began["callbacks"], ended["drained"], "{began} {ended}");
    assert!(!logs.contains("still spooled"), "{logs}");
    let sids = wait_for_queued_sids(&broker, 300).await;
    assert_each_once(&sids, 1, 300);
    assert_eq!(
        files_ending(spool.path(), ".spool"),
        0,
        "nothing left on disk"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_rabbitmq_still_away_says_what_is_left_where_and_exits_0() {
    let broker = TestBroker::new().await;
    let spool = tempfile::tempdir().unwrap();
    let away = "amqp://guest:guest@127.0.0.1:1/%2f";
    let ingest = start_ingest(
        away,
        broker.topology.prefix(),
        spool.path(),
        &[("INGEST_SHUTDOWN_DRAIN_SECS", "1")],
    );
    assert_eq!(send(&ingest.address(), 1, 10).await, [200; 10]);
    let (code, logs) = tokio::task::spawn_blocking(move || ingest.terminate())
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{logs}");
    let left = logs
        .lines()
        .find(|l| l.contains("exiting with callbacks still spooled"))
        .unwrap_or_else(|| panic!("no line about what is left:\n{logs}"));
    assert!(left.contains("WARN"), "{left}");
    assert!(left.contains("\"remaining\":10"), "{left}");
    assert!(left.contains(&spool.path().display().to_string()), "{left}");
    // Left on disk, whole, for the next process.
    assert_eq!(spooled_sids(spool.path()).len(), 10);
}
