//! What a process leaves behind: drained by the next one on the directory,
//! or adopted by a live one; torn and damaged segments; segments an
//! earlier release wrote (`segment_bytes` writes that format).

use super::*;

#[tokio::test]
async fn a_killed_ingest_leaves_its_spool_to_the_next_which_drains_it_once() {
    let broker = TestBroker::new().await;
    let spool = tempfile::tempdir().unwrap();
    let away = "amqp://guest:guest@127.0.0.1:1/%2f";
    let first = start_ingest(away, broker.topology.prefix(), spool.path(), &[]);
    let statuses = send(&first.address(), 1, 30).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    first.kill(); // SIGKILL: no chance to flush or drain anything

    let mut second = start_ingest(
        &testkit::amqp_url(),
        broker.topology.prefix(),
        spool.path(),
        &[],
    );
    second.wait_for_line("the spool holds callbacks an earlier process could not publish");
    let sids = wait_for_queued_sids(&broker, 30).await;
    assert_each_once(&sids, 1, 30);
    second.wait_for_line("spool drained");
}

#[tokio::test]
async fn two_processes_never_share_a_spool_directory_and_what_they_leave_is_drained() {
    let broker = TestBroker::new().await;
    let spool = tempfile::tempdir().unwrap();
    let away = "amqp://guest:guest@127.0.0.1:1/%2f";
    let prefix = broker.topology.prefix();
    // Two processes given the same directory while RabbitMQ is away.
    let first = start_ingest(away, prefix, spool.path(), &[]);
    let mut second = start_ingest(away, prefix, spool.path(), &[]);
    second.wait_for_line("this one spools in a directory of its own");
    assert!(send(&first.address(), 1, 10)
        .await
        .iter()
        .all(|s| *s == 200));
    assert!(send(&second.address(), 11, 10)
        .await
        .iter()
        .all(|s| *s == 200));
    // Each wrote its own segments: the first in the directory, the second
    // in one inside it.
    let first_sids = spooled_sids(spool.path());
    let second_sids = spooled_sids(&spool.path().join("ingest-1"));
    assert_eq!(first_sids.len(), 10, "{first_sids:?}");
    assert_eq!(second_sids.len(), 10, "{second_sids:?}");
    assert!(first_sids.iter().all(|sid| !second_sids.contains(sid)));
    first.kill();
    second.kill();

    // One process comes back: it drains its own directory and adopts the
    // one the other left.
    let mut survivor = start_ingest(&testkit::amqp_url(), prefix, spool.path(), &[]);
    let sids = wait_for_queued_sids(&broker, 20).await;
    assert_each_once(&sids, 1, 20);
    survivor.wait_for_line("adopted spool drained");
    assert!(spooled_sids(&spool.path().join("ingest-1")).is_empty());
}

#[tokio::test]
async fn a_torn_last_record_is_skipped_with_a_log_line_and_the_rest_drained() {
    let broker = TestBroker::new().await;
    let spool = tempfile::tempdir().unwrap();
    // What a process killed in the middle of a write leaves: two whole
    // records, then a third cut short.
    let mut bytes = segment_bytes(&[1..=3, 4..=5, 6..=6]);
    bytes.truncate(bytes.len() - 10);
    let path = write_segment(spool.path(), 7, &bytes);

    let mut ingest = start_ingest(
        &testkit::amqp_url(),
        broker.topology.prefix(),
        spool.path(),
        &[],
    );
    let warning = ingest.wait_for_line("ended in a torn record");
    assert!(
        warning.contains("WARN") && warning.contains("torn_tail_bytes"),
        "{warning}"
    );
    let sids = wait_for_queued_sids(&broker, 5).await;
    assert_each_once(&sids, 1, 5);
    ingest.wait_for_line("spool drained");
    assert!(!path.exists(), "a drained segment is removed");
    // A torn tail is what a crash leaves, not damage: nothing is kept aside.
    assert_eq!(files_ending(spool.path(), ".damaged"), 0);
    assert_eq!(
        ingest
            .seen()
            .iter()
            .filter(|l| l.contains("torn record"))
            .count(),
        1,
        "said once"
    );
}

#[tokio::test]
async fn a_damaged_segment_is_drained_around_the_damage_kept_aside_and_counted() {
    let broker = TestBroker::new().await;
    let spool = tempfile::tempdir().unwrap();
    // Three records; a bit of the second's payload flipped on disk.
    let mut bytes = segment_bytes(&[1..=3, 4..=5, 6..=6]);
    let first_record = segment_bytes(&[1..=3]).len();
    bytes[first_record + 8 + 20] ^= 0x01;
    let path = write_segment(spool.path(), 3, &bytes);

    let mut ingest = start_ingest(
        &testkit::amqp_url(),
        broker.topology.prefix(),
        spool.path(),
        &[],
    );
    let sids = wait_for_queued_sids(&broker, 4).await;
    let expected: BTreeSet<String> = [1, 2, 3, 6].into_iter().map(message_sid).collect();
    assert_eq!(sids.len(), 4, "{sids:?}");
    assert_eq!(sids.iter().cloned().collect::<BTreeSet<_>>(), expected);
    ingest.wait_for_line("spool drained");
    let error = ingest.wait_for_line("spool segment damaged");
    assert!(error.contains("ERROR"), "{error}");
    assert!(error.contains("\"damaged_records\":1"), "{error}");
    assert!(!path.exists(), "out of the drainer's way");
    let aside = PathBuf::from(format!("{}.damaged", path.display()));
    assert_eq!(std::fs::read(&aside).unwrap(), bytes, "kept, never deleted");
    let metrics = testkit::scrape_metrics(&ingest.address()).await;
    assert!(
        metrics.contains("ingest_spool_damaged_records_total 1"),
        "{metrics}"
    );
    assert_eq!(
        ingest
            .seen()
            .iter()
            .filter(|l| l.contains("spool segment damaged"))
            .count(),
        1,
        "said once per segment"
    );
}
