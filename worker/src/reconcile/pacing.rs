//! Twilio's rate limits, per account: a bounded number of lookups in
//! flight (the caller's `buffer_unordered`), and a shared pause that a 429
//! sets for everyone asking for that account, as long as `Retry-After` says.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// The longest pause a `Retry-After` may impose on one run.
const MAX_PAUSE: Duration = Duration::from_secs(300);

/// Backoff when a 429 names no `Retry-After`: 1 s, doubling.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.min(16)).min(MAX_PAUSE)
}

#[derive(Debug)]
pub struct Pacer {
    not_before: Mutex<Instant>,
    /// Rate limited through every attempt: the account waits for the next run.
    given_up: AtomicBool,
}

impl Default for Pacer {
    fn default() -> Self {
        Self {
            not_before: Mutex::new(Instant::now()),
            given_up: AtomicBool::new(false),
        }
    }
}

impl Pacer {
    /// Waits until no pause is in force.
    pub async fn ready(&self) {
        loop {
            let until = *self.not_before.lock().await;
            if until <= Instant::now() {
                return;
            }
            tokio::time::sleep_until(until).await;
        }
    }

    pub fn give_up(&self) {
        self.given_up.store(true, Ordering::SeqCst);
    }

    pub fn given_up(&self) -> bool {
        self.given_up.load(Ordering::SeqCst)
    }

    /// Holds every lookup for this account back for `pause` from now.
    pub async fn pause(&self, pause: Duration) {
        let until = Instant::now() + pause.min(MAX_PAUSE);
        let mut not_before = self.not_before.lock().await;
        if until > *not_before {
            *not_before = until;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(40), MAX_PAUSE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_every_caller_until_it_ends() {
        let pacer = Pacer::default();
        let start = Instant::now();
        pacer.ready().await;
        assert_eq!(Instant::now(), start);
        pacer.pause(Duration::from_secs(3)).await;
        // A shorter pause does not shorten a longer one.
        pacer.pause(Duration::from_secs(1)).await;
        pacer.ready().await;
        assert_eq!(Instant::now() - start, Duration::from_secs(3));
    }
}
