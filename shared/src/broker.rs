//! Connecting to RabbitMQ the same way from both services.

use lapin::{Connection, ConnectionProperties};
use std::time::Duration;

/// Opens a connection with lapin's auto-recovery on: after a broker restart
/// it reconnects and replays topology, consumers, confirm mode and QoS. The
/// reconnect backoff is short so readiness comes back soon after the broker.
pub async fn connect(amqp_url: &str, connection_name: &str) -> lapin::Result<Connection> {
    let properties = ConnectionProperties::default()
        .with_connection_name(connection_name.into())
        .enable_auto_recover()
        .configure_backoff(|backoff| {
            backoff
                .with_min_delay(Duration::from_millis(100))
                .with_max_delay(Duration::from_secs(2))
                .with_max_times(30)
        });
    Connection::connect(amqp_url, properties).await
}

/// Whether a connection string parses as an AMQP URI.
pub fn validate_amqp_url(amqp_url: &str) -> Result<(), String> {
    amqp_url.parse::<lapin::uri::AMQPUri>().map(|_| ())
}
