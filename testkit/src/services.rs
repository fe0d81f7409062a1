//! Where the real local services are, and names that keep one test's
//! resources apart from another's.

/// The broker's URL: `TEST_AMQP_URL`, else the local node.
pub fn amqp_url() -> String {
    std::env::var("TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// A Postgres server URL without a database name.
pub fn postgres_server_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// `kind_<uuid>`: a name no other test uses.
pub fn unique_name(kind: &str) -> String {
    format!("{kind}_{}", uuid::Uuid::new_v4().simple())
}
