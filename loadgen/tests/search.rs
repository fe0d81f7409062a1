//! `search` against a real worker (in-process, port 0, its API behind a
//! token) on a database of its own with messages of known shape: each
//! query's requests are answered, page two is reached through page one's
//! cursor, and the rows an answer held are what the filters select.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use clap::Parser;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use serde_json::Value;
use std::process::Output;
use std::time::Duration;
use tokio::process::Command;
use worker::app::{Application, ShutdownHandle};
use worker::config::{CommonConfig, WorkerCli, WorkerConfig};

const TOKEN: &str = "search-test-token";
const ACCOUNT: &str = "AC00000000000000000000000000000000";

fn amqp_url() -> String {
    std::env::var("TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

fn postgres_server_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

async fn admin() -> DatabaseConnection {
    Database::connect(format!("{}/postgres", postgres_server_url()))
        .await
        .expect("Postgres must run on 127.0.0.1:5432 for these tests")
}

/// A database and a topology of their own, a worker on them, and 120
/// messages: to three recipients (40 each), from one sender, under one
/// account; every fifth failed (30007), the next undelivered (30003), the
/// rest delivered; one a second back from now.
struct SearchedWorker {
    database: String,
    database_url: String,
    prefix: String,
    url: String,
    shutdown: ShutdownHandle,
    stopped: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl SearchedWorker {
    async fn start() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let database = format!("loadgen_search_{id}");
        let admin = admin().await;
        admin
            .execute_unprepared(&format!("CREATE DATABASE {database}"))
            .await
            .unwrap();
        admin.close().await.unwrap();
        let database_url = format!("{}/{database}", postgres_server_url());
        let prefix = format!("test.{id}");
        let amqp_url = amqp_url();
        let cli = WorkerCli::parse_from([
            "worker",
            "--addr",
            "127.0.0.1:0",
            "--amqp-url",
            &amqp_url,
            "--database-url",
            &database_url,
            "--topology-prefix",
            &prefix,
            "--api-token",
            TOKEN,
        ]);
        let common = CommonConfig::try_from(cli.common).unwrap();
        let config = WorkerConfig::new(common, cli.consume).unwrap();
        // Migrates the database before it listens.
        let app = Application::build(config).await.unwrap();
        let url = format!("http://127.0.0.1:{}", app.port());
        let shutdown = app.shutdown_handle();
        let stopped = tokio::spawn(app.run_until_stopped(std::future::pending()));
        let db = Database::connect(&database_url).await.unwrap();
        db.execute_unprepared(&format!(
            "INSERT INTO messages (message_sid, status, status_rank, status_precedence, error_code,
               account_sid, from_address, to_address, first_seen_at, last_seen_at, event_count)
             SELECT 'SM' || lpad(to_hex(n), 32, '0'),
                    CASE n % 5 WHEN 0 THEN 'failed' WHEN 1 THEN 'undelivered' ELSE 'delivered' END,
                    4,
                    CASE n % 5 WHEN 0 THEN 42 WHEN 1 THEN 43 ELSE 45 END,
                    CASE n % 5 WHEN 0 THEN 30007 WHEN 1 THEN 30003 END,
                    '{ACCOUNT}', '+15017122661', '+1555000000' || (n % 3),
                    now() - n * interval '1 second', now() - n * interval '1 second', 3
             FROM generate_series(1, 120) AS n"
        ))
        .await
        .unwrap();
        db.close().await.unwrap();
        Self {
            database,
            database_url,
            prefix,
            url,
            shutdown,
            stopped,
        }
    }

    /// `loadgen search` on this worker with `args` after the common ones.
    async fn search(&self, token: Option<&str>, args: &[&str]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_loadgen"));
        command
            .env_remove("WORKER_API_TOKEN")
            .args(["search", "--url", &self.url])
            .args(["--database-url", &self.database_url])
            .args(["--requests", "20", "--concurrency", "2", "--json"])
            .args(args)
            .kill_on_drop(true);
        if let Some(token) = token {
            command.args(["--token", token]);
        }
        tokio::time::timeout(Duration::from_secs(60), command.output())
            .await
            .expect("loadgen search did not finish")
            .unwrap()
    }

    async fn stop(self) {
        self.shutdown.shutdown().await;
        let _ = self.stopped.await;
        if let Ok(connection) =
            lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default()).await
        {
            if let Ok(channel) = connection.create_channel().await {
                let _ = queue_wire::topology::Topology::new(self.prefix.clone())
                    .delete(&channel)
                    .await;
            }
            let _ = connection.close(200, "done".into()).await;
        }
        let admin = admin().await;
        admin
            .execute_unprepared(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.database
            ))
            .await
            .unwrap();
        admin.close().await.unwrap();
    }
}

fn report(output: &Output) -> Vec<Value> {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not a JSON report ({e}); stderr: {stderr}"));
    report["queries"].as_array().unwrap().clone()
}

#[tokio::test]
async fn times_each_query_and_reaches_page_two_through_page_one() {
    let worker = SearchedWorker::start().await;
    let output = worker
        .search(
            Some(TOKEN),
            &[
                "--query",
                "to={to}",
                "--query",
                "to={to}&limit=15&cursor={cursor}",
                "--query",
                "account_sid={account}&status=failed",
                "--query",
                "from={from}&since=1h&limit=500",
            ],
        )
        .await;
    // Page one of every sampled value is the last: nothing to time.
    let no_page_two = worker
        .search(
            Some(TOKEN),
            &["--query", "to={to}&status=failed&cursor={cursor}"],
        )
        .await;
    let tokenless = worker.search(None, &["--query", "status=failed"]).await;
    worker.stop().await;

    let stderr = String::from_utf8_lossy(&output.stderr);
    let queries = report(&output);
    let summary: Vec<(&str, u64, u64, f64)> = queries
        .iter()
        .map(|q| {
            (
                q["query"].as_str().unwrap(),
                q["requests"].as_u64().unwrap(),
                q["not_ok"].as_u64().unwrap(),
                q["mean_rows"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("to={to}", 20, 0, 40.0),
            ("to={to}&limit=15&cursor={cursor}", 20, 0, 15.0),
            ("account_sid={account}&status=failed", 20, 0, 24.0),
            ("from={from}&since=1h&limit=500", 20, 0, 120.0),
        ],
        "{stderr}"
    );
    // Every message is sampled here: its recipient (one of three, each with
    // a page two), its account.
    assert_eq!(queries[0]["values"], 120);
    assert_eq!(queries[0]["distinct_values"], 3);
    assert_eq!(queries[1]["values"], 120);
    assert_eq!(queries[1]["distinct_values"], 3);
    assert_eq!(queries[1]["without_second_page"], 0);
    assert_eq!(queries[2]["distinct_values"], 1);
    assert!(queries[0]["latency_ms"]["p99"].as_f64().unwrap() > 0.0);
    assert_eq!(output.status.code(), Some(0), "{stderr}");

    let queries = report(&no_page_two);
    assert_eq!(queries[0]["requests"], 0);
    assert_eq!(queries[0]["without_second_page"], 120);
    assert_eq!(
        no_page_two.status.code(),
        Some(1),
        "nothing timed is no success"
    );

    let queries = report(&tokenless);
    assert_eq!(queries[0]["requests"], 20);
    assert_eq!(queries[0]["not_ok"], 20, "the worker asks for its token");
    assert_eq!(tokenless.status.code(), Some(1));
}
