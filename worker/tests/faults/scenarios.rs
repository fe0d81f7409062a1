//! The scenarios: each breaks something under load, then accounts.

use crate::accounting::{account, callbacks, drive, reached, stored_events, LoadResult};
use crate::processes::{ingest_binary, ingest_env, worker_binary, worker_env, Service};
use sea_orm::DatabaseConnection;
use std::process::Command;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;
use testkit::{wait_for, TestBroker, TestDatabase};

struct Rig {
    broker: TestBroker,
    database: TestDatabase,
    db: DatabaseConnection,
}

impl Rig {
    async fn new() -> Self {
        let broker = TestBroker::new().await;
        let database = TestDatabase::new().await;
        let db = database.connect().await;
        worker::app::migrate(&db).await.unwrap();
        Self {
            broker,
            database,
            db,
        }
    }

    fn prefix(&self) -> &str {
        self.broker.topology.prefix()
    }

    async fn ingest(&self) -> Service {
        let ingest = Service::start("ingest", ingest_binary(), &ingest_env(self.prefix()));
        ingest.wait_ready().await;
        ingest
    }

    async fn worker(&self) -> Service {
        let worker = Service::start(
            "worker",
            worker_binary(),
            &worker_env(self.prefix(), &self.database.url),
        );
        worker.wait_ready().await;
        worker
    }

    /// Waits until every accepted callback is stored and nothing is left in
    /// the main or retry queues, then checks the dead-letter queue is empty.
    async fn settle(&self, load: &LoadResult) {
        wait_for(
            "accepted callbacks to be stored",
            Duration::from_secs(120),
            || async {
                let stored = stored_events(&self.db).await;
                load.accepted
                    .iter()
                    .all(|id| stored.contains_key(id))
                    .then_some(())
            },
        )
        .await;
        let mut queues = vec![self.broker.topology.main_queue()];
        queues.extend(self.broker.topology.retry_queues());
        wait_for("queues to drain", Duration::from_secs(60), || async {
            for queue in &queues {
                if self.broker.ready_count(queue).await > 0 {
                    return None;
                }
            }
            Some(())
        })
        .await;
        // Redeliveries still in flight are the only thing left: give them a moment.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            self.broker
                .ready_count(&self.broker.topology.dead_letter_queue())
                .await,
            0,
            "nothing may be dead-lettered"
        );
    }
}

const MESSAGES: u64 = 1000; // 3,000 callbacks

#[tokio::test]
async fn worker_killed_mid_batch_and_restarted() {
    let rig = Rig::new().await;
    let ingest = rig.ingest().await;
    let worker = rig.worker().await;
    let all = callbacks(MESSAGES);
    let progress = Arc::new(AtomicUsize::new(0));
    let load = tokio::spawn(drive(ingest.url(), all.clone(), 32, None, progress.clone()));
    reached(&progress, all.len() / 3).await;
    worker.kill();
    let _restarted = rig.worker().await;
    let load = load.await.unwrap();
    rig.settle(&load).await;
    account(&rig.db, &load, &all)
        .await
        .assert_exact("worker SIGKILL mid-batch");
}

#[tokio::test]
async fn two_workers_one_killed() {
    let rig = Rig::new().await;
    let ingest = rig.ingest().await;
    let survivor = rig.worker().await;
    let victim = rig.worker().await;
    let all = callbacks(MESSAGES);
    let progress = Arc::new(AtomicUsize::new(0));
    let load = tokio::spawn(drive(ingest.url(), all.clone(), 32, None, progress.clone()));
    reached(&progress, all.len() / 3).await;
    victim.kill();
    let load = load.await.unwrap();
    rig.settle(&load).await;
    account(&rig.db, &load, &all)
        .await
        .assert_exact("two workers, one SIGKILLed");
    drop(survivor);
}

#[tokio::test]
async fn ingest_stopped_under_load() {
    let rig = Rig::new().await;
    let ingest = rig.ingest().await;
    let _worker = rig.worker().await;
    let all = callbacks(MESSAGES);
    let progress = Arc::new(AtomicUsize::new(0));
    let load = tokio::spawn(drive(ingest.url(), all.clone(), 32, None, progress.clone()));
    reached(&progress, all.len() / 3).await;
    assert_eq!(ingest.terminate(), Some(0), "ingest exits 0 on SIGTERM");
    let load = load.await.unwrap();
    assert!(
        !load.refused.is_empty(),
        "requests after the stop must fail"
    );
    rig.settle(&load).await;
    account(&rig.db, &load, &all)
        .await
        .assert_exact("ingest SIGTERM under load");
}

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program).args(args).status().unwrap();
    assert!(status.success(), "{program} {args:?}");
}

fn postgres_cluster() -> (String, String) {
    let versions = std::fs::read_dir("/etc/postgresql").expect("Debian's PostgreSQL layout");
    let version = versions
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .next()
        .expect("a PostgreSQL cluster");
    (version, "main".to_owned())
}

#[tokio::test]
#[ignore = "restarts the machine's RabbitMQ; .ci/run runs it after the parallel suite"]
async fn rabbitmq_restarted_under_load() {
    let mut rig = Rig::new().await;
    let ingest = rig.ingest().await;
    let worker = rig.worker().await;
    let all = callbacks(MESSAGES);
    let progress = Arc::new(AtomicUsize::new(0));
    let load = tokio::spawn(drive(
        ingest.url(),
        all.clone(),
        32,
        Some(300),
        progress.clone(),
    ));
    reached(&progress, all.len() / 3).await;
    run("rabbitmqctl", &["stop_app"]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    run("rabbitmqctl", &["start_app"]);
    run("rabbitmqctl", &["await_startup"]);
    rig.broker.reconnect().await;
    let load = load.await.unwrap();
    ingest.wait_ready().await;
    worker.wait_ready().await;
    assert!(
        !load.refused.is_empty(),
        "some callbacks must have met the restart"
    );
    rig.settle(&load).await;
    account(&rig.db, &load, &all)
        .await
        .assert_exact("RabbitMQ restarted under load");
}

#[tokio::test]
#[ignore = "stops the machine's Postgres for 30 s; .ci/run runs it after the parallel suite"]
async fn postgres_down_for_30_seconds_under_load() {
    let rig = Rig::new().await;
    let ingest = rig.ingest().await;
    let worker = rig.worker().await;
    let all = callbacks(MESSAGES);
    let progress = Arc::new(AtomicUsize::new(0));
    // About 50 s of traffic, so callbacks keep arriving through the outage.
    let load = tokio::spawn(drive(
        ingest.url(),
        all.clone(),
        16,
        Some(60),
        progress.clone(),
    ));
    reached(&progress, 600).await;
    let (version, cluster) = postgres_cluster();
    run(
        "pg_ctlcluster",
        &[
            "--skip-systemctl-redirect",
            &version,
            &cluster,
            "stop",
            "-m",
            "fast",
        ],
    );
    wait_for("the worker to notice", Duration::from_secs(30), || async {
        let status = reqwest::get(format!("{}/readyz", worker.url()))
            .await
            .ok()?
            .status();
        (status == 503).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    run(
        "pg_ctlcluster",
        &["--skip-systemctl-redirect", &version, &cluster, "start"],
    );
    let load = load.await.unwrap();
    assert!(
        load.refused.is_empty(),
        "ingest never touches the database: {} refused",
        load.refused.len()
    );
    worker.wait_ready().await;
    rig.settle(&load).await;
    account(&rig.db, &load, &all)
        .await
        .assert_exact("Postgres down 30 s under load");
}
