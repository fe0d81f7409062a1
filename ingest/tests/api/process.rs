//! The binary itself: configuration errors, help, signals.

use std::process::Command;
use std::time::Duration;

use crate::binary::{ingest_command, RunningIngest};

/// The binary with a clean environment and no spool (these tests are about
/// the process; `spool` has the spool's, with a directory each).
fn ingest() -> Command {
    let mut command = ingest_command();
    command.env("INGEST_SPOOL_MAX_BYTES", "0");
    command
}

/// Runs ingest with `TWILIO_AUTH_TOKEN=token` and `name=value`; asserts it
/// exits 2, and returns its stderr.
fn refused(token: &str, name: &str, value: &str) -> String {
    let output = ingest()
        .env("TWILIO_AUTH_TOKEN", token)
        .env(name, value)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{name}={value}");
    String::from_utf8(output.stderr).unwrap()
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
        let stderr = refused("s3cret-token-value", name, value);
        assert!(stderr.contains(name), "{stderr}");
        assert!(!stderr.contains("s3cret-token-value"));
    }
}

#[test]
fn an_out_of_range_number_is_one_line_naming_the_variable_and_exit_2() {
    for (name, value) in [
        ("INGEST_BODY_LIMIT_BYTES", "0"),
        ("INGEST_CONFIRM_TIMEOUT_MS", "18446744073709551615"),
        ("INGEST_SHUTDOWN_DRAIN_SECS", "86400"),
    ] {
        let stderr = refused("s3cret-token-value", name, value);
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
        let stderr = refused("a-real-token", name, value);
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

/// A serving ingest on a port of its own and a topology of its own, with
/// `token` and the `extra` variables; `stop` ends it and its topology.
fn serving(token: &str, extra: &[(&str, &str)]) -> (RunningIngest, String) {
    let prefix = testkit::unique_name("test").replace('_', ".");
    let mut command = ingest();
    command
        .env("TWILIO_AUTH_TOKEN", token)
        .env("INGEST_ADDR", "127.0.0.1:0")
        .env("AMQP_TOPOLOGY_PREFIX", &prefix)
        .envs(extra.iter().copied());
    (RunningIngest::spawn(&mut command), prefix)
}

/// SIGTERM, then the topology deleted: the exit code and every line logged.
fn stop(child: RunningIngest, prefix: String) -> (Option<i32>, String) {
    let stopped = child.terminate();
    testkit::delete_topology(queue_wire::topology::Topology::new(prefix));
    stopped
}

#[test]
fn sigterm_exits_0_and_logs_never_contain_the_token() {
    let (mut child, prefix) = serving("s3cret-token-value", &[("RUST_LOG", "debug")]);
    child.wait_for_line("connected to RabbitMQ", Duration::from_secs(30));
    let (code, logs) = stop(child, prefix);
    assert_eq!(code, Some(0));
    assert!(logs.contains("ingest stopped"), "{logs}");
    assert!(!logs.contains("s3cret-token-value"));
    assert!(
        !logs.contains("\"ERROR\""),
        "a clean stop logs no ERROR: {logs}"
    );
}

#[test]
fn a_retired_setting_still_set_is_named_in_a_warning_and_ignored() {
    let (mut child, prefix) = serving(
        testkit::TEST_TOKEN,
        &[("INGEST_WORKERS", "2"), ("INGEST_KEEP_ALIVE_SECS", "0")],
    );
    let warning = child.wait_for_line("INGEST_WORKERS", Duration::from_secs(30));
    assert!(warning.contains("\"WARN\""), "{warning}");
    assert!(warning.contains("one HTTP worker per core"), "{warning}");
    child.wait_for_line("INGEST_KEEP_ALIVE_SECS", Duration::from_secs(30));
    // It starts and serves as if they were not set.
    child.port();
    child.wait_for_line("connected to RabbitMQ", Duration::from_secs(30));
    let (code, logs) = stop(child, prefix);
    assert_eq!(code, Some(0));
    assert!(
        !logs.contains("INGEST_BODY_TIMEOUT_MS"),
        "only the retired settings that are set are named: {logs}"
    );
}

/// Posts one signed callback to the ingest on `port`; its answer's status.
fn post_one(port: u16, sid: &str) -> u16 {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let params = testkit::status_params(sid, "sent", None);
        testkit::post_signed(
            &reqwest::Client::new(),
            &format!("http://127.0.0.1:{port}"),
            &params,
        )
        .await
        .status()
        .as_u16()
    })
}

#[test]
fn an_accepted_callback_writes_no_log_line_at_info() {
    let (mut child, prefix) = serving(testkit::TEST_TOKEN, &[("RUST_LOG", "info")]);
    let port = child.port();
    child.wait_for_line("connected to RabbitMQ", Duration::from_secs(30));
    let sid = testkit::message_sid(6);
    assert_eq!(post_one(port, &sid), 200);
    // The line, had there been one, was written before the answer was sent.
    let (code, logs) = stop(child, prefix);
    assert_eq!(code, Some(0));
    assert!(
        !logs.contains(sid.as_str()),
        "a line per callback at INFO: {logs}"
    );
}

#[test]
fn json_log_lines_carry_trace_and_message_ids() {
    // Each accepted callback's line is at DEBUG.
    let (mut child, prefix) = serving(testkit::TEST_TOKEN, &[("RUST_LOG", "info,ingest=debug")]);
    let port = child.port();
    child.wait_for_line("connected to RabbitMQ", Duration::from_secs(30));

    let sid = testkit::message_sid(5);
    assert_eq!(post_one(port, &sid), 200);
    let line = child.wait_for_line("callback accepted", Duration::from_secs(30));
    let accepted: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
    assert_eq!(accepted["message"], "callback accepted");
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

    let _ = stop(child, prefix);
}

/// The binary logging to its collected lines, with RabbitMQ at `amqp_url`.
fn start_logged(amqp_url: &str) -> RunningIngest {
    RunningIngest::spawn(
        ingest()
            .env("TWILIO_AUTH_TOKEN", testkit::TEST_TOKEN)
            .env("INGEST_ADDR", "127.0.0.1:0")
            .env("AMQP_URL", amqp_url),
    )
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn with_the_broker_down_it_says_so_soon_and_still_stops_cleanly() {
    let port = closed_port();
    let mut ingest = start_logged(&format!("amqp://guest:guest@127.0.0.1:{port}/%2f"));
    let warning = ingest.wait_for_line("cannot reach RabbitMQ", Duration::from_secs(10));
    assert!(warning.contains("WARN"), "{warning}");
    // The signal handler is installed as the server starts serving, and no
    // line marks that moment: a SIGTERM in the first milliseconds would
    // meet the default action.
    std::thread::sleep(Duration::from_millis(500));
    let (code, logs) = ingest.terminate();
    assert_eq!(code, Some(0), "{logs}");
    assert!(!logs.contains("panicked"), "{logs}");
    assert!(!logs.contains("\"ERROR\""), "{logs}");
}

#[test]
fn refused_credentials_are_one_clear_error() {
    let mut ingest = start_logged("amqp://guest:not-the-password@127.0.0.1:5672/%2f");
    let error = ingest.wait_for_line("refused the login", Duration::from_secs(15));
    assert!(error.contains("ERROR"), "{error}");
    // It keeps trying, but says it once.
    std::thread::sleep(Duration::from_secs(3));
    let (code, logs) = ingest.terminate();
    assert_eq!(code, Some(0), "{logs}");
    assert_eq!(logs.matches("refused the login").count(), 1, "{logs}");
    assert!(!logs.contains("not-the-password"), "{logs}");
}
