//! Scale-out: a real three-node RabbitMQ cluster (testkit's harness, on
//! private ports; the machine's own RabbitMQ is untouched), two ingests and
//! two workers given every node's URL, a node lost under load, then the
//! exact accounting: every 2xx stored exactly once, nothing duplicated,
//! nothing dead-lettered, the retry queues drained. Each measures the time
//! from the fault to full service (both ingests publishing, both workers
//! consuming).

use crate::accounting::{
    account, callbacks, drive, reached, wait_until_stored, CallbackId, LoadResult,
};
use crate::processes::{ingest_binary, ingest_env, worker_binary, worker_env_on, Service};
use queue_wire::topology::Topology;
use sea_orm::{ConnectionTrait, DatabaseConnection};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::cluster::Cluster;
use testkit::{wait_for, TestBroker, TestDatabase};
use tokio::task::JoinHandle;

struct ClusterRig {
    cluster: Arc<Cluster>,
    broker: TestBroker,
    database: TestDatabase,
    db: DatabaseConnection,
    spools: [tempfile::TempDir; 2],
    /// The workers' retry delays (their retry queues' names).
    retry_delays: &'static str,
}

impl ClusterRig {
    async fn new(retry_delays: &'static str) -> Self {
        let cluster = Arc::new(
            tokio::task::spawn_blocking(|| Cluster::start(3))
                .await
                .unwrap(),
        );
        let broker = TestBroker::on(&cluster.amqp_urls()).await;
        let (database, db) = crate::rig::migrated_database().await;
        Self {
            cluster,
            broker,
            database,
            db,
            spools: [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()],
            retry_delays,
        }
    }

    fn prefix(&self) -> &str {
        self.broker.topology.prefix()
    }

    /// Every node's URL, starting with node `first`: each service starts on
    /// a different node, and knows them all.
    fn urls_from(&self, first: usize) -> String {
        let nodes = &self.cluster.nodes;
        (0..nodes.len())
            .map(|i| nodes[(first + i) % nodes.len()].amqp_url())
            .collect::<Vec<_>>()
            .join(",")
    }

    async fn ingest(&self, n: usize) -> Service {
        let env = ingest_env(self.prefix(), &self.urls_from(n), self.spools[n].path());
        let ingest = Service::start("ingest", ingest_binary(), &env);
        ingest.wait_ready().await;
        ingest
    }

    async fn worker(&self, n: usize) -> Service {
        let mut env = worker_env_on(self.prefix(), &self.database.url, &self.urls_from(n + 1));
        env.retain(|(key, _)| *key != "WORKER_RETRY_DELAYS_MS");
        env.push(("WORKER_RETRY_DELAYS_MS", self.retry_delays.to_owned()));
        let worker = Service::start("worker", worker_binary(), &env);
        worker.wait_ready().await;
        worker
    }

    fn topology(&self) -> Topology {
        let delays = self
            .retry_delays
            .split(',')
            .map(|ms| Duration::from_millis(ms.parse().unwrap()))
            .collect();
        Topology::new(self.prefix()).with_retry_delays(delays)
    }

    async fn leader_of(&self, queue: String) -> String {
        let cluster = self.cluster.clone();
        tokio::task::spawn_blocking(move || cluster.leader_of(&queue))
            .await
            .unwrap()
    }

    async fn ready_messages(&self, queue: String) -> Option<u64> {
        let cluster = self.cluster.clone();
        tokio::task::spawn_blocking(move || cluster.ready_messages(&queue))
            .await
            .unwrap()
    }

    async fn on_cluster(&self, act: impl FnOnce(&Cluster) + Send + 'static) {
        let cluster = self.cluster.clone();
        tokio::task::spawn_blocking(move || act(&cluster))
            .await
            .unwrap();
    }

    /// Reports the traffic's answers and the recovery time, then asserts
    /// every callback answered 2xx and the exact accounting.
    async fn account_for(&self, traffic: SplitTraffic, scenario: &str, recovered: Duration) {
        let (load, all) = traffic.finished().await;
        println!(
            "{scenario}: full service again after {recovered:?}; {}",
            load.summary()
        );
        assert!(
            load.refused.is_empty(),
            "{scenario}: every callback answered 2xx; not: {:?}",
            load.refusals
        );
        self.assert_exact(&load, &all, scenario).await;
    }

    /// Every accepted callback stored, the main and retry queues empty (the
    /// counts, asked of a running node, refresh every few seconds: they must
    /// read 0 twice), nothing dead-lettered; then the exact accounting.
    async fn assert_exact(&self, load: &LoadResult, all: &[CallbackId], scenario: &str) {
        wait_until_stored(&self.db, load, Duration::from_secs(180)).await;
        let topology = self.topology();
        let mut queues = vec![topology.main_queue()];
        queues.extend(topology.retry_queues());
        for _ in 0..2 {
            wait_for("queues to drain", Duration::from_secs(120), || async {
                for queue in &queues {
                    if self.ready_messages(queue.clone()).await != Some(0) {
                        return None;
                    }
                }
                Some(())
            })
            .await;
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        assert_eq!(
            self.ready_messages(topology.dead_letter_queue()).await,
            Some(0),
            "{scenario}: nothing may be dead-lettered"
        );
        account(&self.db, load, all).await.assert_exact(scenario);
    }
}

/// Callbacks sent to two ingests (half each) in the background.
struct SplitTraffic {
    all: Vec<CallbackId>,
    running: [JoinHandle<LoadResult>; 2],
}

impl SplitTraffic {
    /// `messages` messages (three callbacks each) at `per_second` in all;
    /// returns once `sent_before_return` callbacks have gone out.
    async fn start(
        ingests: [&Service; 2],
        messages: u64,
        per_second: u32,
        sent_before_return: usize,
    ) -> Self {
        let all = callbacks(messages);
        let progress = Arc::new(AtomicUsize::new(0));
        let first: Vec<CallbackId> = all.iter().step_by(2).cloned().collect();
        let second: Vec<CallbackId> = all.iter().skip(1).step_by(2).cloned().collect();
        let running = [
            tokio::spawn(drive(
                ingests[0].url(),
                first,
                16,
                Some(per_second / 2),
                progress.clone(),
            )),
            tokio::spawn(drive(
                ingests[1].url(),
                second,
                16,
                Some(per_second / 2),
                progress.clone(),
            )),
        ];
        reached(&progress, sent_before_return).await;
        Self { all, running }
    }

    async fn finished(self) -> (LoadResult, Vec<CallbackId>) {
        let [first, second] = self.running;
        let load = first.await.unwrap().merge(second.await.unwrap());
        (load, self.all)
    }
}

async fn readyz_text(service: &Service) -> String {
    match reqwest::get(format!("{}/readyz", service.url())).await {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// How long from `since` until both ingests publish to RabbitMQ again (not
/// only spool) and both workers consume.
async fn time_to_full_service(
    since: Instant,
    ingests: [&Service; 2],
    workers: [&Service; 2],
) -> Duration {
    wait_for("full service", Duration::from_secs(120), || async {
        for ingest in ingests {
            // "ready" or "ready (draining the spool)": RabbitMQ confirms again.
            let text = readyz_text(ingest).await;
            if !text.starts_with("ready") || text.contains("spooling") {
                return None;
            }
        }
        for worker in workers {
            let status = reqwest::get(format!("{}/readyz", worker.url()))
                .await
                .ok()?
                .status();
            if status != 200 {
                return None;
            }
        }
        Some(())
    })
    .await;
    since.elapsed()
}

/// Stops or kills the node leading the main queue a third of the way in.
async fn lose_the_leader(kill: bool, scenario: &str) {
    let rig = ClusterRig::new("200,400").await;
    let ingests = [rig.ingest(0).await, rig.ingest(1).await];
    let workers = [rig.worker(0).await, rig.worker(1).await];
    let traffic = SplitTraffic::start([&ingests[0], &ingests[1]], 1000, 300, 1000).await;
    let leader = rig.leader_of(rig.broker.topology.main_queue()).await;
    let struck = Instant::now();
    let victim = leader.clone();
    rig.on_cluster(move |cluster| {
        if kill {
            cluster.kill(&victim);
        } else {
            cluster.stop(&victim);
        }
    })
    .await;
    let recovered = time_to_full_service(
        struck,
        [&ingests[0], &ingests[1]],
        [&workers[0], &workers[1]],
    )
    .await;
    rig.account_for(traffic, &format!("{scenario} ({leader})"), recovered)
        .await;
}

#[tokio::test]
#[ignore = "runs a three-node RabbitMQ cluster; .ci/run runs it after the parallel suite"]
async fn cluster_main_queue_leader_stopped_under_load() {
    lose_the_leader(false, "cluster: the main queue's leader node stopped").await;
}

#[tokio::test]
#[ignore = "runs a three-node RabbitMQ cluster; .ci/run runs it after the parallel suite"]
async fn cluster_main_queue_leader_killed_under_load() {
    lose_the_leader(true, "cluster: the main queue's leader node SIGKILLed").await;
}

#[tokio::test]
#[ignore = "runs a three-node RabbitMQ cluster; .ci/run runs it after the parallel suite"]
async fn cluster_node_killed_while_retry_queues_hold_messages() {
    let scenario = "cluster: a node SIGKILLed while retry queues hold messages";
    let rig = ClusterRig::new("3000,3000,3000,3000").await;
    // Callbacks of one message in sixteen (SIDs ending in 3) fail until the
    // trigger is dropped: they wait in the retry queues meanwhile.
    rig.db
        .execute_unprepared(
            "CREATE FUNCTION reject_some() RETURNS trigger AS $$ BEGIN \
               IF NEW.message_sid LIKE '%3' THEN RAISE EXCEPTION 'injected failure'; END IF; \
               RETURN NEW; END $$ LANGUAGE plpgsql; \
             CREATE TRIGGER reject_some BEFORE INSERT ON message_status_events \
               FOR EACH ROW EXECUTE FUNCTION reject_some();",
        )
        .await
        .unwrap();
    let ingests = [rig.ingest(0).await, rig.ingest(1).await];
    let workers = [rig.worker(0).await, rig.worker(1).await];
    let traffic = SplitTraffic::start([&ingests[0], &ingests[1]], 1000, 300, 1500).await;
    let retry_queue = rig.topology().retry_queues()[0].clone();
    wait_for(
        "callbacks waiting in a retry queue",
        Duration::from_secs(60),
        || async { (rig.ready_messages(retry_queue.clone()).await.unwrap_or(0) > 0).then_some(()) },
    )
    .await;
    let leader = rig.leader_of(retry_queue).await;
    let struck = Instant::now();
    let victim = leader.clone();
    rig.on_cluster(move |cluster| cluster.kill(&victim)).await;
    rig.db
        .execute_unprepared("DROP TRIGGER reject_some ON message_status_events")
        .await
        .unwrap();
    let recovered = time_to_full_service(
        struck,
        [&ingests[0], &ingests[1]],
        [&workers[0], &workers[1]],
    )
    .await;
    rig.account_for(
        traffic,
        &format!("{scenario} ({leader}, the first retry queue's leader)"),
        recovered,
    )
    .await;
}

#[tokio::test]
#[ignore = "runs a three-node RabbitMQ cluster; .ci/run runs it after the parallel suite"]
async fn cluster_rolling_restart_under_load() {
    let scenario = "cluster: rolling restart, one node at a time";
    let rig = ClusterRig::new("200,400").await;
    let ingests = [rig.ingest(0).await, rig.ingest(1).await];
    let workers = [rig.worker(0).await, rig.worker(1).await];
    // About 40 s of traffic at 150/s: the restarts happen under it.
    let traffic = SplitTraffic::start([&ingests[0], &ingests[1]], 2000, 150, 600).await;
    let started = Instant::now();
    let names: Vec<String> = rig.cluster.nodes.iter().map(|n| n.name.clone()).collect();
    for name in names {
        rig.on_cluster(move |cluster| {
            cluster.stop(&name);
            cluster.restart(&name);
        })
        .await;
    }
    let recovered = time_to_full_service(
        started,
        [&ingests[0], &ingests[1]],
        [&workers[0], &workers[1]],
    )
    .await;
    rig.account_for(
        traffic,
        &format!("{scenario}, all three restarted"),
        recovered,
    )
    .await;
}
