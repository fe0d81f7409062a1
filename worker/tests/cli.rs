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

#[tokio::test]
async fn sigterm_is_exit_0_with_no_error_line() {
    use std::io::{BufRead, BufReader};
    let database = testkit::TestDatabase::new().await;
    let prefix = testkit::unique_name("test").replace('_', ".");
    let mut child = Command::new(env!("CARGO_BIN_EXE_worker"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", &database.url)
        .env("WORKER_ADDR", "127.0.0.1:0")
        .env("AMQP_TOPOLOGY_PREFIX", &prefix)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut seen = Vec::new();
    loop {
        let line = lines
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the worker never said it was consuming: {seen:?}"));
        let consuming = line.contains("\"consuming\"");
        seen.push(line);
        if consuming {
            break;
        }
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    // The reader thread ends with the pipe.
    while let Ok(line) = lines.recv_timeout(std::time::Duration::from_secs(2)) {
        seen.push(line);
    }
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
    }
    testkit::delete_topology(queue_wire::topology::Topology::new(prefix));
    let logs = seen.join("\n") + &stderr;
    assert_eq!(status.code(), Some(0), "{logs}");
    assert!(logs.contains("worker stopped"), "{logs}");
    assert!(!logs.contains("\"ERROR\""), "{logs}");
}
