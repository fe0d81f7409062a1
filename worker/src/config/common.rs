//! What every subcommand needs: the broker, the topology (with the retry
//! schedule), the database, the log format and whether the change feed is on.

use queue_wire::topology::Topology;
use service_kit::telemetry::LogFormat;
use std::time::Duration;

use super::cli::CommonArgs;
use super::error::{refuse_placeholder, ConfigError};
use crate::feed::ChangeFeed;

/// What every subcommand needs.
#[derive(Clone, Debug)]
pub struct CommonConfig {
    pub amqp_url: String,
    pub database_url: String,
    pub topology: Topology,
    pub log_format: LogFormat,
    /// Whether changes of status are recorded and published.
    pub change_feed: ChangeFeed,
}

impl TryFrom<CommonArgs> for CommonConfig {
    type Error = ConfigError;

    fn try_from(args: CommonArgs) -> Result<Self, ConfigError> {
        let shared = args.shared;
        refuse_placeholder("AMQP_URL", std::iter::once(&shared.amqp_url))?;
        refuse_placeholder("DATABASE_URL", std::iter::once(&args.database_url))?;
        queue_wire::broker::check_amqp_url(&shared.amqp_url).map_err(ConfigError::AmqpUrl)?;
        let scheme_ok = args.database_url.starts_with("postgres://")
            || args.database_url.starts_with("postgresql://");
        if !scheme_ok || args.database_url.len() <= "postgres://".len() {
            return Err(ConfigError::DatabaseUrl);
        }
        if args.retry_delays_ms.is_empty() {
            return Err(ConfigError::RetryDelays);
        }
        let delays = args
            .retry_delays_ms
            .iter()
            .map(|ms| Duration::from_millis(*ms))
            .collect();
        Ok(Self {
            amqp_url: shared.amqp_url,
            database_url: args.database_url,
            topology: Topology::new(shared.topology_prefix).with_retry_delays(delays),
            log_format: shared.log_format,
            change_feed: if args.change_feed {
                ChangeFeed::On
            } else {
                ChangeFeed::Off
            },
        })
    }
}
