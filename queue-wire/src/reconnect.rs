//! (Re)connecting to RabbitMQ, the one way both services do it, to one
//! node or to any node of a cluster (`AMQP_URL` may list several).
//!
//! Nodes are tried in turn, starting after the one last lost, so a dead
//! node costs one refused attempt, not a backoff. Each attempt has a
//! deadline (a node that accepts TCP but never answers would otherwise hang
//! it) and runs as a task of its own that is never dropped half-way: lapin's
//! I/O thread panics when a connect it is driving is cancelled; an attempt
//! past its deadline is left to finish in the background (what it opens is
//! closed) while the next node is tried. After a full round of failures the
//! next waits a growing backoff. An outage is logged at WARN when its reason
//! changes and then at most every few seconds; a refused login is an ERROR,
//! once, since only an operator can fix it. Every connection and failover
//! names its node (host:port, never the credentials).

use lapin::Connection;
use service_kit::backoff::Backoff;
use std::fmt::Display;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::broker::{node_label, nodes};

/// How long one connection attempt may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A continuing outage is logged at most this often.
const REPORT_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    Unreachable,
    LoginRefused,
}

fn classify(error: &lapin::Error) -> Failure {
    let text = error.to_string();
    if text.contains("ACCESS_REFUSED") || text.contains("ACCESS-REFUSED") || text.contains("403") {
        Failure::LoginRefused
    } else {
        Failure::Unreachable
    }
}

pub struct Reconnector {
    nodes: Vec<String>,
    /// The node to try next.
    next: usize,
    /// The node of the connection last handed out.
    current: Option<usize>,
    connection_name: String,
    /// What the service cannot do while disconnected, for the log line
    /// ("callbacks are spooled", "not consuming").
    consequence: &'static str,
    backoff: Backoff,
    last_report: Option<(Failure, Instant)>,
    /// Attempts past their deadline, still running: awaited when stopping.
    stragglers: Vec<JoinHandle<()>>,
}

impl Reconnector {
    /// `amqp_url`: one URL, or several (comma-separated) of one cluster.
    pub fn new(
        amqp_url: &str,
        connection_name: impl Into<String>,
        consequence: &'static str,
    ) -> Self {
        Self {
            nodes: nodes(amqp_url).into_iter().map(str::to_owned).collect(),
            next: 0,
            current: None,
            connection_name: connection_name.into(),
            consequence,
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
            last_report: None,
            stragglers: Vec::new(),
        }
    }

    /// The node of the connection last handed out (host:port), for the
    /// owner's "connected" log line.
    pub fn node(&self) -> Option<String> {
        self.current.map(|node| node_label(&self.nodes[node]))
    }

    /// A new connection, trying until one is made; `None` once `stop` is
    /// cancelled (attempts in progress are then left to end by themselves
    /// and whatever they opened is closed).
    pub async fn connect(&mut self, stop: &CancellationToken) -> Option<Connection> {
        self.connect_named("", stop).await
    }

    /// As `connect`, for a second connection of the same owner: its name
    /// (shown in the management UI) gets `suffix` appended. It goes to the
    /// node of the first when that one is up.
    pub async fn connect_named(
        &mut self,
        suffix: &str,
        stop: &CancellationToken,
    ) -> Option<Connection> {
        let name = match suffix {
            "" => self.connection_name.clone(),
            suffix => format!("{} {suffix}", self.connection_name),
        };
        let mut failed_this_round = 0;
        while !stop.is_cancelled() && !self.nodes.is_empty() {
            let node = self.next % self.nodes.len();
            let attempt = self.attempt(node, &name, stop).await;
            let Some(attempt) = attempt else { break };
            match attempt {
                Ok(connection) => {
                    tracing::debug!(
                        node = %node_label(&self.nodes[node]),
                        connection = %name,
                        "opened a RabbitMQ connection"
                    );
                    self.current = Some(node);
                    self.next = node;
                    self.backoff.reset();
                    self.last_report = None;
                    return Some(connection);
                }
                Err((failure, error)) => self.report(failure, node, &error),
            }
            self.next = node + 1;
            failed_this_round += 1;
            if failed_this_round >= self.nodes.len() {
                failed_this_round = 0;
                self.wait_backoff(stop).await;
            }
        }
        self.abandon().await;
        None
    }

    /// One attempt on `node`: `None` when stopping.
    async fn attempt(
        &mut self,
        node: usize,
        name: &str,
        stop: &CancellationToken,
    ) -> Option<Result<Connection, (Failure, String)>> {
        let (sender, mut receiver) = oneshot::channel();
        let (url, name) = (self.nodes[node].clone(), name.to_owned());
        let task = tokio::spawn(async move {
            let result = crate::broker::connect(&url, &name).await;
            if let Err(Ok(connection)) = sender.send(result) {
                // Nobody waits for it any more: close what it opened.
                let _ = connection
                    .close(200, "connection attempt abandoned".into())
                    .await;
            }
        });
        tokio::select! {
            result = &mut receiver => Some(match result {
                Ok(Ok(connection)) => Ok(connection),
                Ok(Err(error)) => Err((classify(&error), error.to_string())),
                Err(_) => Err((Failure::Unreachable, "the connection attempt failed".into())),
            }),
            () = tokio::time::sleep(CONNECT_TIMEOUT) => {
                self.stragglers.retain(|t| !t.is_finished());
                self.stragglers.push(task);
                Some(Err((Failure::Unreachable, format!("no answer within {CONNECT_TIMEOUT:?}"))))
            }
            () = stop.cancelled() => {
                self.stragglers.push(task);
                None
            }
        }
    }

    /// Something failed after connecting (declaring the topology, opening a
    /// channel) or a live session was lost: logs it and waits the backoff
    /// before the next `connect`, which starts with another node.
    pub async fn after_failure(&mut self, error: &(dyn Display + Sync), stop: &CancellationToken) {
        let node = self
            .current
            .map(|node| node_label(&self.nodes[node]))
            .unwrap_or_default();
        let failing_over = self.nodes.len() > 1;
        tracing::warn!(
            %error,
            node = %node,
            retry_in_ms = self.backoff.peek().as_millis() as u64,
            "RabbitMQ session failed; {}; {}",
            self.consequence,
            if failing_over { "failing over to another node" } else { "reconnecting" }
        );
        if let Some(current) = self.current {
            self.next = current + 1;
        }
        self.wait_backoff(stop).await;
    }

    async fn wait_backoff(&mut self, stop: &CancellationToken) {
        let delay = self.backoff.next_delay();
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => {}
        }
    }

    fn report(&mut self, failure: Failure, node: usize, error: &dyn Display) {
        let changed = self.last_report.is_none_or(|(last, _)| last != failure);
        let due = self
            .last_report
            .is_none_or(|(_, at)| at.elapsed() >= REPORT_INTERVAL);
        let node = node_label(&self.nodes[node]);
        match failure {
            Failure::LoginRefused if changed => tracing::error!(
                %error,
                %node,
                "RabbitMQ refused the login: check the user and password in AMQP_URL; {} until it accepts",
                self.consequence
            ),
            Failure::Unreachable if changed || due => tracing::warn!(
                %error,
                %node,
                retry_in_ms = self.backoff.peek().as_millis() as u64,
                "cannot reach RabbitMQ; {}",
                self.consequence
            ),
            _ => return,
        }
        self.last_report = Some((failure, Instant::now()));
    }

    /// Stopping: let attempts in progress end by themselves (they close
    /// what they opened), within a bound.
    async fn abandon(&mut self) {
        for task in self.stragglers.drain(..) {
            let _ = tokio::time::timeout(CONNECT_TIMEOUT, task).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_cancelled_reconnector_returns_none_at_once() {
        let stop = CancellationToken::new();
        stop.cancel();
        let mut reconnector =
            Reconnector::new("amqp://guest:guest@127.0.0.1:1/%2f", "test", "idle");
        assert!(reconnector.connect(&stop).await.is_none());
    }

    #[test]
    fn a_refused_login_is_told_apart_from_an_outage() {
        let refused = lapin::Error::from(std::io::Error::other(
            "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN",
        ));
        let down = lapin::Error::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(classify(&refused), Failure::LoginRefused);
        assert_eq!(classify(&down), Failure::Unreachable);
    }
}
