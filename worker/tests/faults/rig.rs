//! What every scenario runs on: a topology, a database, ingest and
//! worker processes, traffic in the background, and the accounting after.

use crate::accounting::{
    account, callbacks, drive, reached, wait_until_stored, CallbackId, LoadResult,
};
use crate::processes::{ingest_binary, ingest_env, worker_binary, worker_env, Service};
use sea_orm::DatabaseConnection;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;
use testkit::{wait_for, TestBroker, TestDatabase};
use tokio::task::JoinHandle;

pub struct Rig {
    pub broker: TestBroker,
    pub database: TestDatabase,
    pub db: DatabaseConnection,
    /// Ingest's spool directory, kept across ingest restarts.
    pub spool: tempfile::TempDir,
}

/// A database of its own, migrated, and a connection to it.
pub async fn migrated_database() -> (TestDatabase, DatabaseConnection) {
    let database = TestDatabase::new().await;
    let db = database.connect().await;
    worker::test_support::store::database::migrate(&db)
        .await
        .unwrap();
    (database, db)
}

impl Rig {
    pub async fn new() -> Self {
        let broker = TestBroker::new().await;
        let (database, db) = migrated_database().await;
        Self {
            broker,
            database,
            db,
            spool: tempfile::tempdir().unwrap(),
        }
    }

    pub fn prefix(&self) -> &str {
        self.broker.topology.prefix()
    }

    pub async fn ingest(&self) -> Service {
        self.ingest_via(&testkit::amqp_url()).await
    }

    /// Ingest reaching RabbitMQ at `amqp_url` (a proxy, say).
    pub async fn ingest_via(&self, amqp_url: &str) -> Service {
        let env = ingest_env(self.prefix(), amqp_url, self.spool.path());
        let ingest = Service::start("ingest", ingest_binary(), &env);
        ingest.wait_ready().await;
        ingest
    }

    pub async fn worker(&self) -> Service {
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
    pub async fn settle(&self, load: &LoadResult) {
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

pub const MESSAGES: u64 = 1000; // 3,000 callbacks

/// Callbacks for `MESSAGES` messages being sent to ingest in the background.
pub struct Traffic {
    all: Vec<CallbackId>,
    running: JoinHandle<LoadResult>,
    progress: Arc<AtomicUsize>,
    /// Callbacks it sends, duplicates included.
    sending: usize,
}

impl Traffic {
    /// Starts sending on `connections` connections (`per_second` paces each),
    /// and returns once `sent_before_return` callbacks have gone out.
    pub async fn start(
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
    pub async fn start_for(
        messages: u64,
        ingest: &Service,
        connections: usize,
        per_second: Option<u32>,
        sent_before_return: impl FnOnce(usize) -> usize,
    ) -> Self {
        let all = callbacks(messages);
        Self::sending(
            all.clone(),
            all,
            ingest,
            connections,
            per_second,
            sent_before_return,
        )
        .await
    }

    /// The same as `start_for`, with every fourth callback sent twice (as
    /// Twilio's retries do), the copies spread through the rest.
    pub async fn with_duplicates(messages: u64, ingest: &Service, connections: usize) -> Self {
        let all = callbacks(messages);
        let mut sent = all.clone();
        for (index, copy) in all.iter().step_by(4).enumerate() {
            sent.insert((index * 5 + 3).min(sent.len()), copy.clone());
        }
        Self::sending(all, sent, ingest, connections, None, |total| total / 3).await
    }

    async fn sending(
        all: Vec<CallbackId>,
        sent: Vec<CallbackId>,
        ingest: &Service,
        connections: usize,
        per_second: Option<u32>,
        sent_before_return: impl FnOnce(usize) -> usize,
    ) -> Self {
        let progress = Arc::new(AtomicUsize::new(0));
        let sending = sent.len();
        let running = tokio::spawn(drive(
            ingest.url(),
            sent,
            connections,
            per_second,
            progress.clone(),
        ));
        reached(&progress, sent_before_return(sending)).await;
        Self {
            all,
            running,
            progress,
            sending,
        }
    }

    /// Waits until `fraction` of the callbacks have been answered.
    pub async fn wait_until_answered(&self, fraction: f64) {
        reached(&self.progress, (self.sending as f64 * fraction) as usize).await;
    }

    /// A third of the way in, at 32 connections, unpaced: where most scenarios strike.
    pub async fn a_third_in(ingest: &Service) -> Self {
        Self::start(ingest, 32, None, |total| total / 3).await
    }

    pub async fn finished(self) -> (LoadResult, Vec<CallbackId>) {
        (self.running.await.unwrap(), self.all)
    }
}

impl Rig {
    /// Everything accepted is stored exactly once and the projection is right.
    pub async fn assert_exact(&self, load: &LoadResult, all: &[CallbackId], scenario: &str) {
        self.settle(load).await;
        account(&self.db, load, all).await.assert_exact(scenario);
    }
}

/// A gauge or counter from a service's /metrics.
pub async fn metric(service: &Service, name: &str) -> Option<f64> {
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

pub async fn readyz_text(service: &Service) -> String {
    match reqwest::get(format!("{}/readyz", service.url())).await {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

pub async fn readyz(service: &Service) -> Option<u16> {
    let status = reqwest::get(format!("{}/readyz", service.url()))
        .await
        .ok()?
        .status();
    Some(status.as_u16())
}
