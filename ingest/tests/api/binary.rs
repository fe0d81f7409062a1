//! The ingest binary as a child process, its log lines collected.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// The binary with a clean environment (PATH only).
pub fn ingest_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ingest"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    command
}

/// A running ingest, killed when dropped however the test ends (a failed
/// assertion must not leave it running, holding the harness's pipes).
pub struct RunningIngest {
    child: Child,
    lines: Receiver<String>,
    /// Every line read so far, stdout and stderr.
    pub seen: Vec<String>,
}

impl RunningIngest {
    /// Spawns `command` with its stdout and stderr collected.
    pub fn spawn(command: &mut Command) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let out_tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = out_tx.send(line);
            }
        });
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The first line logged so far or within `within` containing `needle`.
    pub fn wait_for_line(&mut self, needle: &str, within: Duration) -> String {
        if let Some(line) = self.seen.iter().find(|line| line.contains(needle)) {
            return line.clone();
        }
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
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

    /// The port from its "ingest listening" line.
    pub fn port(&mut self) -> u16 {
        let listening = self.wait_for_line("ingest listening", Duration::from_secs(30));
        let value: serde_json::Value = serde_json::from_str(&listening).unwrap();
        u16::try_from(value["port"].as_u64().unwrap()).unwrap()
    }

    /// SIGKILL: no chance to flush or drain anything.
    pub fn kill(self) {
        drop(self);
    }

    /// SIGTERM; waits for the exit (blocking: call it off the runtime), and
    /// returns the exit code and every line it logged.
    pub fn terminate(mut self) -> (Option<i32>, String) {
        let killed = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let status = self.child.wait().unwrap();
        // The reader threads end with the pipes.
        while let Ok(line) = self.lines.recv() {
            self.seen.push(line);
        }
        (status.code(), self.seen.join("\n"))
    }
}

impl Drop for RunningIngest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
