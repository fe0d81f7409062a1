//! Spooling while RabbitMQ is away, in process, and draining when it is back.

use super::*;

#[tokio::test]
async fn callbacks_are_spooled_while_the_broker_is_away_and_drained_once_when_it_is_back() {
    let (proxy, app) = cut_off_from_the_broker(Options::default()).await;

    let statuses = send(&app.address, 1, 40).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(app.readyz().await, 200, "the spool still accepts");
    assert!(app.readyz_text().await.contains("spooling"));
    assert!(app.spool_segments() > 0, "on disk before the 200");
    assert_eq!(app.queued().await, 0, "nothing reached RabbitMQ yet");

    proxy.restore();
    let sids = wait_for_queued_sids(&app.broker, 40).await;
    assert_each_once(&sids, 1, 40);
    wait_for(
        "the drained segments to go",
        Duration::from_secs(30),
        || async { (app.spool_segments() == 0).then_some(()) },
    )
    .await;
    // Nothing more arrives later.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.queued_callbacks().await.len(), 0);
}

#[tokio::test]
async fn a_full_spool_gives_503_and_claims_nothing_it_did_not_write() {
    // Room for a few records only; RabbitMQ unreachable throughout.
    let app = TestApp::spawn_with(Options {
        amqp_url: Some("amqp://guest:guest@127.0.0.1:1/%2f".to_owned()),
        extra_args: vec!["--spool-max-bytes", "2000"],
        ..Options::default()
    })
    .await;
    let mut statuses = Vec::new();
    for n in 1..=20 {
        statuses.extend(send(&app.address, n, 1).await);
    }
    let accepted = statuses.iter().filter(|s| **s == 200).count();
    assert!(accepted > 0 && accepted < 20, "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 503),
        "{statuses:?}"
    );
    // Every 200 is a record on disk, and nothing else is.
    let dir = app.spool.as_ref().unwrap().path();
    assert_eq!(spooled_sids(dir).len(), accepted);
    assert_eq!(app.readyz().await, 503, "full, and RabbitMQ away");
}

#[tokio::test]
async fn without_a_broker_the_answer_comes_at_once_from_the_spool() {
    let app = TestApp::spawn_with(Options {
        amqp_url: Some("amqp://guest:guest@127.0.0.1:1/%2f".to_owned()),
        ..Options::default()
    })
    .await;
    assert_eq!(send(&app.address, 1, 10).await, [200; 10]);
    assert_eq!(spooled_sids(app.spool.as_ref().unwrap().path()).len(), 10);
}

#[tokio::test]
async fn a_segment_gone_before_its_turn_is_forgotten_and_the_next_drained() {
    let dir = tempfile::tempdir().unwrap();
    let first = write_segment(dir.path(), 1, &segment_bytes(&[1..=3]));
    write_segment(dir.path(), 2, &segment_bytes(&[4..=6]));
    let proxy = ToggleProxy::start(&broker_address()).await;
    proxy.cut();
    let app = TestApp::spawn_with(Options {
        amqp_url: Some(amqp_url_via(proxy.port)),
        spool_dir: Some(dir.path().to_path_buf()),
        ..Options::default()
    })
    .await;
    // Counted at start, then removed from outside before it was drained
    // (as a removal whose state update was lost would leave it).
    assert!(app.readyz_text().await.contains("spooling"));
    std::fs::remove_file(&first).unwrap();
    proxy.restore();
    let sids = wait_for_queued_sids(&app.broker, 3).await;
    assert_each_once(&sids, 4, 3);
    wait_for("the spool to be empty", Duration::from_secs(30), || async {
        (app.readyz_text().await == "ready").then_some(())
    })
    .await;
    assert_eq!(files_ending(dir.path(), ".spool"), 0);
}
