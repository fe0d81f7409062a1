//! Running ingest and worker as real processes.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub fn worker_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_worker"))
}

/// Built next to the worker by `cargo test --workspace` / `cargo build --workspace`.
pub fn ingest_binary() -> PathBuf {
    let path = worker_binary().with_file_name("ingest");
    assert!(
        path.exists(),
        "{} missing: run `cargo build --workspace` first",
        path.display()
    );
    path
}

pub struct Service {
    pub child: Child,
    pub port: u16,
    pub name: &'static str,
}

impl Service {
    /// Starts a binary and waits for its "listening" log line to learn its port.
    pub fn start(name: &'static str, binary: PathBuf, env: &[(&str, String)]) -> Self {
        let mut command = Command::new(binary);
        command
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "warn,ingest=info,worker=info")
            .stdout(Stdio::piped())
            // Quiet unless asked for: TEST_LOG=1 shows the services' output.
            .stderr(if std::env::var_os("TEST_LOG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            });
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (port_tx, port_rx) = mpsc::channel();
        let echo = std::env::var_os("TEST_LOG").is_some();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if echo {
                    eprintln!("[{name}] {line}");
                }
                if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) {
                    if value["message"]
                        .as_str()
                        .is_some_and(|m| m.ends_with("listening"))
                    {
                        let _ = port_tx.send(value["port"].as_u64().unwrap_or(0) as u16);
                    }
                }
            }
        });
        let port = port_rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("{name} did not start"));
        Self { child, port, name }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {}", self.name);
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill(mut self) {
        self.signal("KILL");
        let _ = self.child.wait();
    }

    /// SIGTERM, then the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        self.signal("TERM");
        self.child.wait().ok().and_then(|status| status.code())
    }

    pub async fn wait_ready(&self) {
        let url = format!("{}/readyz", self.url());
        testkit::wait_for(
            &format!("{} ready", self.name),
            Duration::from_secs(60),
            || async {
                let status = reqwest::get(&url).await.ok()?.status();
                (status == 200).then_some(())
            },
        )
        .await;
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Ingest's environment: `amqp_url` (the broker, or a proxy in front of it)
/// and a spool directory of the test's.
pub fn ingest_env(
    prefix: &str,
    amqp_url: &str,
    spool: &std::path::Path,
) -> Vec<(&'static str, String)> {
    vec![
        ("TWILIO_AUTH_TOKEN", testkit::TEST_TOKEN.to_owned()),
        ("INGEST_ADDR", "127.0.0.1:0".to_owned()),
        ("AMQP_URL", amqp_url.to_owned()),
        ("INGEST_SPOOL_DIR", spool.display().to_string()),
        ("AMQP_TOPOLOGY_PREFIX", prefix.to_owned()),
        ("INGEST_CONFIRM_TIMEOUT_MS", "3000".to_owned()),
    ]
}

pub fn worker_env(prefix: &str, database_url: &str) -> Vec<(&'static str, String)> {
    worker_env_on(prefix, database_url, &testkit::amqp_url())
}

/// The worker's environment on another broker (a cluster's nodes).
pub fn worker_env_on(
    prefix: &str,
    database_url: &str,
    amqp_url: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("WORKER_ADDR", "127.0.0.1:0".to_owned()),
        ("AMQP_URL", amqp_url.to_owned()),
        ("DATABASE_URL", database_url.to_owned()),
        ("AMQP_TOPOLOGY_PREFIX", prefix.to_owned()),
        ("WORKER_RETRY_DELAYS_MS", "200,400".to_owned()),
    ]
}
