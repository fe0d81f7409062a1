//! `ceiling-broker`: runs the broker ceiling of [`crate::ceiling_broker`]
//! against the local RabbitMQ and reports confirmed publishes per second and
//! confirm latency. Fails when a publish was not confirmed.

use clap::Args;

use super::common::{CeilingRunArgs, DEFAULT_AMQP_URL};
use super::report::{format_percentiles, print_json_with_cpu, process_cpu_seconds};
use crate::{ceiling_broker, load, local};

#[derive(Debug, Args)]
pub struct CeilingBrokerArgs {
    #[arg(long, hide_env_values = true, env = "AMQP_URL", default_value = DEFAULT_AMQP_URL)]
    amqp_url: String,
    /// Publishes in flight on the one confirm channel.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Messages to publish.
    #[arg(long, default_value_t = 20_000)]
    messages: u64,
    #[command(flatten)]
    ceiling: CeilingRunArgs,
}

pub async fn run(args: CeilingBrokerArgs) -> anyhow::Result<bool> {
    local::ensure_loopback(&args.amqp_url)?;
    let cpu_before = process_cpu_seconds();
    let report = ceiling_broker::run(
        &args.amqp_url,
        args.concurrency.clamp(1, 10_000),
        args.messages.min(load::MAX_REQUESTS),
        args.ceiling.time_limit(),
    )
    .await?;
    if args.ceiling.json {
        print_json_with_cpu(&report, cpu_before)?;
    } else {
        println!(
            "RabbitMQ quorum queue, {} publishes in flight on one confirm channel, {}-byte bodies:",
            report.concurrency, report.body_bytes
        );
        println!(
            "confirmed      {} in {:.2} s = {:.0}/s (failed {})",
            report.confirmed, report.elapsed_s, report.confirmed_per_s, report.failed
        );
        println!(
            "confirm ms     {}",
            format_percentiles(&report.confirm_latency_ms)
        );
    }
    Ok(report.failed == 0)
}
