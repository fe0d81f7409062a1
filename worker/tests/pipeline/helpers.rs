use clap::Parser;
use sea_orm::{ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait};
use std::time::Duration;
use testkit::{wait_for, TestBroker, TestDatabase};
use worker::app::{Application, ShutdownHandle};
use worker::config::{CommonConfig, WorkerCli, WorkerConfig};
use worker::entity::{message, message_status_event};

/// One running worker (in-process, port 0) over a test topology and database.
pub struct RunningWorker {
    pub address: String,
    pub shutdown: ShutdownHandle,
    pub stopped: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningWorker {
    /// Starts a worker on `broker`'s topology with `database_url`.
    pub async fn start(broker: &TestBroker, database_url: &str) -> Self {
        Self::start_with(broker, database_url, &[]).await
    }

    /// Same, with extra command-line arguments.
    pub async fn start_with(broker: &TestBroker, database_url: &str, extra: &[&str]) -> Self {
        let amqp_url = testkit::amqp_url();
        let mut argv = vec![
            "worker",
            "--amqp-url",
            &amqp_url,
            "--database-url",
            database_url,
            "--topology-prefix",
            broker.topology.prefix(),
        ];
        for (flag, default) in [
            ("--prefetch", "64"),
            ("--max-batch", "32"),
            ("--addr", "127.0.0.1:0"),
        ] {
            if !extra.contains(&flag) {
                argv.extend([flag, default]);
            }
        }
        argv.extend_from_slice(extra);
        let cli = WorkerCli::parse_from(argv);
        let mut common = CommonConfig::try_from(cli.common).unwrap();
        common.topology = broker.topology.clone();
        let config = WorkerConfig::new(common, cli.consume).unwrap();
        let app = Application::build(config).await.unwrap();
        let address = format!("http://127.0.0.1:{}", app.port());
        let shutdown = app.shutdown_handle();
        let stopped = tokio::spawn(app.run_until_stopped(std::future::pending()));
        Self {
            address,
            shutdown,
            stopped,
        }
    }

    pub async fn readyz(&self) -> u16 {
        reqwest::get(format!("{}/readyz", self.address))
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    pub async fn wait_ready(&self) {
        wait_for(
            "the worker to be ready",
            Duration::from_secs(30),
            || async { (self.readyz().await == 200).then_some(()) },
        )
        .await;
    }

    pub async fn stop(self) {
        self.shutdown.shutdown().await;
        self.stopped.await.unwrap().unwrap();
    }
}

/// A test's broker topology, database and one worker.
pub struct TestPipeline {
    pub broker: TestBroker,
    pub database: TestDatabase,
    pub db: DatabaseConnection,
    pub worker: RunningWorker,
}

impl TestPipeline {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Same, with extra worker command-line arguments.
    pub async fn start_with(extra: &[&str]) -> Self {
        let broker = TestBroker::new().await;
        let database = TestDatabase::new().await;
        let worker = RunningWorker::start_with(&broker, &database.url, extra).await;
        worker.wait_ready().await;
        let db = database.connect().await;
        Self {
            broker,
            database,
            db,
            worker,
        }
    }
}

pub async fn event_rows(db: &DatabaseConnection) -> u64 {
    message_status_event::Entity::find()
        .count(db)
        .await
        .unwrap()
}

pub async fn wait_for_event_rows(db: &DatabaseConnection, expected: u64) {
    wait_for(
        &format!("{expected} event rows"),
        Duration::from_secs(60),
        || async {
            let rows = event_rows(db).await;
            assert!(
                rows <= expected,
                "more rows than callbacks: {rows} > {expected}"
            );
            (rows == expected).then_some(())
        },
    )
    .await;
}

pub async fn message_row(db: &DatabaseConnection, sid: &str) -> message::Model {
    message::Entity::find_by_id(sid.to_owned())
        .one(db)
        .await
        .unwrap()
        .unwrap()
}

/// Waits until the main and retry queues are empty and nothing is in flight.
pub async fn wait_until_drained(broker: &TestBroker) {
    let mut queues = vec![broker.topology.main_queue()];
    queues.extend(broker.topology.retry_queues());
    wait_for("the queues to drain", Duration::from_secs(60), || async {
        for queue in &queues {
            if broker.ready_count(queue).await > 0 {
                return None;
            }
        }
        Some(())
    })
    .await;
}

pub async fn execute(db: &DatabaseConnection, sql: &str) {
    db.execute_unprepared(sql).await.unwrap();
}

pub fn at(second: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(1_800_000_000 + second, 0).unwrap()
}

/// Starts ingest in-process on `broker`'s topology and waits until it is
/// ready; returns its base URL. Without a spool: these tests are about the
/// pipeline (ingest's own tests cover the spool).
pub async fn start_ingest(broker: &TestBroker) -> String {
    let amqp_url = testkit::amqp_url();
    let mut config =
        ingest::config::IngestConfig::try_from(ingest::config::IngestArgs::parse_from([
            "ingest",
            "--auth-token",
            testkit::TEST_TOKEN,
            "--addr",
            "127.0.0.1:0",
            "--amqp-url",
            &amqp_url,
            "--spool-max-bytes",
            "0",
        ]))
        .unwrap();
    config.topology = broker.topology.clone();
    let ingest = ingest::app::Application::build(config).unwrap();
    let address = format!("http://127.0.0.1:{}", ingest.port());
    tokio::spawn(ingest.run_until_stopped(std::future::pending()));
    let readyz = format!("{address}/readyz");
    wait_for("ingest to be ready", Duration::from_secs(30), || async {
        let status = reqwest::get(&readyz).await.ok()?.status();
        (status == 200).then_some(())
    })
    .await;
    address
}
