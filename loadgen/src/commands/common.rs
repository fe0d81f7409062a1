//! What several subcommands' arguments share: the default local URLs, where
//! callbacks go and how they are signed (`send`, `run`), how long to wait
//! for a run's rows (`run`, `check`), and how a ceiling stops and prints
//! (`ceiling-broker`, `ceiling-db`).

use clap::Args;
use std::time::Duration;

use crate::persistence::{self, Expectation, PersistenceReport};

pub const DEFAULT_URL: &str = "http://127.0.0.1:8080/twilio/status";
pub use service_kit::cli::DEFAULT_AMQP_URL;
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/twilio_status";

/// Where callbacks are sent and how they are signed.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// Ingest's callback URL (loopback only).
    #[arg(long, default_value = DEFAULT_URL)]
    pub url: String,
    /// Sign this URL instead of --url (when ingest has PUBLIC_BASE_URL set).
    #[arg(long)]
    pub signed_url: Option<String>,
    /// Auth token to sign with (the one ingest verifies with).
    #[arg(long, env = "TWILIO_AUTH_TOKEN", hide_env_values = true, value_parser = non_empty_token)]
    pub token: String,
}

impl TargetArgs {
    /// The URL the signature covers.
    pub fn signed_url(&self) -> String {
        self.signed_url.clone().unwrap_or_else(|| self.url.clone())
    }
}

/// How a ceiling stops and prints.
#[derive(Debug, Args)]
pub struct CeilingRunArgs {
    /// Hard stop in seconds.
    #[arg(long, default_value_t = 120)]
    time_limit_secs: u64,
    #[arg(long)]
    pub json: bool,
}

impl CeilingRunArgs {
    pub fn time_limit(&self) -> Duration {
        Duration::from_secs(self.time_limit_secs.clamp(1, 3600))
    }
}

/// How long to wait for a run's rows in the worker's database.
#[derive(Debug, Args)]
pub struct PersistWaitArgs {
    /// Longest wait for the rows, in seconds.
    #[arg(long, default_value_t = 120)]
    persist_timeout_secs: u64,
    /// Give up when the row count has not moved for this many seconds.
    #[arg(long, default_value_t = 30)]
    stall_secs: u64,
}

impl PersistWaitArgs {
    /// Waits for the rows `expect` describes, within these bounds, and checks them.
    pub async fn wait_and_check(
        &self,
        database_url: &str,
        expect: Expectation,
    ) -> anyhow::Result<PersistenceReport> {
        persistence::wait_and_check(
            database_url,
            expect,
            Duration::from_secs(self.persist_timeout_secs.clamp(1, 3600)),
            Duration::from_secs(self.stall_secs.max(1)),
        )
        .await
    }
}

/// An empty token signs nothing ingest would accept: refuse it up front.
pub fn non_empty_token(value: &str) -> Result<String, String> {
    if value.trim().is_empty() {
        Err(
            "the auth token is empty: pass --token or set TWILIO_AUTH_TOKEN \
             (`cargo xtask up` runs with dev-auth-token)"
                .into(),
        )
    } else {
        Ok(value.to_owned())
    }
}
