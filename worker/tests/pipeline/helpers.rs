use clap::Parser;
use sea_orm::{ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait};
use std::time::Duration;
use testkit::{wait_for, TestBroker, TestDatabase};
use worker::app::{Application, ShutdownHandle};
use worker::config::{CommonConfig, WorkerCli, WorkerConfig};
use worker::test_support::entity::{message, message_status_event};

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
        Self::start_tuned(broker, database_url, extra, |_| {}).await
    }

    /// Same, and `tune` changes the settings that have no flag (constants
    /// in production) before the worker starts. Smaller batches and
    /// prefetch than production's unless `tune` says otherwise.
    pub async fn start_tuned(
        broker: &TestBroker,
        database_url: &str,
        extra: &[&str],
        tune: impl FnOnce(&mut WorkerConfig),
    ) -> Self {
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
        if !extra.contains(&"--addr") {
            argv.extend(["--addr", "127.0.0.1:0"]);
        }
        argv.extend_from_slice(extra);
        let cli = WorkerCli::parse_from(argv);
        let mut common = CommonConfig::try_from(cli.common).unwrap();
        common.topology = broker.topology.clone();
        let mut config = WorkerConfig::new(common, cli.consume).unwrap();
        config.prefetch = 64;
        config.max_batch = 32;
        tune(&mut config);
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
        Self::start_tuned(extra, |_| {}).await
    }

    /// Same, with settings that have no flag changed by `tune`.
    pub async fn start_tuned(extra: &[&str], tune: impl FnOnce(&mut WorkerConfig)) -> Self {
        let broker = TestBroker::new().await;
        let database = TestDatabase::new().await;
        let worker = RunningWorker::start_tuned(&broker, &database.url, extra, tune).await;
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

impl TestPipeline {
    /// `GET /messages/{sid}`, which must answer 200.
    pub async fn message_view(&self, sid: &str) -> serde_json::Value {
        let response = reqwest::get(format!("{}/messages/{sid}", self.worker.address))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }
}

/// The statuses of a message view's history, in its order.
pub fn event_statuses(view: &serde_json::Value) -> Vec<&str> {
    view["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect()
}

pub async fn dead_letters(
    broker: &TestBroker,
) -> Vec<worker::test_support::dlq::DeadLetterSummary> {
    worker::test_support::dlq::list(
        &testkit::amqp_url(),
        &broker.topology,
        &worker::test_support::dlq::LetterFilter::default(),
    )
    .await
    .unwrap()
}

pub async fn wait_for_dead_letters(broker: &TestBroker, expected: u32) {
    let queue = broker.topology.dead_letter_queue();
    wait_for(
        &format!("{expected} dead letters"),
        Duration::from_secs(30),
        || async { (broker.ready_count(&queue).await == expected).then_some(()) },
    )
    .await;
}

pub async fn assert_nothing_retried_or_dead_lettered(broker: &TestBroker) {
    assert_eq!(
        broker
            .ready_count(&broker.topology.dead_letter_queue())
            .await,
        0
    );
    for queue in broker.topology.retry_queues() {
        assert_eq!(broker.ready_count(&queue).await, 0, "{queue}");
    }
}

/// Makes every insert of `doomed`'s events fail ('injected failure'), as a
/// callback the database refuses would.
pub async fn reject_inserts_of(db: &DatabaseConnection, doomed: &str) {
    execute(
        db,
        &format!(
            "CREATE FUNCTION reject_doomed() RETURNS trigger AS $$ BEGIN \
               IF NEW.message_sid = '{doomed}' THEN RAISE EXCEPTION 'injected failure'; END IF; \
               RETURN NEW; END $$ LANGUAGE plpgsql; \
             CREATE TRIGGER reject_doomed BEFORE INSERT ON message_status_events \
               FOR EACH ROW EXECUTE FUNCTION reject_doomed();"
        ),
    )
    .await;
}

/// Undoes `reject_inserts_of`, then replays the dead-letter queue, which
/// must hold exactly the one letter.
pub async fn accept_inserts_and_replay(pipeline: &TestPipeline) {
    execute(
        &pipeline.db,
        "DROP TRIGGER reject_doomed ON message_status_events",
    )
    .await;
    let replayed = worker::test_support::dlq::replay(
        &testkit::amqp_url(),
        &pipeline.broker.topology,
        &worker::test_support::dlq::LetterFilter::default(),
        None,
    )
    .await
    .unwrap();
    assert_eq!(replayed, 1);
}

/// `doomed`'s one dead letter, after a try per retry delay and the first,
/// failed for the injected reason (`reject_inserts_of`).
pub async fn the_exhausted_letter_of(
    broker: &TestBroker,
    doomed: &str,
) -> worker::test_support::dlq::DeadLetterSummary {
    let mut letters = dead_letters(broker).await;
    assert_eq!(letters.len(), 1);
    let letter = letters.remove(0);
    assert_eq!(letter.message_sid.as_deref(), Some(doomed));
    // First try plus one per retry delay.
    assert_eq!(
        letter.attempts as usize,
        broker.topology.retry_delays().len() + 1
    );
    assert!(
        letter.reason.contains("injected failure"),
        "{}",
        letter.reason
    );
    letter
}
