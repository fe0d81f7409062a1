//! The scenarios: each breaks something under load, then accounts.

use crate::accounting::{
    account, callbacks, drive, reached, wait_until_stored, CallbackId, LoadResult,
};
use crate::processes::{ingest_binary, ingest_env, worker_binary, worker_env, Service};
use sea_orm::DatabaseConnection;
use std::process::Command;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;
use testkit::{wait_for, TestBroker, TestDatabase};
use tokio::task::JoinHandle;

struct Rig {
    broker: TestBroker,
    database: TestDatabase,
    db: DatabaseConnection,
    /// Ingest's spool directory, kept across ingest restarts.
    spool: tempfile::TempDir,
}

impl Rig {
    async fn new() -> Self {
        let broker = TestBroker::new().await;
        let database = TestDatabase::new().await;
        let db = database.connect().await;
        worker::store::database::migrate(&db).await.unwrap();
        Self {
            broker,
            database,
            db,
            spool: tempfile::tempdir().unwrap(),
        }
    }

    fn prefix(&self) -> &str {
        self.broker.topology.prefix()
    }

    async fn ingest(&self) -> Service {
        self.ingest_via(&testkit::amqp_url()).await
    }

    /// Ingest reaching RabbitMQ at `amqp_url` (a proxy, say).
    async fn ingest_via(&self, amqp_url: &str) -> Service {
        let env = ingest_env(self.prefix(), amqp_url, self.spool.path());
        let ingest = Service::start("ingest", ingest_binary(), &env);
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
        wait_until_stored(&self.db, load, Duration::from_secs(120)).await;
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

/// Callbacks for `MESSAGES` messages being sent to ingest in the background.
struct Traffic {
    all: Vec<CallbackId>,
    running: JoinHandle<LoadResult>,
}

impl Traffic {
    /// Starts sending on `connections` connections (`per_second` paces each),
    /// and returns once `sent_before_return` callbacks have gone out.
    async fn start(
        ingest: &Service,
        connections: usize,
        per_second: Option<u32>,
        sent_before_return: impl FnOnce(usize) -> usize,
    ) -> Self {
        Self::start_for(
            MESSAGES,
            ingest,
            connections,
            per_second,
            sent_before_return,
        )
        .await
    }

    /// The same for `messages` messages (three callbacks each).
    async fn start_for(
        messages: u64,
        ingest: &Service,
        connections: usize,
        per_second: Option<u32>,
        sent_before_return: impl FnOnce(usize) -> usize,
    ) -> Self {
        let all = callbacks(messages);
        let progress = Arc::new(AtomicUsize::new(0));
        let running = tokio::spawn(drive(
            ingest.url(),
            all.clone(),
            connections,
            per_second,
            progress.clone(),
        ));
        reached(&progress, sent_before_return(all.len())).await;
        Self { all, running }
    }

    /// A third of the way in, at 32 connections, unpaced: where most scenarios strike.
    async fn a_third_in(ingest: &Service) -> Self {
        Self::start(ingest, 32, None, |total| total / 3).await
    }

    async fn finished(self) -> (LoadResult, Vec<CallbackId>) {
        (self.running.await.unwrap(), self.all)
    }
}

impl Rig {
    /// Everything accepted is stored exactly once and the projection is right.
    async fn assert_exact(&self, load: &LoadResult, all: &[CallbackId], scenario: &str) {
        self.settle(load).await;
        account(&self.db, load, all).await.assert_exact(scenario);
    }
}

#[tokio::test]
async fn worker_killed_mid_batch_and_restarted() {
    let rig = Rig::new().await;
    let ingest = rig.ingest().await;
    let worker = rig.worker().await;
    let traffic = Traffic::a_third_in(&ingest).await;
    worker.kill();
    let _restarted = rig.worker().await;
    let (load, all) = traffic.finished().await;
    rig.assert_exact(&load, &all, "worker SIGKILL mid-batch")
        .await;
}

#[tokio::test]
async fn two_workers_one_killed() {
    let rig = Rig::new().await;
    let ingest = rig.ingest().await;
    let survivor = rig.worker().await;
    let victim = rig.worker().await;
    let traffic = Traffic::a_third_in(&ingest).await;
    victim.kill();
    let (load, all) = traffic.finished().await;
    rig.assert_exact(&load, &all, "two workers, one SIGKILLed")
        .await;
    drop(survivor);
}

#[tokio::test]
async fn ingest_killed_while_spooling_and_restarted() {
    let rig = Rig::new().await;
    let uri: lapin::uri::AMQPUri = testkit::amqp_url().parse().unwrap();
    let proxy =
        testkit::ToggleProxy::start(&format!("{}:{}", uri.authority.host, uri.authority.port))
            .await;
    let via_proxy = format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port);
    let ingest = rig.ingest_via(&via_proxy).await;
    let _worker = rig.worker().await;
    let traffic = Traffic::start(&ingest, 16, Some(300), |total| total / 4).await;
    proxy.cut();
    wait_for(
        "callbacks in the spool",
        Duration::from_secs(30),
        || async { (metric(&ingest, "ingest_spool_callbacks").await? >= 100.0).then_some(()) },
    )
    .await;
    // Kill ingest with a full spool and no chance to drain it.
    ingest.kill();
    proxy.restore();
    // The same spool directory, a new process (on a new port: the rest of
    // the traffic meets a closed port and counts as refused).
    let _restarted = rig.ingest_via(&via_proxy).await;
    let (load, all) = traffic.finished().await;
    assert!(!load.accepted.is_empty());
    rig.assert_exact(&load, &all, "ingest SIGKILLed while spooling, restarted")
        .await;
}

#[tokio::test]
async fn ingest_stopped_under_load() {
    let rig = Rig::new().await;
    let ingest = rig.ingest().await;
    let _worker = rig.worker().await;
    let traffic = Traffic::a_third_in(&ingest).await;
    assert_eq!(ingest.terminate(), Some(0), "ingest exits 0 on SIGTERM");
    let (load, all) = traffic.finished().await;
    assert!(
        !load.refused.is_empty(),
        "requests after the stop must fail"
    );
    rig.assert_exact(&load, &all, "ingest SIGTERM under load")
        .await;
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
#[ignore = "stops the machine's RabbitMQ for 30 s; .ci/run runs it after the parallel suite"]
async fn rabbitmq_stopped_for_30_seconds_under_load() {
    let mut rig = Rig::new().await;
    let ingest = rig.ingest().await;
    let worker = rig.worker().await;
    // 8,000 messages at 500 callbacks/s: about 48 s of traffic, so callbacks
    // keep arriving through the whole outage.
    let traffic = Traffic::start_for(8000, &ingest, 32, Some(500), |_| 3000).await;
    run("rabbitmqctl", &["stop_app"]);
    tokio::time::sleep(Duration::from_secs(30)).await;
    run("rabbitmqctl", &["start_app"]);
    run("rabbitmqctl", &["await_startup"]);
    rig.broker.reconnect().await;
    let (load, all) = traffic.finished().await;
    ingest.wait_ready().await;
    worker.wait_ready().await;
    println!(
        "RabbitMQ stopped 30 s at 500/s: {} sent, {} answered 2xx, p99 {:?}, slowest {:?}",
        load.sent,
        load.accepted.len(),
        load.p99,
        load.slowest
    );
    assert!(
        load.refused.is_empty(),
        "every callback answered 2xx (the spool takes what RabbitMQ cannot): {} refused",
        load.refused.len()
    );
    rig.assert_exact(&load, &all, "RabbitMQ stopped 30 s under load")
        .await;
}

#[tokio::test]
#[ignore = "stops the machine's Postgres for 30 s; .ci/run runs it after the parallel suite"]
async fn postgres_down_for_30_seconds_under_load() {
    let rig = Rig::new().await;
    let ingest = rig.ingest().await;
    let worker = rig.worker().await;
    // About 50 s of traffic, so callbacks keep arriving through the outage.
    let traffic = Traffic::start(&ingest, 16, Some(60), |_| 600).await;
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
    let (load, all) = traffic.finished().await;
    assert!(
        load.refused.is_empty(),
        "ingest never touches the database: {} refused",
        load.refused.len()
    );
    worker.wait_ready().await;
    rig.assert_exact(&load, &all, "Postgres down 30 s under load")
        .await;
}

/// An upgrade's schema change under load: a column the store statement
/// writes is renamed for 20 s while 30 callbacks/s stream in. The worker
/// holds (schema mismatch, not a bad message): nothing is dead-lettered and
/// every callback answered 2xx is stored once the schema fits again.
#[tokio::test]
async fn schema_changed_for_20_seconds_under_load() {
    use sea_orm::ConnectionTrait;
    let rig = Rig::new().await;
    let ingest = rig.ingest().await;
    let worker = rig.worker().await;
    // 300 messages, 900 callbacks at 3 × 10/s: about 30 s of traffic.
    let traffic = Traffic::start_for(300, &ingest, 3, Some(10), |_| 150).await;
    rig.db
        .execute_unprepared("ALTER TABLE messages RENAME COLUMN to_address TO to_address_v2")
        .await
        .unwrap();
    wait_for("the worker to hold", Duration::from_secs(30), || async {
        readyz_text(&worker)
            .await
            .contains("schema_mismatch")
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    rig.db
        .execute_unprepared("ALTER TABLE messages RENAME COLUMN to_address_v2 TO to_address")
        .await
        .unwrap();
    let (load, all) = traffic.finished().await;
    assert!(load.refused.is_empty(), "{} refused", load.refused.len());
    worker.wait_ready().await;
    rig.assert_exact(&load, &all, "a column renamed for 20 s under load")
        .await;
}

/// Restores RabbitMQ's memory watermark when dropped, even on a failed assertion.
struct MemoryAlarm {
    previous: String,
}

impl MemoryAlarm {
    /// A memory alarm on demand: every publishing connection gets blocked.
    fn raise() -> Self {
        let output = Command::new("rabbitmqctl")
            .args(["eval", "vm_memory_monitor:get_vm_memory_high_watermark()."])
            .output()
            .unwrap();
        let answer = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        // A plain fraction; anything else (an absolute limit) falls back to the default.
        let previous = if answer.parse::<f64>().is_ok_and(|f| f > 0.0 && f < 1.0) {
            answer
        } else {
            "0.4".to_owned()
        };
        run("rabbitmqctl", &["set_vm_memory_high_watermark", "0.000001"]);
        Self { previous }
    }
}

impl Drop for MemoryAlarm {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["set_vm_memory_high_watermark", &self.previous])
            .status();
    }
}

/// A gauge or counter from a service's /metrics.
async fn metric(service: &Service, name: &str) -> Option<f64> {
    let text = reqwest::get(format!("{}/metrics", service.url()))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

async fn readyz_text(service: &Service) -> String {
    match reqwest::get(format!("{}/readyz", service.url())).await {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

async fn readyz(service: &Service) -> Option<u16> {
    let status = reqwest::get(format!("{}/readyz", service.url()))
        .await
        .ok()?
        .status();
    Some(status.as_u16())
}

#[tokio::test]
#[ignore = "raises a memory alarm on the machine's RabbitMQ; .ci/run runs it after the parallel suite"]
async fn memory_alarm_under_load() {
    let rig = Rig::new().await;
    let ingest = rig.ingest().await;
    let worker = rig.worker().await;
    let traffic = Traffic::start(&ingest, 16, Some(300), |total| total / 3).await;
    let alarm = MemoryAlarm::raise();
    wait_for(
        "ingest to start spooling",
        Duration::from_secs(30),
        || async {
            readyz_text(&ingest)
                .await
                .contains("spooling")
                .then_some(())
        },
    )
    .await;
    // The worker's acks are not publishes: what reached the main queue before
    // the alarm is stored and acked while it lasts.
    let main_queue = rig.broker.topology.main_queue();
    wait_for(
        "the backlog to drain under the alarm",
        Duration::from_secs(30),
        || async { (rig.broker.ready_count(&main_queue).await == 0).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    drop(alarm);
    let (load, all) = traffic.finished().await;
    ingest.wait_ready().await;
    worker.wait_ready().await;
    assert!(
        load.refused.is_empty(),
        "every callback answered 2xx (from the spool while blocked): {} refused",
        load.refused.len()
    );
    assert!(
        load.slowest < Duration::from_secs(10),
        "every answer within 10 s, slowest {:?}",
        load.slowest
    );
    println!(
        "memory alarm: {} answered 2xx, p99 {:?}, slowest {:?}",
        load.accepted.len(),
        load.p99,
        load.slowest
    );
    rig.assert_exact(&load, &all, "RabbitMQ memory alarm under load")
        .await;
}

#[tokio::test]
#[ignore = "terminates database sessions; .ci/run runs it after the parallel suite"]
async fn database_read_only_for_15_seconds_under_load() {
    use sea_orm::ConnectionTrait;
    let rig = Rig::new().await;
    let ingest = rig.ingest().await;
    let worker = rig.worker().await;
    let traffic = Traffic::start(&ingest, 16, Some(100), |total| total / 4).await;
    let admin = sea_orm::Database::connect(format!("{}/postgres", testkit::postgres_server_url()))
        .await
        .unwrap();
    let set_read_only = |on: bool| {
        let name = rig.database.name.clone();
        let admin = &admin;
        async move {
            let value = if on { "on" } else { "off" };
            admin
                .execute_unprepared(&format!(
                    "ALTER DATABASE {name} SET default_transaction_read_only = {value}; \
                     SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE datname = '{name}' AND pid <> pg_backend_pid();"
                ))
                .await
                .unwrap();
        }
    };
    set_read_only(true).await;
    wait_for("the worker to notice", Duration::from_secs(30), || async {
        (readyz(&worker).await == Some(503)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(15)).await;
    set_read_only(false).await;
    let (load, all) = traffic.finished().await;
    assert!(load.refused.is_empty(), "ingest never touches the database");
    worker.wait_ready().await;
    let db = rig.database.connect().await;
    let rig = Rig { db, ..rig };
    rig.assert_exact(&load, &all, "database read-only 15 s under load")
        .await;
}
