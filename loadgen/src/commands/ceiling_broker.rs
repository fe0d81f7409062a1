//! `ceiling-broker`: runs the broker ceiling of [`crate::ceiling_broker`]
//! against the local RabbitMQ and reports confirmed publishes per second and
//! confirm latency. Fails when a publish was not confirmed.

use clap::Args;
use std::time::Duration;

use super::common::DEFAULT_AMQP_URL;
use super::report::{cpu_since, format_percentiles, print_json, process_cpu_seconds, WithCpu};
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
    /// Hard stop in seconds.
    #[arg(long, default_value_t = 120)]
    time_limit_secs: u64,
    #[arg(long)]
    json: bool,
}

pub async fn run(args: CeilingBrokerArgs) -> anyhow::Result<bool> {
    local::ensure_loopback(&args.amqp_url)?;
    let cpu_before = process_cpu_seconds();
    let report = ceiling_broker::run(
        &args.amqp_url,
        args.concurrency.clamp(1, 10_000),
        args.messages.min(load::MAX_REQUESTS),
        Duration::from_secs(args.time_limit_secs.clamp(1, 3600)),
    )
    .await?;
    if args.json {
        print_json(&WithCpu {
            report: &report,
            client_cpu_s: cpu_since(cpu_before),
        })?;
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
