//! Test support shared by the services' integration tests: each test gets
//! its own RabbitMQ topology (a unique name prefix) and its own Postgres
//! database, both removed when the test ends, so tests run in parallel
//! against the real local services.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use lapin::options::{BasicAckOptions, BasicGetOptions};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use queue_wire::envelope::{BodyKind, CallbackEnvelope};
use queue_wire::topology::Topology;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use std::future::Future;
use std::time::Duration;
use twilio_protocol::form::FormParams;
use twilio_protocol::signature::{compute_signature, AuthToken};

pub mod cluster;
pub mod vectors;

/// The auth token every test app is configured with.
pub const TEST_TOKEN: &str = "12345";

pub fn amqp_url() -> String {
    std::env::var("TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// A Postgres server URL without a database name.
pub fn postgres_server_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

pub fn unique_name(kind: &str) -> String {
    format!("{kind}_{}", uuid::Uuid::new_v4().simple())
}

/// Polls `check` every 50 ms until it returns `Some`, or panics after
/// `timeout` with `what`. For waiting on asynchronous outcomes, not timing them.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A topology of its own on the real broker, deleted on drop.
pub struct TestBroker {
    pub topology: Topology,
    pub connection: Connection,
    pub channel: Channel,
    /// In confirm mode, for publishing like ingest does.
    pub publisher: Channel,
    /// The broker's `AMQP_URL` (one node, or several).
    pub url: String,
}

/// Short retry delays so retry paths finish quickly in tests.
pub fn test_retry_delays() -> Vec<Duration> {
    vec![Duration::from_millis(200), Duration::from_millis(400)]
}

impl TestBroker {
    pub async fn new() -> Self {
        Self::on(&amqp_url()).await
    }

    /// The same on another broker (a test cluster: any of its nodes).
    pub async fn on(amqp_url: &str) -> Self {
        let prefix = unique_name("test").replace('_', ".");
        let topology = Topology::new(prefix).with_retry_delays(test_retry_delays());
        let connection = queue_wire::broker::connect_any(amqp_url, "testkit")
            .await
            .expect("RabbitMQ must run on 127.0.0.1:5672 for these tests");
        topology.declare(&connection).await.unwrap();
        let channel = connection.create_channel().await.unwrap();
        let publisher = connection.create_channel().await.unwrap();
        publisher
            .confirm_select(lapin::options::ConfirmSelectOptions::default())
            .await
            .unwrap();
        Self {
            topology,
            connection,
            channel,
            publisher,
            url: amqp_url.to_owned(),
        }
    }

    /// Opens fresh channels after the broker dropped ours (a restart test).
    pub async fn reconnect(&mut self) {
        let connection = queue_wire::broker::connect_any(&self.url, "testkit")
            .await
            .unwrap();
        self.channel = connection.create_channel().await.unwrap();
        self.publisher = connection.create_channel().await.unwrap();
        self.publisher
            .confirm_select(lapin::options::ConfirmSelectOptions::default())
            .await
            .unwrap();
        self.connection = connection;
    }

    /// Publishes a raw message to the main exchange, as ingest does, and
    /// waits for the broker's confirm.
    pub async fn publish(&self, properties: BasicProperties, body: &[u8]) {
        queue_wire::broker::publish_confirmed(
            &self.publisher,
            &self.topology.exchange(),
            self.topology.routing_key(),
            body,
            properties,
            Duration::from_secs(30),
        )
        .await
        .expect("the broker confirms a test publish");
    }

    /// Publishes a form callback as ingest would have, received at `received_at`.
    pub async fn publish_callback(
        &self,
        params: &FormParams,
        received_at: chrono::DateTime<chrono::Utc>,
    ) {
        let envelope = callback_envelope(params, received_at);
        self.publish(envelope.to_properties(), &envelope.body).await;
    }

    /// Publishes form callbacks as one batch message, as ingest's group
    /// commit does; each `(params, received_at)` becomes one entry.
    pub async fn publish_batch(&self, callbacks: &[(FormParams, chrono::DateTime<chrono::Utc>)]) {
        let envelopes: Vec<CallbackEnvelope> = callbacks
            .iter()
            .map(|(params, received_at)| callback_envelope(params, *received_at))
            .collect();
        let (body, properties) = queue_wire::batch::encode_batch(&envelopes);
        self.publish(properties, &body).await;
    }

    /// Messages ready in `queue` (not counting unacknowledged ones).
    pub async fn ready_count(&self, queue: &str) -> u32 {
        queue_wire::topology::ready_messages(&self.channel, queue)
            .await
            .unwrap()
    }

    /// Takes (and acknowledges) every message in `queue`.
    pub async fn take_all(&self, queue: &str) -> Vec<(BasicProperties, Vec<u8>)> {
        let mut taken = Vec::new();
        while let Some(message) = self
            .channel
            .basic_get(queue.into(), BasicGetOptions::default())
            .await
            .unwrap()
        {
            let delivery = message.delivery;
            delivery
                .acker
                .ack(BasicAckOptions::default())
                .await
                .unwrap();
            taken.push((delivery.properties, delivery.data));
        }
        taken
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        delete_topology(self.topology.clone());
        // A binary started on the same prefix declares the default retry queues too.
        delete_topology(Topology::new(self.topology.prefix()));
    }
}

/// Deletes a topology's queues and exchange from synchronous code (a `Drop`,
/// or a test that started a binary which declared it).
pub fn delete_topology(topology: Topology) {
    // Drop cannot await; clean up on a runtime of its own.
    {
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(connection) =
                    Connection::connect(&amqp_url(), ConnectionProperties::default()).await
                {
                    if let Ok(channel) = connection.create_channel().await {
                        let _ = topology.delete(&channel).await;
                    }
                    let _ = connection.close(200, "test cleanup".into()).await;
                }
            });
        })
        .join();
    }
}

/// The envelope ingest would publish for a form callback.
pub fn callback_envelope(
    params: &FormParams,
    received_at: chrono::DateTime<chrono::Utc>,
) -> CallbackEnvelope {
    CallbackEnvelope {
        body: params.encode().into_bytes(),
        body_kind: BodyKind::Form,
        received_at,
        request_id: uuid::Uuid::new_v4().to_string(),
        idempotency_token: None,
        trace_context: Vec::new(),
    }
}

/// A fresh, empty database of its own, dropped on drop.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    pub async fn new() -> Self {
        let name = unique_name("test");
        let admin = admin_connection().await;
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        admin.close().await.unwrap();
        let url = format!("{}/{name}", postgres_server_url());
        Self { name, url }
    }

    pub async fn connect(&self) -> DatabaseConnection {
        Database::connect(&self.url).await.unwrap()
    }
}

async fn admin_connection() -> DatabaseConnection {
    Database::connect(format!("{}/postgres", postgres_server_url()))
        .await
        .expect("Postgres must run on 127.0.0.1:5432 for these tests")
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let admin = admin_connection().await;
                let _ = admin
                    .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await;
                let _ = admin.close().await;
            });
        })
        .join();
    }
}

/// The parameters Twilio sends for one status of one message.
pub fn status_params(message_sid: &str, status: &str, error_code: Option<i32>) -> FormParams {
    let mut pairs = vec![
        (
            "AccountSid",
            "AC00000000000000000000000000000000".to_owned(),
        ),
        ("ApiVersion", "2010-04-01".to_owned()),
    ];
    if let Some(code) = error_code {
        pairs.push(("ErrorCode", code.to_string()));
    }
    pairs.extend([
        ("From", "+15017122661".to_owned()),
        ("MessageSid", message_sid.to_owned()),
        ("MessageStatus", status.to_owned()),
        ("SmsSid", message_sid.to_owned()),
        ("SmsStatus", status.to_owned()),
        ("To", "+15558675310".to_owned()),
    ]);
    FormParams::from_pairs(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)))
}

/// A message SID for test message number `n`.
pub fn message_sid(n: u64) -> String {
    format!("SM{:032x}", u128::from(n) | (0xabcdef << 64))
}

/// Signs `params` for `url` with the test token, as Twilio would.
pub fn sign(url: &str, params: &FormParams) -> String {
    compute_signature(&AuthToken::new(TEST_TOKEN), url, params)
}

/// Posts a signed form callback to `base` (e.g. `http://127.0.0.1:1234`).
pub async fn post_signed(
    client: &reqwest::Client,
    base: &str,
    params: &FormParams,
) -> reqwest::Response {
    let url = format!("{base}/twilio/status");
    client
        .post(&url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("X-Twilio-Signature", sign(&url, params))
        .body(params.encode())
        .send()
        .await
        .unwrap()
}

/// The Prometheus text a service serves at `{base}/metrics`.
pub async fn scrape_metrics(base: &str) -> String {
    reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of an unlabelled sample `name` in Prometheus text, if present.
pub fn metric_value(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

/// Parses a JSON response body.
pub async fn json(response: reqwest::Response) -> serde_json::Value {
    response.json().await.unwrap()
}

/// Closes, from the broker's side, the connection whose client named itself
/// `connection_name`, as a broker restart or a network cut would.
pub fn close_broker_connection(connection_name: &str) {
    let output = std::process::Command::new("rabbitmqctl")
        .args(["list_connections", "pid", "client_properties", "-q"])
        .output()
        .expect("rabbitmqctl must be installed");
    let listing = String::from_utf8_lossy(&output.stdout);
    let needle = format!("{{\"connection_name\",\"{connection_name}\"}}");
    let pids: Vec<&str> = listing
        .lines()
        .filter(|line| line.contains(&needle))
        .filter_map(|line| line.split('\t').next())
        .collect();
    assert_eq!(
        pids.len(),
        1,
        "expected one connection named {connection_name:?} in:\n{listing}"
    );
    let status = std::process::Command::new("rabbitmqctl")
        .args([
            "close_connection",
            pids[0],
            "test: simulated broker failure",
        ])
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
}

/// A TCP proxy in front of a server that a test can cut (dropping every
/// connection and refusing new ones) and restore: a database outage on demand.
pub struct ToggleProxy {
    pub port: u16,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    cuts: tokio::sync::watch::Sender<u64>,
}

impl ToggleProxy {
    pub async fn start(upstream: &str) -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (cuts, _) = tokio::sync::watch::channel(0u64);
        let upstream = upstream.to_owned();
        let accept_open = open.clone();
        let accept_cuts = cuts.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !accept_open.load(Ordering::SeqCst) {
                    continue; // dropped: connection refused in effect
                }
                let upstream = upstream.clone();
                let mut cut = accept_cuts.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Self { port, open, cuts }
    }

    pub fn cut(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        self.cuts.send_modify(|n| *n += 1);
    }

    pub fn restore(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}
