//! The durable spool, with real files and the real RabbitMQ: callbacks
//! RabbitMQ cannot confirm are answered 200 once on disk, drained exactly
//! once when it is back, survive a SIGKILL, and a spool that cannot take
//! them gives 503, never a 200 that was not written.

use crate::helpers::{Options, TestApp};
use futures_util::stream::{self, StreamExt};
use queue_wire::envelope::{BodyKind, CallbackEnvelope};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use testkit::{message_sid, post_signed, status_params, wait_for, TestBroker, ToggleProxy};

/// The broker's host:port, for a proxy in front of it.
fn broker_address() -> String {
    let uri: lapin::uri::AMQPUri = testkit::amqp_url().parse().unwrap();
    format!("{}:{}", uri.authority.host, uri.authority.port)
}

fn amqp_url_via(port: u16) -> String {
    format!("amqp://guest:guest@127.0.0.1:{port}/%2f")
}

/// Sends `count` callbacks (SIDs from `first`) at once; returns the statuses.
async fn send(app_address: &str, first: u64, count: u64) -> Vec<u16> {
    let client = reqwest::Client::new();
    stream::iter(first..first + count)
        .map(|n| {
            let client = client.clone();
            let address = app_address.to_owned();
            async move {
                let params = status_params(&message_sid(n), "delivered", None);
                post_signed(&client, &address, &params)
                    .await
                    .status()
                    .as_u16()
            }
        })
        .buffer_unordered(16)
        .collect()
        .await
}

/// The MessageSids of callbacks taken off the main queue, each once.
async fn wait_for_queued_sids(broker: &TestBroker, expected: usize) -> Vec<String> {
    let sids = std::sync::Mutex::new(Vec::new());
    wait_for(
        &format!("{expected} callbacks in the queue"),
        Duration::from_secs(60),
        || {
            let sids = &sids;
            async move {
                for (properties, data) in broker.take_all(&broker.topology.main_queue()).await {
                    let message =
                        queue_wire::batch::QueueMessage::decode(&properties, data).unwrap();
                    let envelopes = match message {
                        queue_wire::batch::QueueMessage::Single(e) => vec![e],
                        queue_wire::batch::QueueMessage::Batch(e) => e,
                    };
                    for envelope in envelopes {
                        let params =
                            twilio_protocol::form::FormParams::parse(&envelope.body).unwrap();
                        sids.lock()
                            .unwrap()
                            .push(params.get("MessageSid").unwrap().to_owned());
                    }
                }
                (sids.lock().unwrap().len() >= expected).then_some(())
            }
        },
    )
    .await;
    sids.into_inner().unwrap()
}

fn assert_each_once(sids: &[String], first: u64, count: u64) {
    let distinct: BTreeSet<&String> = sids.iter().collect();
    assert_eq!(sids.len(), distinct.len(), "a callback was queued twice");
    let expected: BTreeSet<String> = (first..first + count).map(message_sid).collect();
    let got: BTreeSet<String> = sids.iter().cloned().collect();
    assert_eq!(got, expected);
}

#[tokio::test]
async fn callbacks_are_spooled_while_the_broker_is_away_and_drained_once_when_it_is_back() {
    let proxy = ToggleProxy::start(&broker_address()).await;
    let app = TestApp::spawn_with(Options {
        amqp_url: Some(amqp_url_via(proxy.port)),
        ..Options::default()
    })
    .await;
    app.wait_broker_ready().await;
    proxy.cut();
    wait_for("ingest to notice", Duration::from_secs(30), || async {
        (app.readyz_text().await != "ready").then_some(())
    })
    .await;

    let statuses = send(&app.address, 1, 40).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(app.readyz().await, 200, "the spool still accepts");
    assert!(app.readyz_text().await.contains("spooling"));
    assert!(app.spool_segments() > 0, "on disk before the 200");
    assert_eq!(app.queued().await, 0, "nothing reached RabbitMQ yet");

    proxy.restore();
    let sids = wait_for_queued_sids(&app.broker, 40).await;
    assert_each_once(&sids, 1, 40);
    wait_for(
        "the drained segments to go",
        Duration::from_secs(30),
        || async { (app.spool_segments() == 0).then_some(()) },
    )
    .await;
    // Nothing more arrives later.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.queued_callbacks().await.len(), 0);
}

#[tokio::test]
async fn a_full_spool_gives_503_and_claims_nothing_it_did_not_write() {
    // Room for a few records only; RabbitMQ unreachable throughout.
    let app = TestApp::spawn_with(Options {
        amqp_url: Some("amqp://guest:guest@127.0.0.1:1/%2f".to_owned()),
        extra_args: vec!["--spool-max-bytes", "2000"],
        ..Options::default()
    })
    .await;
    let mut statuses = Vec::new();
    for n in 1..=20 {
        statuses.extend(send(&app.address, n, 1).await);
    }
    let accepted = statuses.iter().filter(|s| **s == 200).count();
    assert!(accepted > 0 && accepted < 20, "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 503),
        "{statuses:?}"
    );
    // Every 200 is a record on disk, and nothing else is.
    let dir = app.spool.as_ref().unwrap().path();
    assert_eq!(spooled_sids(dir).len(), accepted);
    assert_eq!(app.readyz().await, 503, "full, and RabbitMQ away");
}

/// The MessageSids in a spool directory's intact records.
fn spooled_sids(dir: &Path) -> Vec<String> {
    let mut sids = Vec::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "spool"))
        .collect();
    paths.sort();
    for path in paths {
        for payload in ingest::spool::segment::read(&path).unwrap().payloads {
            let queue_wire::batch::QueueMessage::Batch(envelopes) =
                ingest::spool::decode_payload(&payload).unwrap()
            else {
                panic!("a spool record holds a batch");
            };
            for envelope in envelopes {
                let params = twilio_protocol::form::FormParams::parse(&envelope.body).unwrap();
                sids.push(params.get("MessageSid").unwrap().to_owned());
            }
        }
    }
    sids
}

/// A small tmpfs of its own, unmounted on drop: a filesystem to fill up or
/// make read-only without touching the machine's.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "mounting a tmpfs needs root (CI runs as root here)"
        );
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remount(&self, mode: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(self.dir.path())
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: the app under test may still hold its lock file open.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test]
async fn a_full_disk_gives_503_and_every_200_is_on_it() {
    let disk = Tmpfs::mount("96k");
    let app = TestApp::spawn_with(Options {
        amqp_url: Some("amqp://guest:guest@127.0.0.1:1/%2f".to_owned()),
        spool_dir: Some(disk.path().join("spool")),
        ..Options::default()
    })
    .await;
    let mut statuses = Vec::new();
    for n in 1..=400 {
        statuses.extend(send(&app.address, n, 1).await);
    }
    let accepted = statuses.iter().filter(|s| **s == 200).count();
    assert!(
        statuses.contains(&503),
        "the disk filled up: {accepted} accepted"
    );
    assert!(accepted > 0);
    assert_eq!(spooled_sids(&disk.path().join("spool")).len(), accepted);
}

#[tokio::test]
async fn a_read_only_disk_gives_503_until_it_is_writable_again() {
    let disk = Tmpfs::mount("4m");
    let dir = disk.path().join("spool");
    let app = TestApp::spawn_with(Options {
        amqp_url: Some("amqp://guest:guest@127.0.0.1:1/%2f".to_owned()),
        spool_dir: Some(dir.clone()),
        ..Options::default()
    })
    .await;
    assert_eq!(send(&app.address, 1, 1).await, [200]);
    disk.remount("ro");
    assert_eq!(send(&app.address, 2, 1).await, [503]);
    disk.remount("rw");
    // It tries again after a while, and then takes callbacks again.
    wait_for(
        "the spool to take callbacks again",
        Duration::from_secs(30),
        || async { (send(&app.address, 3, 1).await == [200]).then_some(()) },
    )
    .await;
    let sids = spooled_sids(&dir);
    assert!(sids.contains(&message_sid(1)) && sids.contains(&message_sid(3)));
    assert!(!sids.contains(&message_sid(2)), "the 503 was not written");
}

/// The ingest binary with a spool directory, its log lines collected.
struct IngestProcess {
    child: Child,
    port: u16,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl IngestProcess {
    fn start(amqp_url: &str, prefix: &str, spool: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ingest"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("TWILIO_AUTH_TOKEN", testkit::TEST_TOKEN)
            .env("INGEST_ADDR", "127.0.0.1:0")
            .env("AMQP_URL", amqp_url)
            .env("AMQP_TOPOLOGY_PREFIX", prefix)
            .env("INGEST_SPOOL_DIR", spool)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut process = Self {
            child,
            port: 0,
            lines,
            seen: Vec::new(),
        };
        let listening = process.wait_for_line("ingest listening");
        let value: serde_json::Value = serde_json::from_str(&listening).unwrap();
        process.port = value["port"].as_u64().unwrap() as u16;
        process
    }

    fn address(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The first line logged so far or within 30 s that contains `needle`.
    fn wait_for_line(&mut self, needle: &str) -> String {
        if let Some(line) = self.seen.iter().find(|line| line.contains(needle)) {
            return line.clone();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no log line with {needle:?}; saw:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for IngestProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_killed_ingest_leaves_its_spool_to_the_next_which_drains_it_once() {
    let broker = TestBroker::new().await;
    let spool = tempfile::tempdir().unwrap();
    let away = "amqp://guest:guest@127.0.0.1:1/%2f";
    let first = IngestProcess::start(away, broker.topology.prefix(), spool.path());
    let statuses = send(&first.address(), 1, 30).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    first.kill(); // SIGKILL: no chance to flush or drain anything

    let mut second =
        IngestProcess::start(&testkit::amqp_url(), broker.topology.prefix(), spool.path());
    second.wait_for_line("the spool holds callbacks an earlier process could not publish");
    let sids = wait_for_queued_sids(&broker, 30).await;
    assert_each_once(&sids, 1, 30);
    second.wait_for_line("spool drained");
}

#[tokio::test]
async fn two_processes_never_share_a_spool_directory_and_what_they_leave_is_drained() {
    let broker = TestBroker::new().await;
    let spool = tempfile::tempdir().unwrap();
    let away = "amqp://guest:guest@127.0.0.1:1/%2f";
    let prefix = broker.topology.prefix();
    // Two processes given the same directory while RabbitMQ is away.
    let first = IngestProcess::start(away, prefix, spool.path());
    let mut second = IngestProcess::start(away, prefix, spool.path());
    second.wait_for_line("this one spools in a directory of its own");
    assert!(send(&first.address(), 1, 10)
        .await
        .iter()
        .all(|s| *s == 200));
    assert!(send(&second.address(), 11, 10)
        .await
        .iter()
        .all(|s| *s == 200));
    // Each wrote its own segments: the first in the directory, the second
    // in one inside it.
    let first_sids = spooled_sids(spool.path());
    let second_sids = spooled_sids(&spool.path().join("ingest-1"));
    assert_eq!(first_sids.len(), 10, "{first_sids:?}");
    assert_eq!(second_sids.len(), 10, "{second_sids:?}");
    assert!(first_sids.iter().all(|sid| !second_sids.contains(sid)));
    first.kill();
    second.kill();

    // One process comes back: it drains its own directory and adopts the
    // one the other left.
    let mut survivor = IngestProcess::start(&testkit::amqp_url(), prefix, spool.path());
    let sids = wait_for_queued_sids(&broker, 20).await;
    assert_each_once(&sids, 1, 20);
    survivor.wait_for_line("adopted spool drained");
    assert!(spooled_sids(&spool.path().join("ingest-1")).is_empty());
}

#[tokio::test]
async fn a_torn_last_record_is_skipped_with_a_log_line_and_the_rest_drained() {
    let broker = TestBroker::new().await;
    let spool = tempfile::tempdir().unwrap();
    // What a process killed in the middle of a write leaves: two whole
    // records, then a third cut short.
    let mut bytes = ingest::spool::segment::HEADER.to_vec();
    for sids in [1..=3u64, 4..=5, 6..=6] {
        let envelopes: Vec<CallbackEnvelope> = sids
            .map(|n| CallbackEnvelope {
                body: status_params(&message_sid(n), "sent", None)
                    .encode()
                    .into_bytes(),
                body_kind: BodyKind::Form,
                received_at: chrono::Utc::now(),
                request_id: format!("req-{n}"),
                idempotency_token: None,
                trace_context: Vec::new(),
            })
            .collect();
        let (payload, _) = queue_wire::batch::encode_batch(&envelopes);
        ingest::spool::segment::encode_record(&payload, &mut bytes);
    }
    bytes.truncate(bytes.len() - 10);
    let path = spool.path().join(ingest::spool::segment::file_name(7));
    std::fs::File::create(&path)
        .unwrap()
        .write_all(&bytes)
        .unwrap();

    let mut ingest =
        IngestProcess::start(&testkit::amqp_url(), broker.topology.prefix(), spool.path());
    let warning = ingest.wait_for_line("spool segment damaged");
    assert!(
        warning.contains("WARN") && warning.contains("skipped_bytes"),
        "{warning}"
    );
    let sids = wait_for_queued_sids(&broker, 5).await;
    assert_each_once(&sids, 1, 5);
    ingest.wait_for_line("spool drained");
    assert!(!path.exists(), "a drained segment is removed");
}

#[tokio::test]
async fn without_a_broker_the_answer_comes_at_once_from_the_spool() {
    let app = TestApp::spawn_with(Options {
        amqp_url: Some("amqp://guest:guest@127.0.0.1:1/%2f".to_owned()),
        ..Options::default()
    })
    .await;
    assert_eq!(send(&app.address, 1, 10).await, [200; 10]);
    assert_eq!(spooled_sids(app.spool.as_ref().unwrap().path()).len(), 10);
}
