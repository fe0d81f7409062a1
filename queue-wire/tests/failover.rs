//! The Reconnector against the real RabbitMQ: a dead node in `AMQP_URL`
//! is passed over, and after a lost session the next node is tried first.
//! (A real three-node cluster is exercised by the worker's fault suite.)

use queue_wire::reconnect::Reconnector;
use tokio_util::sync::CancellationToken;

fn live_url(host: &str) -> String {
    let base = std::env::var("TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    base.replace("127.0.0.1", host)
}

/// A port nothing listens on: the connection is refused at once.
const DEAD_NODE: &str = "amqp://guest:guest@127.0.0.1:1/%2f";

#[tokio::test]
async fn a_dead_node_is_passed_over() {
    let url = format!("{DEAD_NODE},{}", live_url("127.0.0.1"));
    let mut reconnector = Reconnector::new(&url, "queue-wire failover test", "testing");
    assert_eq!(reconnector.node(), None);
    let stop = CancellationToken::new();
    let connection = reconnector.connect(&stop).await.expect("a node answers");
    assert!(connection.status().connected());
    assert_eq!(reconnector.node().as_deref(), Some("127.0.0.1:5672"));
    connection.close(200, "done".into()).await.unwrap();
}

#[tokio::test]
async fn a_lost_session_fails_over_to_the_next_node() {
    // Two names of the one real broker stand for two nodes.
    let url = format!("{},{}", live_url("127.0.0.1"), live_url("localhost"));
    let mut reconnector = Reconnector::new(&url, "queue-wire failover test", "testing");
    let stop = CancellationToken::new();
    let first = reconnector.connect(&stop).await.unwrap();
    assert_eq!(reconnector.node().as_deref(), Some("127.0.0.1:5672"));
    first.close(200, "simulated loss".into()).await.unwrap();
    reconnector
        .after_failure(&"the session was lost", &stop)
        .await;
    let second = reconnector.connect(&stop).await.unwrap();
    assert_eq!(reconnector.node().as_deref(), Some("localhost:5672"));
    // And back round to the first after losing the second.
    second.close(200, "simulated loss".into()).await.unwrap();
    reconnector.after_failure(&"lost again", &stop).await;
    let third = reconnector.connect(&stop).await.unwrap();
    assert_eq!(reconnector.node().as_deref(), Some("127.0.0.1:5672"));
    third.close(200, "done".into()).await.unwrap();
}

#[tokio::test]
async fn stopping_while_no_node_answers_returns_none() {
    // One node refuses; the other accepts TCP and never speaks AMQP. Stop
    // once the reconnector is waiting on the silent one.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let url = format!("{DEAD_NODE},amqp://guest:guest@127.0.0.1:{port}/%2f");
    let mut reconnector = Reconnector::new(&url, "queue-wire failover test", "testing");
    let stop = CancellationToken::new();
    let stopper = stop.clone();
    let attempt_seen = tokio::spawn(async move {
        let (socket, _) = silent.accept().await.unwrap();
        stopper.cancel();
        // Closing it ends the abandoned attempt at once.
        drop(socket);
    });
    assert!(reconnector.connect(&stop).await.is_none());
    assert_eq!(reconnector.node(), None);
    attempt_seen.await.unwrap();
}
