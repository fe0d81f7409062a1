//! What the services depend on breaking under load (RabbitMQ stopped or
//! out of memory, Postgres down, read-only or on another schema), then an
//! exact accounting.

use crate::rig::*;
use std::process::Command;
use std::time::Duration;
use testkit::wait_for;

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
    println!("RabbitMQ stopped 30 s at 500/s: {}", load.summary());
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
    println!("memory alarm: {}", load.summary());
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
