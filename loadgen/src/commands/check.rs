//! `check`: waits for and checks what the worker stored for an earlier `run`,
//! by its run id and the counts that run printed.

use anyhow::Context;
use clap::Args;

use super::common::{PersistWaitArgs, DEFAULT_DATABASE_URL};
use super::report::{print_json, print_persistence};
use crate::local;
use crate::persistence::Expectation;
use crate::workload::RunId;

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[arg(long, default_value = DEFAULT_DATABASE_URL)]
    database_url: String,
    /// The run id a `run` printed.
    #[arg(long)]
    run_id: String,
    /// Unique accepted callbacks of that run (its unique_accepted_events).
    #[arg(long)]
    expect_events: u64,
    /// Messages with an accepted callback (its accepted_messages).
    #[arg(long)]
    expect_messages: u64,
    /// Callbacks whose requests got no answer (its unknown_outcome_events).
    #[arg(long, default_value_t = 0)]
    unknown: u64,
    #[command(flatten)]
    wait: PersistWaitArgs,
    #[arg(long)]
    json: bool,
}

pub async fn run(args: CheckArgs) -> anyhow::Result<bool> {
    local::ensure_loopback(&args.database_url)?;
    let run = RunId::parse(&args.run_id).context("--run-id must be 8 hex digits")?;
    let expect = Expectation {
        run,
        events: args.expect_events,
        messages: args.expect_messages,
        unknown: args.unknown,
    };
    let report = args.wait.wait_and_check(&args.database_url, expect).await?;
    if args.json {
        print_json(&report)?;
    } else {
        print_persistence(&report);
    }
    Ok(report.ok())
}
