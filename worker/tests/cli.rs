//! The worker binary's start-up failures: one plain line, the right exit code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn worker(database_url: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_worker"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", database_url)
        .env("WORKER_ADDR", "127.0.0.1:0")
        .output()
        .unwrap()
}

#[test]
fn a_missing_database_is_exit_2_with_the_command_that_creates_it() {
    let name = testkit::unique_name("absent");
    let output = worker(&format!("{}/{name}", testkit::postgres_server_url()));
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("createdb -h 127.0.0.1 -p 5432 -U postgres {name}")),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&output.stdout).trim().is_empty());
}

#[test]
fn an_unreachable_server_is_named_with_its_port() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = worker(&format!("postgres://postgres:s3cret@127.0.0.1:{port}/x"));
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert!(!stderr.contains("s3cret"), "{stderr}");
}

#[test]
fn help_does_not_show_unset_variables_as_empty() {
    let output = Command::new(env!("CARGO_BIN_EXE_worker"))
        .env_clear()
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    assert!(help.contains("[env: AMQP_URL]"), "{help}");
    assert!(!help.contains("=]"), "{help}");
}
