//! The durable spool, with real files and the real RabbitMQ: callbacks
//! RabbitMQ cannot confirm are answered 200 once on disk, drained exactly
//! once when it is back, survive a SIGKILL, are drained before a SIGTERM
//! exit, and a spool that cannot take them gives 503 (and readiness says
//! why), never a 200 that was not written, until the disk is back.
//!
//! `broker_away`: spooling and draining in process; `disk`: full and
//! read-only disks; `restarts`: what a process leaves to the next (and
//! segments an earlier release wrote); `shutdown`: draining at SIGTERM.

mod broker_away;
mod disk;
mod restarts;
mod shutdown;

use crate::helpers::{send_many, Options, TestApp};
use queue_wire::envelope::{BodyKind, CallbackEnvelope};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use testkit::{message_sid, status_params, wait_for, TestBroker, ToggleProxy};

use crate::binary::{ingest_command, RunningIngest};

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
    send_many(&client, app_address, first..first + count, "delivered", 16).await
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
        // Every record holds a batch of callbacks.
        for envelopes in ingest::test_support::spooled_batches(&path).unwrap() {
            for envelope in envelopes {
                let params = twilio_protocol::form::FormParams::parse(&envelope.body).unwrap();
                sids.push(params.get("MessageSid").unwrap().to_owned());
            }
        }
    }
    sids
}

/// A segment's bytes: one record per range of SIDs, as the writer makes them.
fn segment_bytes(records: &[std::ops::RangeInclusive<u64>]) -> Vec<u8> {
    let mut bytes = ingest::test_support::LEGACY_HEADER.to_vec();
    for sids in records {
        let envelopes: Vec<CallbackEnvelope> = sids
            .clone()
            .map(|n| CallbackEnvelope {
                body: status_params(&message_sid(n), "sent", None)
                    .encode()
                    .into_bytes(),
                body_kind: BodyKind::Form,
                received_at: chrono::Utc::now(),
                request_id: Some(uuid::Uuid::from_u128(n.into())),
                idempotency_token: None,
                trace_context: Vec::new(),
            })
            .collect();
        let (payload, _) = queue_wire::batch::encode_batch(&envelopes);
        ingest::test_support::encode_record(&payload, &mut bytes);
    }
    bytes
}

fn write_segment(dir: &Path, sequence: u64, bytes: &[u8]) -> PathBuf {
    let path = dir.join(ingest::test_support::file_name(sequence));
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

/// The ingest binary with a spool directory, RabbitMQ at `amqp_url`, and
/// `env` on top.
fn start_ingest(
    amqp_url: &str,
    prefix: &str,
    spool: &Path,
    env: &[(&str, &str)],
) -> SpoolingIngest {
    let mut process = RunningIngest::spawn(
        ingest_command()
            .env("TWILIO_AUTH_TOKEN", testkit::TEST_TOKEN)
            .env("INGEST_ADDR", "127.0.0.1:0")
            .env("AMQP_URL", amqp_url)
            .env("AMQP_TOPOLOGY_PREFIX", prefix)
            .env("INGEST_SPOOL_DIR", spool)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied()),
    );
    let address = format!("http://127.0.0.1:{}", process.port());
    SpoolingIngest { process, address }
}

/// A running ingest binary and where it listens.
struct SpoolingIngest {
    process: RunningIngest,
    address: String,
}

impl SpoolingIngest {
    fn address(&self) -> String {
        self.address.clone()
    }

    /// The first line logged so far or within 30 s that contains `needle`.
    fn wait_for_line(&mut self, needle: &str) -> String {
        self.process.wait_for_line(needle, Duration::from_secs(30))
    }

    fn seen(&self) -> &[String] {
        &self.process.seen
    }

    fn kill(self) {
        self.process.kill();
    }

    fn terminate(self) -> (Option<i32>, String) {
        self.process.terminate()
    }
}
