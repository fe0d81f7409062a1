//! The change feed: every change of a message's status reaches a queue
//! bound to `<prefix>.changes`, per message in order, whatever order the
//! callbacks come in, whoever relays, and through a relay that stopped
//! between commit and publish or lost RabbitMQ.

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use std::collections::BTreeMap;
use std::time::Duration;
use testkit::{
    check_feed_order, message_sid, metric_value, scrape_metrics, status_params, wait_for,
    ChangeListener, TestBroker, TestDatabase, ToggleProxy,
};

use crate::helpers::{at, message_row, wait_for_event_rows, RunningWorker, TestPipeline};

const FEED_WAIT: Duration = Duration::from_secs(60);

/// Lifecycles in a shuffled order, each callback sent twice (Twilio's
/// duplicates), published from message `first`; returns sid → the status
/// each message must end in, and how many distinct callbacks were sent.
async fn send_shuffled_lifecycles(
    broker: &TestBroker,
    first: u64,
    messages: u64,
) -> (BTreeMap<String, String>, u64) {
    let lifecycles: [(&[&str], &str); 4] = [
        (&["queued", "sent", "delivered", "read"], "read"),
        (
            &["accepted", "queued", "sending", "sent", "failed"],
            "failed",
        ),
        (&["queued", "sent", "undelivered"], "undelivered"),
        (&["queued", "sent", "delivered"], "delivered"),
    ];
    let mut callbacks = Vec::new();
    let mut expected = BTreeMap::new();
    let mut distinct = 0;
    for n in first..first + messages {
        let sid = message_sid(n);
        let (lifecycle, last) = lifecycles[(n % 4) as usize];
        expected.insert(sid.clone(), last.to_owned());
        for (step, status) in lifecycle.iter().enumerate() {
            let error_code = matches!(*status, "failed" | "undelivered").then_some(30003);
            let params = status_params(&sid, status, error_code);
            let received = at(step as i64 + 1);
            callbacks.push((params.clone(), received));
            callbacks.push((params, received));
            distinct += 1;
        }
    }
    fastrand::shuffle(&mut callbacks);
    for chunk in callbacks.chunks(7) {
        broker.publish_batch(chunk).await;
    }
    (expected, distinct)
}

async fn outbox_rows(db: &DatabaseConnection) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT count(*) AS n FROM message_changes",
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get("", "n").unwrap()
}

async fn wait_until_outbox_empty(db: &DatabaseConnection) {
    wait_for("an empty outbox", FEED_WAIT, || async {
        (outbox_rows(db).await == 0).then_some(())
    })
    .await;
}

/// A topology, a database and a consumer's queue bound to every change,
/// for tests that start their own workers.
struct FeedRig {
    broker: TestBroker,
    database: TestDatabase,
    db: DatabaseConnection,
    listener: ChangeListener,
}

impl FeedRig {
    async fn new() -> Self {
        let broker = TestBroker::new().await;
        let database = TestDatabase::new().await;
        let db = database.connect().await;
        let listener = ChangeListener::bind(&broker.connection, &broker.topology, &["#"]).await;
        Self {
            broker,
            database,
            db,
            listener,
        }
    }

    /// A worker on this rig that stores but never relays.
    async fn silent_worker(&self) -> RunningWorker {
        let worker = RunningWorker::start_tuned(&self.broker, &self.database.url, &[], |config| {
            config.relay_changes = false;
        })
        .await;
        worker.wait_ready().await;
        worker
    }

    /// Waits until every message's last change is `expected`, the outbox
    /// is empty and everything published is taken; then checks the feed's
    /// order and that each last change is the stored status.
    async fn assert_feed_complete(&mut self, expected: &BTreeMap<String, String>) {
        self.listener
            .wait_for_last_statuses(expected, FEED_WAIT)
            .await;
        wait_until_outbox_empty(&self.db).await;
        self.listener.take_available().await;
        check_feed_order(&self.listener.received);
        assert_last_changes_are_stored(&self.db, &self.listener).await;
    }
}

/// The last change of each message is its stored status.
async fn assert_last_changes_are_stored(db: &DatabaseConnection, listener: &ChangeListener) {
    for (sid, status) in testkit::last_statuses(&listener.received) {
        assert_eq!(message_row(db, &sid).await.status, status, "{sid}");
    }
}

#[tokio::test]
async fn every_change_arrives_once_in_order_and_the_last_is_the_stored_status() {
    let pipeline = TestPipeline::start().await;
    let mut listener = ChangeListener::bind(
        &pipeline.broker.connection,
        &pipeline.broker.topology,
        &["#"],
    )
    .await;
    let (expected, distinct) = send_shuffled_lifecycles(&pipeline.broker, 1, 40).await;
    wait_for_event_rows(&pipeline.db, distinct).await;
    listener.wait_for_last_statuses(&expected, FEED_WAIT).await;
    wait_until_outbox_empty(&pipeline.db).await;
    listener.take_available().await;

    let copies = check_feed_order(&listener.received);
    assert_eq!(copies, 0, "nothing failed, so nothing was published twice");
    assert_last_changes_are_stored(&pipeline.db, &listener).await;
    // What a change says beyond its status.
    let failed = listener
        .received
        .iter()
        .find(|change| change.status() == "failed")
        .unwrap();
    assert_eq!(failed.body["error_code"], 30003);
    assert_eq!(
        failed.body["error_title"],
        "Unreachable destination handset"
    );
    assert_eq!(failed.body["final"], true);
    assert_eq!(
        failed.body["account_sid"],
        "AC00000000000000000000000000000000"
    );
    assert_eq!(failed.body["to"], "+15558675310");
    for change in &listener.received {
        let is_final = matches!(
            change.status(),
            "delivered" | "undelivered" | "failed" | "read"
        );
        assert_eq!(change.body["final"], is_final, "{:?}", change.body);
        if change.sequence() == 1 {
            assert!(change.body["previous_status"].is_null());
        }
    }
    // The metrics are the process's (tests share it): at least these.
    let metrics = scrape_metrics(&pipeline.worker.address).await;
    let published: f64 = [
        "queued",
        "accepted",
        "sending",
        "sent",
        "delivered",
        "read",
        "failed",
        "undelivered",
    ]
    .iter()
    .filter_map(|status| {
        metric_value(
            &metrics,
            &format!("worker_changes_published_total{{status=\"{status}\"}}"),
        )
    })
    .sum();
    assert!(published as usize >= listener.received.len());
    assert_eq!(relaying(&pipeline.worker).await, Some(true));
}

/// Whether `/readyz` says this worker relays the feed.
async fn relaying(worker: &RunningWorker) -> Option<bool> {
    let ready = testkit::json(
        reqwest::get(format!("{}/readyz", worker.address))
            .await
            .unwrap(),
    )
    .await;
    ready["change_feed"]["relaying"].as_bool()
}

#[tokio::test]
async fn a_binding_on_failed_and_undelivered_gets_only_those() {
    let pipeline = TestPipeline::start().await;
    let mut listener = ChangeListener::bind(
        &pipeline.broker.connection,
        &pipeline.broker.topology,
        &["message.failed", "message.undelivered"],
    )
    .await;
    let (expected, distinct) = send_shuffled_lifecycles(&pipeline.broker, 100, 8).await;
    wait_for_event_rows(&pipeline.db, distinct).await;
    let bad: BTreeMap<String, String> = expected
        .into_iter()
        .filter(|(_, status)| status == "failed" || status == "undelivered")
        .collect();
    assert_eq!(bad.len(), 4);
    listener.wait_for_last_statuses(&bad, FEED_WAIT).await;
    wait_until_outbox_empty(&pipeline.db).await;
    listener.take_available().await;
    assert_eq!(listener.received.len(), 4, "{:?}", listener.received);
}

#[tokio::test]
async fn with_the_feed_off_nothing_is_recorded_or_published() {
    let pipeline = TestPipeline::start_with(&["--change-feed", "false"]).await;
    let (_, distinct) = send_shuffled_lifecycles(&pipeline.broker, 200, 8).await;
    wait_for_event_rows(&pipeline.db, distinct).await;
    assert_eq!(outbox_rows(&pipeline.db).await, 0);
    let ready = testkit::json(
        reqwest::get(format!("{}/readyz", pipeline.worker.address))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(ready["change_feed"]["enabled"], false);
}

/// A worker that committed changes and stopped before publishing them (as
/// one killed between commit and publish does): the next worker publishes
/// every one, in order.
#[tokio::test]
async fn changes_committed_but_not_published_are_published_by_the_next_worker() {
    let mut rig = FeedRig::new().await;
    let silent = rig.silent_worker().await;
    let (expected, distinct) = send_shuffled_lifecycles(&rig.broker, 300, 20).await;
    wait_for_event_rows(&rig.db, distinct).await;
    let waiting = outbox_rows(&rig.db).await;
    assert!(
        waiting >= 20,
        "every message changed at least once: {waiting}"
    );
    silent.stop().await;
    assert_eq!(rig.listener.take_available().await, 0, "nobody relayed yet");

    let relaying = RunningWorker::start(&rig.broker, &rig.database.url).await;
    rig.assert_feed_complete(&expected).await;
    assert_eq!(rig.listener.received.len() as i64, waiting);
    relaying.stop().await;
}

/// While the relay cannot reach RabbitMQ, the outbox keeps every change
/// (and says so on /readyz); once it can, the relay catches up, in order.
#[tokio::test]
async fn while_rabbitmq_is_away_the_outbox_holds_and_the_relay_catches_up() {
    let mut rig = FeedRig::new().await;
    // The relay reaches RabbitMQ through a proxy; a second worker, direct,
    // stores callbacks meanwhile but never relays.
    let proxy = ToggleProxy::start("127.0.0.1:5672").await;
    let via_proxy =
        testkit::amqp_url().replace("127.0.0.1:5672", &format!("127.0.0.1:{}", proxy.port));
    let relaying = RunningWorker::start_tuned(&rig.broker, &rig.database.url, &[], |config| {
        config.common.amqp_url = via_proxy;
    })
    .await;
    relaying.wait_ready().await;
    let storing = rig.silent_worker().await;
    proxy.cut();

    let (expected, distinct) = send_shuffled_lifecycles(&rig.broker, 400, 20).await;
    wait_for_event_rows(&rig.db, distinct).await;
    let ready = wait_for("/readyz to show the outbox", FEED_WAIT, || async {
        let ready = testkit::json(
            reqwest::get(format!("{}/readyz", relaying.address))
                .await
                .unwrap(),
        )
        .await;
        (ready["change_feed"]["outbox_depth"].as_u64() > Some(0)).then_some(ready)
    })
    .await;
    assert_eq!(ready["change_feed"]["enabled"], true);
    assert!(outbox_rows(&rig.db).await > 0);

    proxy.restore();
    rig.assert_feed_complete(&expected).await;
    storing.stop().await;
    relaying.stop().await;
}

/// Two workers: one relays (the other waits for the lock); stopping it
/// mid-stream hands the feed to the other, and no message's changes go
/// out of order or missing.
#[tokio::test]
async fn two_workers_relay_one_at_a_time_and_hand_over_in_order() {
    let mut rig = FeedRig::new().await;
    let first = RunningWorker::start(&rig.broker, &rig.database.url).await;
    first.wait_ready().await;
    let second = RunningWorker::start(&rig.broker, &rig.database.url).await;
    second.wait_ready().await;
    let first_is_leader = wait_for("one leader", FEED_WAIT, || async {
        match (relaying(&first).await, relaying(&second).await) {
            (Some(true), Some(true)) => panic!("two workers relay at once"),
            (Some(true), _) => Some(true),
            (_, Some(true)) => Some(false),
            _ => None,
        }
    })
    .await;
    let (mut expected, _) = send_shuffled_lifecycles(&rig.broker, 500, 30).await;
    let (leader, follower) = if first_is_leader {
        (first, second)
    } else {
        (second, first)
    };
    leader.stop().await;
    let (more, _) = send_shuffled_lifecycles(&rig.broker, 600, 30).await;
    expected.extend(more);
    rig.assert_feed_complete(&expected).await;
    assert_eq!(relaying(&follower).await, Some(true));
    follower.stop().await;
}

/// A consumer's queue that is full and rejects publishes makes RabbitMQ
/// nack them: each refused change stays in the outbox and goes again, and
/// no later change of its message overtakes it.
#[tokio::test]
async fn a_change_refused_by_a_full_queue_is_published_again_and_never_overtaken() {
    let pipeline = TestPipeline::start().await;
    let mut arguments = lapin::types::FieldTable::default();
    arguments.insert(
        "x-max-length".into(),
        lapin::types::AMQPValue::LongLongInt(3),
    );
    arguments.insert(
        "x-overflow".into(),
        lapin::types::AMQPValue::LongString("reject-publish".into()),
    );
    let mut listener = ChangeListener::bind_with(
        &pipeline.broker.connection,
        &pipeline.broker.topology,
        &["#"],
        arguments,
    )
    .await;
    // Each step of ten lifecycles stored before the next is sent: three
    // changes a message, thirty in all, into a queue that holds three.
    let sids: Vec<String> = (700..710).map(message_sid).collect();
    let mut stored = 0;
    for (step, status) in ["queued", "sent", "delivered"].iter().enumerate() {
        for sid in &sids {
            pipeline
                .broker
                .publish_callback(&status_params(sid, status, None), at(step as i64))
                .await;
        }
        stored += sids.len() as u64;
        wait_for_event_rows(&pipeline.db, stored).await;
    }
    let expected: BTreeMap<String, String> = sids
        .iter()
        .map(|sid| (sid.clone(), "delivered".to_owned()))
        .collect();
    // Refusals happened, and the outbox kept what was refused.
    wait_for("a nack", FEED_WAIT, || async {
        let metrics = scrape_metrics(&pipeline.worker.address).await;
        metric_value(
            &metrics,
            "worker_change_publish_failures_total{reason=\"nack\"}",
        )
        .filter(|nacks| *nacks > 0.0)
    })
    .await;
    assert!(outbox_rows(&pipeline.db).await > 0);
    // The consumer takes what it can; the refused changes follow.
    listener.wait_for_last_statuses(&expected, FEED_WAIT).await;
    wait_until_outbox_empty(&pipeline.db).await;
    listener.take_available().await;
    assert_eq!(check_feed_order(&listener.received), 0);
    assert_eq!(listener.received.len(), 30);
}

/// A trace header Postgres could not store (a NUL) or that is not W3C's
/// never holds up a callback: it is stored, and its change published
/// without that trace.
#[tokio::test]
async fn a_malformed_trace_header_is_dropped_not_stored() {
    let pipeline = TestPipeline::start().await;
    let mut listener = ChangeListener::bind(
        &pipeline.broker.connection,
        &pipeline.broker.topology,
        &["#"],
    )
    .await;
    let mut expected = BTreeMap::new();
    for (n, traceparent) in [(800, "00-\u{0}-bad"), (801, "not a traceparent")] {
        let sid = message_sid(n);
        let mut envelope = testkit::callback_envelope(&status_params(&sid, "sent", None), at(1));
        envelope.trace_context = vec![("traceparent".into(), traceparent.into())];
        pipeline
            .broker
            .publish(envelope.to_properties(), &envelope.body)
            .await;
        expected.insert(sid, "sent".to_owned());
    }
    wait_for_event_rows(&pipeline.db, 2).await;
    listener.wait_for_last_statuses(&expected, FEED_WAIT).await;
    assert_eq!(check_feed_order(&listener.received), 0);
    let dead = pipeline
        .broker
        .ready_count(&pipeline.broker.topology.dead_letter_queue())
        .await;
    assert_eq!(dead, 0, "nothing dead-lettered");
}
