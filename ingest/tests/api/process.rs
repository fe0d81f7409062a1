//! The binary itself: configuration errors, help, signals.

use std::process::{Command, Stdio};
use std::time::Duration;

/// The binary with a clean environment and no spool (these tests are about
/// the process; `spool.rs` has the spool's, with a directory each).
fn ingest() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ingest"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("INGEST_SPOOL_MAX_BYTES", "0");
    command
}

#[test]
fn missing_token_is_one_line_and_exit_2() {
    let output = ingest().output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("TWILIO_AUTH_TOKEN") || stderr.contains("auth-token"),
        "{stderr}"
    );
}

#[test]
fn bad_urls_are_exit_2_and_never_print_the_token() {
    for (name, value) in [("AMQP_URL", "nope"), ("PUBLIC_BASE_URL", "example.com")] {
        let output = ingest()
            .env("TWILIO_AUTH_TOKEN", "s3cret-token-value")
            .env(name, value)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{name}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(stderr.contains(name), "{stderr}");
        assert!(!stderr.contains("s3cret-token-value"));
    }
}

#[test]
fn an_out_of_range_number_is_one_line_naming_the_variable_and_exit_2() {
    for (name, value) in [
        ("INGEST_WORKERS", "0"),
        ("INGEST_CONFIRM_TIMEOUT_MS", "18446744073709551615"),
        ("INGEST_SHUTDOWN_DRAIN_SECS", "86400"),
    ] {
        let output = ingest()
            .env("TWILIO_AUTH_TOKEN", "s3cret-token-value")
            .env(name, value)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{name}={value}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(name), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn a_token_left_as_the_template_placeholder_is_refused_without_printing_it() {
    for (name, value) in [
        ("TWILIO_AUTH_TOKEN", "REPLACE_ME_twilio_auth_token"),
        ("TWILIO_ACCOUNT_TOKENS", "ACxxx=REPLACE_ME_sub|old-one"),
        ("TWILIO_SIGNING_KEYS", "key1=REPLACE_ME_secret"),
    ] {
        let output = ingest()
            .env("TWILIO_AUTH_TOKEN", "a-real-token")
            .env(name, value)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{name}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(name), "{stderr}");
        for secret in [
            "REPLACE_ME_twilio_auth_token",
            "_sub",
            "old-one",
            "REPLACE_ME_secret",
        ] {
            assert!(!stderr.contains(secret), "{stderr}");
        }
    }
}

#[test]
fn help_lists_the_environment_variables() {
    let output = ingest().arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for variable in [
        "TWILIO_AUTH_TOKEN",
        "PUBLIC_BASE_URL",
        "INGEST_ADDR",
        "AMQP_URL",
        "LOG_FORMAT",
        "INGEST_SHUTDOWN_DRAIN_SECS",
    ] {
        assert!(help.contains(variable), "--help should mention {variable}");
    }
}

#[test]
fn sigterm_exits_0_and_logs_never_contain_the_token() {
    let prefix = testkit::unique_name("test").replace('_', ".");
    let child = ingest()
        .env("TWILIO_AUTH_TOKEN", "s3cret-token-value")
        .env("INGEST_ADDR", "127.0.0.1:0")
        .env("AMQP_TOPOLOGY_PREFIX", &prefix)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let output = child.wait_with_output().unwrap();
    testkit::delete_topology(queue_wire::topology::Topology::new(prefix));
    assert_eq!(output.status.code(), Some(0));
    let logs = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(logs.contains("ingest stopped"), "{logs}");
    assert!(!logs.contains("s3cret-token-value"));
    assert!(
        !logs.contains("\"ERROR\""),
        "a clean stop logs no ERROR: {logs}"
    );
}

#[test]
fn json_log_lines_carry_trace_and_message_ids() {
    use std::io::{BufRead, BufReader};
    let prefix = testkit::unique_name("test").replace('_', ".");
    let mut child = KillOnDrop(
        ingest()
            .env("TWILIO_AUTH_TOKEN", testkit::TEST_TOKEN)
            .env("INGEST_ADDR", "127.0.0.1:0")
            .env("AMQP_TOPOLOGY_PREFIX", &prefix)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let stdout = child.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let next_json = |predicate: &dyn Fn(&serde_json::Value) -> bool| loop {
        let line = lines
            .recv_timeout(Duration::from_secs(30))
            .expect("log line");
        let value: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        if predicate(&value) {
            break value;
        }
    };
    let listening = next_json(&|v| v["message"] == "ingest listening");
    let port = listening["port"].as_u64().unwrap();
    next_json(&|v| v["message"] == "connected to RabbitMQ");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let sid = testkit::message_sid(5);
    let status = runtime.block_on(async {
        let params = testkit::status_params(&sid, "sent", None);
        testkit::post_signed(
            &reqwest::Client::new(),
            &format!("http://127.0.0.1:{port}"),
            &params,
        )
        .await
        .status()
    });
    assert_eq!(status, 200);
    let accepted = next_json(&|v| v["message"] == "callback accepted");
    assert_eq!(accepted["message_sid"], sid.as_str());
    assert_eq!(accepted["outcome"], "accepted");
    assert_eq!(
        accepted["trace_id"].as_str().map(str::len),
        Some(32),
        "{accepted}"
    );
    assert_eq!(
        accepted["span_id"].as_str().map(str::len),
        Some(16),
        "{accepted}"
    );
    assert!(accepted["latency_ms"].is_number());

    let _ = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status();
    let _ = child.0.wait();
    testkit::delete_topology(queue_wire::topology::Topology::new(prefix));
}

/// A child process killed when the test ends, however it ends: a failed
/// assertion must not leave an ingest running (it would also hold the test
/// harness's output pipe open).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running ingest binary whose log lines (stdout and stderr) are collected.
struct LoggedIngest {
    child: KillOnDrop,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl LoggedIngest {
    fn start(amqp_url: &str) -> Self {
        use std::io::{BufRead, BufReader};
        let mut child = ingest()
            .env("TWILIO_AUTH_TOKEN", testkit::TEST_TOKEN)
            .env("INGEST_ADDR", "127.0.0.1:0")
            .env("AMQP_URL", amqp_url)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let tx = lines_tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = lines_tx.send(line);
            }
        });
        Self {
            child: KillOnDrop(child),
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits up to `within` for a line containing `needle`.
    fn wait_for_line(&mut self, needle: &str, within: Duration) -> String {
        let deadline = std::time::Instant::now() + within;
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
                    "no log line with {needle:?} within {within:?}; saw:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// SIGTERM, then everything it logged and its exit code.
    fn terminate(mut self) -> (Option<i32>, String) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.0.id().to_string()])
            .status();
        let status = self.child.0.wait().unwrap();
        // The reader threads end with the pipes.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.seen.push(line);
        }
        (status.code(), self.seen.join("\n"))
    }
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn with_the_broker_down_it_says_so_soon_and_still_stops_cleanly() {
    let port = closed_port();
    let mut ingest = LoggedIngest::start(&format!("amqp://guest:guest@127.0.0.1:{port}/%2f"));
    let warning = ingest.wait_for_line("cannot reach RabbitMQ", Duration::from_secs(10));
    assert!(warning.contains("WARN"), "{warning}");
    // actix installs its signal handlers just after it starts serving; a
    // SIGTERM in the first milliseconds would meet the default action.
    std::thread::sleep(Duration::from_millis(500));
    let (code, logs) = ingest.terminate();
    assert_eq!(code, Some(0), "{logs}");
    assert!(!logs.contains("panicked"), "{logs}");
    assert!(!logs.contains("\"ERROR\""), "{logs}");
}

#[test]
fn refused_credentials_are_one_clear_error() {
    let mut ingest = LoggedIngest::start("amqp://guest:not-the-password@127.0.0.1:5672/%2f");
    let error = ingest.wait_for_line("refused the login", Duration::from_secs(15));
    assert!(error.contains("ERROR"), "{error}");
    // It keeps trying, but says it once.
    std::thread::sleep(Duration::from_secs(3));
    let (code, logs) = ingest.terminate();
    assert_eq!(code, Some(0), "{logs}");
    assert_eq!(logs.matches("refused the login").count(), 1, "{logs}");
    assert!(!logs.contains("not-the-password"), "{logs}");
}
