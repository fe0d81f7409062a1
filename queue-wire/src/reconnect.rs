//! (Re)connecting to RabbitMQ, the one way both services do it.
//!
//! Each attempt has a deadline (a broker that accepts TCP but never answers
//! would otherwise hang it) and runs as a task of its own that is never
//! dropped half-way: lapin's I/O thread panics when a connect it is driving
//! is cancelled. Failures wait a growing backoff. An outage is logged at
//! WARN when its reason changes and then at most every few seconds; a
//! refused login is an ERROR, once, since only an operator can fix it.

use lapin::Connection;
use service_kit::backoff::Backoff;
use std::fmt::Display;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

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
    amqp_url: String,
    connection_name: String,
    /// What the service cannot do while disconnected, for the log line
    /// ("callbacks get 503", "not consuming").
    consequence: &'static str,
    backoff: Backoff,
    last_report: Option<(Failure, Instant)>,
    in_flight: Option<JoinHandle<lapin::Result<Connection>>>,
}

impl Reconnector {
    pub fn new(
        amqp_url: impl Into<String>,
        connection_name: impl Into<String>,
        consequence: &'static str,
    ) -> Self {
        Self {
            amqp_url: amqp_url.into(),
            connection_name: connection_name.into(),
            consequence,
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
            last_report: None,
            in_flight: None,
        }
    }

    /// A new connection, trying until one is made; `None` once `stop` is
    /// cancelled (an attempt in progress is then left to end by itself and
    /// whatever it opened is closed).
    pub async fn connect(&mut self, stop: &CancellationToken) -> Option<Connection> {
        self.connect_named("", stop).await
    }

    /// As `connect`, for a second connection of the same owner: its name
    /// (shown in the management UI) gets `suffix` appended.
    pub async fn connect_named(
        &mut self,
        suffix: &str,
        stop: &CancellationToken,
    ) -> Option<Connection> {
        let name = match suffix {
            "" => self.connection_name.clone(),
            suffix => format!("{} {suffix}", self.connection_name),
        };
        while !stop.is_cancelled() {
            let handle = self.in_flight.get_or_insert_with(|| {
                let (url, name) = (self.amqp_url.clone(), name.clone());
                tokio::spawn(async move { crate::broker::connect(&url, &name).await })
            });
            let attempt = tokio::select! {
                joined = handle => {
                    self.in_flight = None;
                    Some(joined.unwrap_or_else(|error| {
                        Err(lapin::Error::from(std::io::Error::other(error.to_string())))
                    }))
                }
                () = tokio::time::sleep(CONNECT_TIMEOUT) => None,
                () = stop.cancelled() => break,
            };
            match attempt {
                Some(Ok(connection)) => {
                    self.backoff.reset();
                    self.last_report = None;
                    return Some(connection);
                }
                Some(Err(error)) => self.report(classify(&error), &error),
                None => self.report(
                    Failure::Unreachable,
                    &format!("no answer within {CONNECT_TIMEOUT:?}"),
                ),
            }
            // A slow attempt goes on in the background; no new one until it ends.
            if self.in_flight.is_none() {
                self.wait_backoff(stop).await;
            }
        }
        self.abandon().await;
        None
    }

    /// Something failed after connecting (declaring the topology, opening a
    /// channel) or a live session was lost: logs it and waits the backoff
    /// before the next `connect`.
    pub async fn after_failure(&mut self, error: &(dyn Display + Sync), stop: &CancellationToken) {
        tracing::warn!(
            %error,
            retry_in_ms = self.backoff.peek().as_millis() as u64,
            "RabbitMQ session failed; {}; reconnecting",
            self.consequence
        );
        self.wait_backoff(stop).await;
    }

    async fn wait_backoff(&mut self, stop: &CancellationToken) {
        let delay = self.backoff.next_delay();
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => {}
        }
    }

    fn report(&mut self, failure: Failure, error: &dyn Display) {
        let changed = self.last_report.is_none_or(|(last, _)| last != failure);
        let due = self
            .last_report
            .is_none_or(|(_, at)| at.elapsed() >= REPORT_INTERVAL);
        match failure {
            Failure::LoginRefused if changed => tracing::error!(
                %error,
                "RabbitMQ refused the login: check the user and password in AMQP_URL; {} until it accepts",
                self.consequence
            ),
            Failure::Unreachable if changed || due => tracing::warn!(
                %error,
                retry_in_ms = self.backoff.peek().as_millis() as u64,
                "cannot reach RabbitMQ; {}",
                self.consequence
            ),
            _ => return,
        }
        self.last_report = Some((failure, Instant::now()));
    }

    /// Stopping: let an attempt in progress end by itself, and close what it opened.
    async fn abandon(&mut self) {
        if let Some(attempt) = self.in_flight.take() {
            if let Ok(Ok(Ok(connection))) = tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
                let _ = connection.close(200, "shutting down".into()).await;
            }
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
