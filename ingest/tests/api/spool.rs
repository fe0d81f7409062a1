//! The durable spool, with real files and the real RabbitMQ: callbacks
//! RabbitMQ cannot confirm are answered 200 once on disk, drained exactly
//! once when it is back, survive a SIGKILL, are drained before a SIGTERM
//! exit, and a spool that cannot take them gives 503 (and readiness says
//! why), never a 200 that was not written, until the disk is back.

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

/// Ingest (with `options`) reaching RabbitMQ through a proxy, connected
/// once, then cut off, and noticing it: callbacks from now on go to the spool.
async fn cut_off_from_the_broker(options: Options<'_>) -> (ToggleProxy, TestApp) {
    let proxy = ToggleProxy::start(&broker_address()).await;
    let app = TestApp::spawn_with(Options {
        amqp_url: Some(amqp_url_via(proxy.port)),
        ..options
    })
    .await;
    app.wait_broker_ready().await;
    proxy.cut();
    wait_for("ingest to notice", Duration::from_secs(30), || async {
        (app.readyz_text().await != "ready").then_some(())
    })
    .await;
    (proxy, app)
}

#[tokio::test]
async fn callbacks_are_spooled_while_the_broker_is_away_and_drained_once_when_it_is_back() {
    let (proxy, app) = cut_off_from_the_broker(Options::default()).await;

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
        Self::start_with(amqp_url, prefix, spool, &[])
    }

    fn start_with(amqp_url: &str, prefix: &str, spool: &Path, env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ingest"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("TWILIO_AUTH_TOKEN", testkit::TEST_TOKEN)
            .env("INGEST_ADDR", "127.0.0.1:0")
            .env("AMQP_URL", amqp_url)
            .env("AMQP_TOPOLOGY_PREFIX", prefix)
            .env("INGEST_SPOOL_DIR", spool)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
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

    /// SIGTERM; waits for the exit (blocking: call it off the runtime), and
    /// returns the exit code and every line it logged.
    fn terminate(mut self) -> (Option<i32>, String) {
        let killed = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let status = self.child.wait().unwrap();
        // The reader thread ends with the pipe.
        while let Ok(line) = self.lines.recv() {
            self.seen.push(line);
        }
        (status.code(), self.seen.join("\n"))
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
    let mut bytes = segment_bytes(&[1..=3, 4..=5, 6..=6]);
    bytes.truncate(bytes.len() - 10);
    let path = write_segment(spool.path(), 7, &bytes);

    let mut ingest =
        IngestProcess::start(&testkit::amqp_url(), broker.topology.prefix(), spool.path());
    let warning = ingest.wait_for_line("ended in a torn record");
    assert!(
        warning.contains("WARN") && warning.contains("torn_tail_bytes"),
        "{warning}"
    );
    let sids = wait_for_queued_sids(&broker, 5).await;
    assert_each_once(&sids, 1, 5);
    ingest.wait_for_line("spool drained");
    assert!(!path.exists(), "a drained segment is removed");
    // A torn tail is what a crash leaves, not damage: nothing is kept aside.
    assert_eq!(files_ending(spool.path(), ".damaged"), 0);
    assert_eq!(
        ingest
            .seen
            .iter()
            .filter(|l| l.contains("torn record"))
            .count(),
        1,
        "said once"
    );
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

/// A segment's bytes: one record per range of SIDs, as the writer makes them.
fn segment_bytes(records: &[std::ops::RangeInclusive<u64>]) -> Vec<u8> {
    let mut bytes = ingest::spool::segment::HEADER.to_vec();
    for sids in records {
        let envelopes: Vec<CallbackEnvelope> = sids
            .clone()
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
    bytes
}

fn write_segment(dir: &Path, sequence: u64, bytes: &[u8]) -> PathBuf {
    let path = dir.join(ingest::spool::segment::file_name(sequence));
    std::fs::File::create(&path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
    path
}

/// Files under `dir` (and the `ingest-N` directories in it) whose name ends
/// with `suffix`.
fn files_ending(dir: &Path, suffix: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .map(|entry| entry.unwrap().path())
        .map(|path| {
            if path.is_dir() {
                files_ending(&path, suffix)
            } else {
                usize::from(path.to_string_lossy().ends_with(suffix))
            }
        })
        .sum()
}

/// Fills the filesystem of `dir` to the last byte with a file of its own.
fn fill_disk(dir: &Path) -> PathBuf {
    let filler = dir.join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    let block = vec![0u8; 4096];
    while file.write_all(&block).is_ok() {}
    while file.write_all(&[0]).is_ok() {}
    filler
}

#[tokio::test]
async fn a_full_disk_makes_readiness_say_why_and_the_spool_recovers_when_space_is_back() {
    let disk = Tmpfs::mount("512k");
    let dir = disk.path().join("spool");
    let (proxy, app) = cut_off_from_the_broker(Options {
        spool_dir: Some(dir.clone()),
        ..Options::default()
    })
    .await;

    // No segment yet: the next spool write must create one, on a full disk.
    let filler = fill_disk(disk.path());
    let refused = send(&app.address, 1, 5).await;
    assert_eq!(refused, [503; 5], "the disk is full");
    assert_eq!(app.readyz().await, 503);
    let why = app.readyz_text().await;
    assert!(
        why.contains("spool cannot write") && why.contains("No space left"),
        "{why}"
    );

    // Space comes back: readiness returns without a callback to try it,
    // and the spool takes callbacks again (no half-made segment in the way).
    std::fs::remove_file(&filler).unwrap();
    wait_for(
        "readiness to come back with the disk",
        Duration::from_secs(30),
        || async { (app.readyz().await == 200).then_some(()) },
    )
    .await;
    assert!(app.readyz_text().await.contains("spooling"));
    assert_eq!(send(&app.address, 6, 10).await, [200; 10]);
    let spooled: BTreeSet<String> = spooled_sids(&dir).into_iter().collect();
    let expected: BTreeSet<String> = (6..16).map(message_sid).collect();
    assert_eq!(spooled, expected, "every 200 on disk, none of the 503s");

    proxy.restore();
    let sids = wait_for_queued_sids(&app.broker, 10).await;
    assert_each_once(&sids, 6, 10);
    wait_for(
        "the drained segments to go",
        Duration::from_secs(30),
        || async { (files_ending(&dir, ".spool") == 0).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn a_segment_gone_before_its_turn_is_forgotten_and_the_next_drained() {
    let dir = tempfile::tempdir().unwrap();
    let first = write_segment(dir.path(), 1, &segment_bytes(&[1..=3]));
    write_segment(dir.path(), 2, &segment_bytes(&[4..=6]));
    let proxy = ToggleProxy::start(&broker_address()).await;
    proxy.cut();
    let app = TestApp::spawn_with(Options {
        amqp_url: Some(amqp_url_via(proxy.port)),
        spool_dir: Some(dir.path().to_path_buf()),
        ..Options::default()
    })
    .await;
    // Counted at start, then removed from outside before it was drained
    // (as a removal whose state update was lost would leave it).
    assert!(app.readyz_text().await.contains("spooling"));
    std::fs::remove_file(&first).unwrap();
    proxy.restore();
    let sids = wait_for_queued_sids(&app.broker, 3).await;
    assert_each_once(&sids, 4, 3);
    wait_for("the spool to be empty", Duration::from_secs(30), || async {
        (app.readyz_text().await == "ready").then_some(())
    })
    .await;
    assert_eq!(files_ending(dir.path(), ".spool"), 0);
}

#[tokio::test]
async fn a_damaged_segment_is_drained_around_the_damage_kept_aside_and_counted() {
    let broker = TestBroker::new().await;
    let spool = tempfile::tempdir().unwrap();
    // Three records; a bit of the second's payload flipped on disk.
    let mut bytes = segment_bytes(&[1..=3, 4..=5, 6..=6]);
    let first_record = segment_bytes(&[1..=3]).len();
    bytes[first_record + 8 + 20] ^= 0x01;
    let path = write_segment(spool.path(), 3, &bytes);

    let mut ingest =
        IngestProcess::start(&testkit::amqp_url(), broker.topology.prefix(), spool.path());
    let sids = wait_for_queued_sids(&broker, 4).await;
    let expected: BTreeSet<String> = [1, 2, 3, 6].into_iter().map(message_sid).collect();
    assert_eq!(sids.len(), 4, "{sids:?}");
    assert_eq!(sids.iter().cloned().collect::<BTreeSet<_>>(), expected);
    ingest.wait_for_line("spool drained");
    let error = ingest.wait_for_line("spool segment damaged");
    assert!(error.contains("ERROR"), "{error}");
    assert!(error.contains("\"damaged_records\":1"), "{error}");
    assert!(!path.exists(), "out of the drainer's way");
    let aside = PathBuf::from(format!("{}.damaged", path.display()));
    assert_eq!(std::fs::read(&aside).unwrap(), bytes, "kept, never deleted");
    let metrics = testkit::scrape_metrics(&ingest.address()).await;
    assert!(
        metrics.contains("ingest_spool_damaged_records_total 1"),
        "{metrics}"
    );
    assert_eq!(
        ingest
            .seen
            .iter()
            .filter(|l| l.contains("spool segment damaged"))
            .count(),
        1,
        "said once per segment"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_the_spool_into_rabbitmq_before_exiting() {
    let broker = TestBroker::new().await;
    let spool = tempfile::tempdir().unwrap();
    let proxy = ToggleProxy::start(&broker_address()).await;
    proxy.cut();
    let ingest = IngestProcess::start_with(
        &amqp_url_via(proxy.port),
        broker.topology.prefix(),
        spool.path(),
        &[("INGEST_SHUTDOWN_DRAIN_SECS", "60")],
    );
    let statuses = send(&ingest.address(), 1, 300).await;
    assert_eq!(statuses, vec![200; 300], "all spooled");
    assert_eq!(spooled_sids(spool.path()).len(), 300);

    // RabbitMQ is back as the process is told to go (a scale-down).
    proxy.restore();
    let (code, logs) = tokio::task::spawn_blocking(move || ingest.terminate())
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{logs}");
    // What the spool held when the drain began is what it says it drained.
    let line_with = |needle: &str| -> serde_json::Value {
        let line = logs
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?}:\n{logs}"));
        serde_json::from_str(line).unwrap()
    };
    let began = line_with("draining the spool into RabbitMQ before exiting");
    let ended = line_with("drained the spool into RabbitMQ before exiting");
    assert_eq!(began["callbacks"], ended["drained"], "{began} {ended}");
    assert!(!logs.contains("still spooled"), "{logs}");
    let sids = wait_for_queued_sids(&broker, 300).await;
    assert_each_once(&sids, 1, 300);
    assert_eq!(
        files_ending(spool.path(), ".spool"),
        0,
        "nothing left on disk"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_rabbitmq_still_away_says_what_is_left_where_and_exits_0() {
    let broker = TestBroker::new().await;
    let spool = tempfile::tempdir().unwrap();
    let away = "amqp://guest:guest@127.0.0.1:1/%2f";
    let ingest = IngestProcess::start_with(
        away,
        broker.topology.prefix(),
        spool.path(),
        &[("INGEST_SHUTDOWN_DRAIN_SECS", "1")],
    );
    assert_eq!(send(&ingest.address(), 1, 10).await, [200; 10]);
    let (code, logs) = tokio::task::spawn_blocking(move || ingest.terminate())
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{logs}");
    let left = logs
        .lines()
        .find(|l| l.contains("exiting with callbacks still spooled"))
        .unwrap_or_else(|| panic!("no line about what is left:\n{logs}"));
    assert!(left.contains("WARN"), "{left}");
    assert!(left.contains("\"remaining\":10"), "{left}");
    assert!(left.contains(&spool.path().display().to_string()), "{left}");
    // Left on disk, whole, for the next process.
    assert_eq!(spooled_sids(spool.path()).len(), 10);
}
