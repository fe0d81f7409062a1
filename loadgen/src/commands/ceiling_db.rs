//! `ceiling-db`: runs the database ceiling of [`crate::ceiling_db`] in a
//! scratch database beside the given one and reports rows per second and
//! batch latency.

use clap::Args;

use super::common::{CeilingRunArgs, DEFAULT_DATABASE_URL};
use super::report::{format_percentiles, print_json_with_cpu, process_cpu_seconds};
use crate::{ceiling_db, load, local};

#[derive(Debug, Args)]
pub struct CeilingDbArgs {
    /// Any database URL on the server; the scratch database is created beside it.
    #[arg(long, default_value = DEFAULT_DATABASE_URL)]
    database_url: String,
    /// Rows to insert.
    #[arg(long, default_value_t = 100_000)]
    rows: u64,
    /// Rows per statement (the worker stores up to 256 a statement).
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Batches in flight on their own connections (the worker runs one).
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Which statement: the worker's own, or its event insert alone.
    #[arg(long, value_enum, default_value = "events")]
    statement: ceiling_db::CeilingStatement,
    /// SQL run on the scratch database after the migrations: a schema
    /// variant to measure (an index dropped or changed, a fill factor).
    #[arg(long)]
    schema_variant: Option<String>,
    #[command(flatten)]
    ceiling: CeilingRunArgs,
}

pub async fn run(args: CeilingDbArgs) -> anyhow::Result<bool> {
    local::ensure_loopback(&args.database_url)?;
    let cpu_before = process_cpu_seconds();
    let report = ceiling_db::run(
        &args.database_url,
        args.rows.min(load::MAX_REQUESTS),
        args.batch,
        args.concurrency.clamp(1, 64),
        args.ceiling.time_limit(),
        args.statement,
        args.schema_variant.as_deref(),
    )
    .await?;
    if args.ceiling.json {
        // The CPU time includes building the statements before the timed part.
        print_json_with_cpu(&report, cpu_before)?;
    } else {
        let statement = match report.statement {
            ceiling_db::CeilingStatement::Events => "event INSERT ... ON CONFLICT DO NOTHING",
            ceiling_db::CeilingStatement::Worker => "worker statement (insert, fold, upsert)",
        };
        println!(
            "Postgres, {}-row {statement}, {} in flight (scratch database {}, dropped):",
            report.batch, report.concurrency, report.database
        );
        println!(
            "inserted       {} rows in {:.2} s = {:.0} rows/s",
            report.rows, report.elapsed_s, report.rows_per_s
        );
        println!(
            "batch ms       {}",
            format_percentiles(&report.batch_latency_ms)
        );
    }
    Ok(true)
}
