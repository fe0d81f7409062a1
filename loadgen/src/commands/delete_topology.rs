//! `delete-topology`: deletes the exchange and queues of a topology prefix
//! after a benchmark; refuses the default (production) prefix.

use anyhow::{bail, Context};
use clap::Args;

use super::common::DEFAULT_AMQP_URL;
use crate::local;

#[derive(Debug, Args)]
pub struct DeleteTopologyArgs {
    #[arg(long, hide_env_values = true, env = "AMQP_URL", default_value = DEFAULT_AMQP_URL)]
    amqp_url: String,
    /// The AMQP_TOPOLOGY_PREFIX the services ran with (not the default one).
    #[arg(long)]
    prefix: String,
}

pub async fn run(args: DeleteTopologyArgs) -> anyhow::Result<bool> {
    local::ensure_loopback(&args.amqp_url)?;
    if args.prefix == queue_wire::topology::DEFAULT_PREFIX {
        bail!("refusing to delete the default topology {}", args.prefix);
    }
    let connection =
        lapin::Connection::connect(&args.amqp_url, lapin::ConnectionProperties::default())
            .await
            .context("cannot connect to RabbitMQ")?;
    let channel = connection.create_channel().await?;
    let deleted = queue_wire::topology::Topology::new(args.prefix.clone())
        .delete(&channel)
        .await;
    let _ = connection.close(200, "loadgen clean-up".into()).await;
    deleted.with_context(|| format!("deleting topology {}", args.prefix))?;
    eprintln!("deleted the exchange and queues of {}", args.prefix);
    Ok(true)
}
