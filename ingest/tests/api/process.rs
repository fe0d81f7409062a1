//! The binary itself: configuration errors, help, signals.

use std::process::{Command, Stdio};
use std::time::Duration;

fn ingest() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ingest"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
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
    testkit::delete_topology(shared::topology::Topology::new(prefix));
    assert_eq!(output.status.code(), Some(0));
    let logs = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(logs.contains("ingest stopped"), "{logs}");
    assert!(!logs.contains("s3cret-token-value"));
}
