//! The command line: the consumer's flags, the subcommands and the settings
//! they share. Every flag has an environment variable; only secrets hide
//! their values from `--help`.

use chrono::{DateTime, Utc};
use clap::builder::NonEmptyStringValueParser;
use clap::{Args, Parser, Subcommand};
use service_kit::cli::SharedArgs;
use std::net::SocketAddr;

use crate::dlq::LetterFilter;
use crate::stats::{instant, instant_or_ago};

use super::history::HistoryArgs;
use super::reconcile::ReconcileArgs;
use super::twilio::TwilioArgs;

#[derive(Debug, Parser)]
#[command(
    name = "worker",
    version,
    about = "Consumes Twilio status callbacks from RabbitMQ and records them in Postgres",
    long_about = "Consumes Twilio status callbacks from RabbitMQ, de-duplicates them and records \
every status event in Postgres (message_status_events) with a current state per message \
(messages) that never moves backwards. Transient failures are retried with growing delays; \
what cannot be processed goes to the dead-letter queue.\n\n\
With no subcommand it consumes, serving GET /healthz, /readyz and /metrics on WORKER_ADDR, \
and the API (GET /messages/{MessageSid}, GET /stats, POST /messages) behind \
WORKER_API_TOKEN (or, for reads, WORKER_API_READ_TOKENS). Stops gracefully on SIGTERM/SIGINT.\n\n\
Every numeric setting has a range; a value outside it, or a secret still holding REPLACE_ME, \
exits with code 2."
)]
pub struct WorkerCli {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub consume: ConsumeArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply the database migrations and exit.
    Migrate,
    /// Inspect and replay the dead-letter queue.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Look up, once, the messages still without a final status in Twilio's
    /// Messages API and record what it says (as the consumer does every 15
    /// minutes). Prints one JSON line per message.
    Reconcile(ReconcileCommand),
    /// Look after the event history once (as the consumer does every hour):
    /// create the day partitions ahead of need and drop the days past
    /// WORKER_RETENTION_DAYS. Prints one JSON line per day dropped. Writes go
    /// on meanwhile.
    Retention(RetentionCommand),
}

#[derive(Debug, Args)]
pub struct RetentionCommand {
    /// Print the days that would be dropped, but drop nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub history: HistoryArgs,
}

#[derive(Debug, Args)]
pub struct ReconcileCommand {
    /// Ask Twilio and print what would be recorded, but write nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub twilio: TwilioArgs,
    #[command(flatten)]
    pub reconcile: ReconcileArgs,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Print the dead letters, one JSON line each: letter_id, reason,
    /// attempts, MessageSid, first failure time. Leaves the queue as it was.
    ///
    /// Every letter, or with the flags below only those matching all of them.
    List {
        #[command(flatten)]
        filter: LetterFilterArgs,
    },
    /// Move dead letters back to the main queue to be processed again,
    /// their failure history cleared; those not chosen stay, in order.
    ///
    /// Every letter, or with the flags below only those matching all of
    /// them. Fix the cause first: a letter that fails again is dead-lettered
    /// again, under the same letter_id.
    Replay {
        /// Replay at most this many (the first ones chosen).
        #[arg(long)]
        limit: Option<usize>,
        #[command(flatten)]
        filter: LetterFilterArgs,
    },
    /// Delete every dead letter.
    Purge {
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

/// Which dead letters `dlq list` shows and `dlq replay` moves: every one
/// unless a flag narrows it down; with several flags, those matching all.
#[derive(Debug, Default, Args)]
#[command(next_help_heading = "Choosing letters")]
pub struct LetterFilterArgs {
    /// Only letters whose failure reason contains TEXT, in any case
    /// (e.g. "MessageStatus", "retries exhausted").
    #[arg(long, value_name = "TEXT", value_parser = NonEmptyStringValueParser::new())]
    pub reason: Option<String>,

    /// Only letters that first failed at or after WHEN: an RFC 3339 time
    /// (2026-12-01T09:00:00Z) or a duration back from now (30m, 24h, 7d).
    #[arg(long, value_name = "WHEN", value_parser = since)]
    pub since: Option<DateTime<Utc>>,

    /// Only letters that first failed before WHEN, an RFC 3339 time.
    #[arg(long, value_name = "WHEN", value_parser = until)]
    pub until: Option<DateTime<Utc>>,

    /// Only letters of this MessageSid (exactly).
    #[arg(long = "sid", value_name = "MessageSid", value_parser = NonEmptyStringValueParser::new())]
    pub message_sid: Option<String>,

    /// Only the letter with this letter_id (as `dlq list` prints it).
    #[arg(long = "letter", value_name = "LETTER_ID", value_parser = NonEmptyStringValueParser::new())]
    pub letter_id: Option<String>,
}

/// Read as `GET /stats` reads its window, so a time typed for one works for the other.
fn since(raw: &str) -> Result<DateTime<Utc>, String> {
    instant_or_ago("--since", raw, Utc::now())
}

fn until(raw: &str) -> Result<DateTime<Utc>, String> {
    instant("--until", raw)
}

impl LetterFilterArgs {
    /// The filter the flags say; refused when `--since` is not before `--until`.
    pub fn into_filter(self) -> Result<LetterFilter, String> {
        if let (Some(since), Some(until)) = (self.since, self.until) {
            if since >= until {
                return Err(format!(
                    "--since ({}) must be before --until ({})",
                    since.to_rfc3339(),
                    until.to_rfc3339()
                ));
            }
        }
        Ok(LetterFilter {
            reason: self.reason,
            since: self.since,
            until: self.until,
            message_sid: self.message_sid,
            letter_id: self.letter_id,
        })
    }
}

/// What every subcommand takes: the broker, topology and logging shared
/// with ingest, plus the database and the retry schedule.
#[derive(Debug, Args)]
pub struct CommonArgs {
    #[command(flatten)]
    pub shared: SharedArgs,

    /// Postgres connection URL (may hold a password).
    #[arg(
        long,
        global = true,
        hide_env_values = true,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/twilio_status"
    )]
    pub database_url: String,

    /// Delays between processing attempts after a transient failure, in ms;
    /// after the last one a callback is dead-lettered.
    #[arg(
        long,
        global = true,
        env = "WORKER_RETRY_DELAYS_MS",
        value_parser = clap::value_parser!(u64).range(1..=86_400_000),
        default_value = "1000,5000,30000,120000",
        value_delimiter = ','
    )]
    pub retry_delays_ms: Vec<u64>,

    /// Publish every change of a message's status to the change feed (the
    /// `<prefix>.changes` exchange). `false` records and publishes none.
    #[arg(
        long,
        global = true,
        env = "WORKER_CHANGE_FEED",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub change_feed: bool,
}

/// Settings only the consumer (no subcommand) uses.
#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// Listen address of the health, metrics and read API port.
    #[arg(long, env = "WORKER_ADDR", default_value = "127.0.0.1:8081")]
    pub addr: SocketAddr,

    /// Consumers on their own channels, each storing its batches in its own
    /// transaction: how many transactions the worker keeps in flight. The
    /// database pool is sized from it.
    #[arg(
        long,
        env = "WORKER_CONCURRENCY",
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=64),
        default_value_t = 2
    )]
    pub concurrency: usize,

    /// Apply migrations at start (`false` when `worker migrate` runs separately).
    #[arg(long, env = "WORKER_AUTO_MIGRATE", default_value_t = true, action = clap::ArgAction::Set)]
    pub auto_migrate: bool,

    /// Bearer token (`Authorization: Bearer ...`) every API route requires:
    /// GET /messages..., GET /stats, POST /messages. The probes and /metrics
    /// need none. When WORKER_ADDR is not a loopback address and no token is
    /// set, every API route is refused.
    #[arg(long, env = "WORKER_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,

    /// Comma-separated bearer tokens that may only read (GET /messages...,
    /// GET /stats): for dashboards and support staff.
    #[arg(
        long,
        env = "WORKER_API_READ_TOKENS",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub api_read_tokens: Vec<String>,

    #[command(flatten)]
    pub twilio: TwilioArgs,

    #[command(flatten)]
    pub reconcile: ReconcileArgs,

    #[command(flatten)]
    pub history: HistoryArgs,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;

    fn dlq(args: &[&str]) -> Result<DlqCommand, clap::Error> {
        let argv = ["worker", "dlq"].iter().chain(args);
        match WorkerCli::try_parse_from(argv)?.command {
            Some(Command::Dlq(command)) => Ok(command),
            other => panic!("not a dlq command: {other:?}"),
        }
    }

    fn at(raw: &str) -> DateTime<Utc> {
        instant("test", raw).unwrap()
    }

    #[test]
    fn dlq_list_and_replay_take_every_filter_flag() {
        let flags = [
            "--reason",
            "timeout",
            "--since",
            "2026-12-01T00:00:00Z",
            "--until",
            "2026-12-02T00:00:00+01:00",
            "--sid",
            "SM1",
            "--letter",
            "0123abcd",
        ];
        let expected = LetterFilter {
            reason: Some("timeout".into()),
            since: Some(at("2026-12-01T00:00:00Z")),
            until: Some(at("2026-12-01T23:00:00Z")),
            message_sid: Some("SM1".into()),
            letter_id: Some("0123abcd".into()),
        };
        let DlqCommand::List { filter } = dlq(&[&["list"][..], &flags].concat()).unwrap() else {
            panic!("not list");
        };
        assert_eq!(filter.into_filter(), Ok(expected.clone()));
        let DlqCommand::Replay { filter, limit } =
            dlq(&[&["replay"][..], &flags, &["--limit", "3"]].concat()).unwrap()
        else {
            panic!("not replay");
        };
        assert_eq!(limit, Some(3));
        assert_eq!(filter.into_filter(), Ok(expected));
    }

    #[test]
    fn dlq_without_flags_is_the_empty_filter() {
        let DlqCommand::List { filter } = dlq(&["list"]).unwrap() else {
            panic!("not list");
        };
        assert!(filter.into_filter().unwrap().is_empty());
        let DlqCommand::Replay { filter, limit } = dlq(&["replay"]).unwrap() else {
            panic!("not replay");
        };
        assert_eq!(limit, None);
        assert!(filter.into_filter().unwrap().is_empty());
    }

    #[test]
    fn dlq_since_takes_a_duration_back_from_now() {
        let before = Utc::now();
        let DlqCommand::List { filter } = dlq(&["list", "--since", "24h"]).unwrap() else {
            panic!("not list");
        };
        let since = filter.since.unwrap();
        let day = chrono::Duration::hours(24);
        assert!(
            before - day <= since && since <= Utc::now() - day,
            "{since}"
        );
        let DlqCommand::Replay { filter, .. } = dlq(&["replay", "--since", "7d"]).unwrap() else {
            panic!("not replay");
        };
        assert!(filter.since.unwrap() <= Utc::now() - chrono::Duration::days(7));
    }

    #[test]
    fn dlq_malformed_filter_values_are_usage_errors_naming_the_flag() {
        for (args, flag) in [
            (&["list", "--since", "yesterday"][..], "--since"),
            (&["replay", "--until", "24h"][..], "--until"),
            (&["list", "--until", "2026-13-01T00:00:00Z"][..], "--until"),
            (&["replay", "--reason", ""][..], "--reason"),
            (&["list", "--sid", ""][..], "--sid"),
            (&["replay", "--letter", ""][..], "--letter"),
            (&["replay", "--limit", "many"][..], "--limit"),
        ] {
            let error = dlq(args).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{args:?}");
            assert!(
                matches!(
                    error.kind(),
                    ErrorKind::ValueValidation | ErrorKind::InvalidValue
                ),
                "{args:?}: {error}"
            );
            let message = error.to_string();
            assert!(message.contains(flag), "{args:?}: {message}");
        }
        // Purge chooses no letters.
        assert_eq!(
            dlq(&["purge", "--sid", "SM1"]).unwrap_err().kind(),
            ErrorKind::UnknownArgument
        );
    }

    #[test]
    fn dlq_since_must_be_before_until() {
        let DlqCommand::Replay { filter, .. } = dlq(&[
            "replay",
            "--since",
            "2026-12-02T00:00:00Z",
            "--until",
            "2026-12-01T00:00:00Z",
        ])
        .unwrap() else {
            panic!("not replay");
        };
        let refused = filter.into_filter().unwrap_err();
        assert!(refused.contains("--since"), "{refused}");
    }
}
