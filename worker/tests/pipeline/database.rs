//! How the worker talks to Postgres.

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use testkit::TestDatabase;

/// sqlx 0.9.0 leaves Nagle's algorithm on, which costs ~40 ms per large
/// statement, and sets no keepalive, so a silently lost peer would hold a
/// connection for hours; the worker's pool sets both on every connection.
#[tokio::test]
async fn pool_connections_have_tcp_nodelay_and_keepalive() {
    let database = TestDatabase::new().await;
    assert!(
        database.url.starts_with("postgres://") && !database.url.contains("host=/"),
        "this test needs a TCP database URL, got {}",
        database.url
    );
    let db = worker::test_support::store::database::connect_database(&database.url, 2)
        .await
        .unwrap();
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT inet_client_port() AS port",
        ))
        .await
        .unwrap()
        .unwrap();
    let client_port: i32 = row.try_get("", "port").unwrap();
    let options = worker::test_support::store::socket_options::options_of_local_port(
        u16::try_from(client_port).unwrap(),
    )
    .unwrap()
    .unwrap();
    assert!(options.nodelay, "{options:?}");
    assert!(options.keepalive, "{options:?}");
    assert_eq!(
        options.keepalive_idle,
        worker::test_support::store::socket_options::KEEPALIVE_IDLE
    );
}
