//! Connecting to RabbitMQ the same way from both services.

use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use std::time::Duration;

/// Opens a named connection (the name shows in the management UI).
///
/// No lapin auto-recovery: its first connect retries for about a minute in
/// an I/O thread that outlives a shutdown (and panics when the runtime goes
/// away under it), and deliveries of a dead connection can no longer be
/// acked anyway. The owner of a connection supervises it and opens a new one.
pub async fn connect(amqp_url: &str, connection_name: &str) -> lapin::Result<Connection> {
    let properties = ConnectionProperties::default().with_connection_name(connection_name.into());
    Connection::connect(amqp_url, properties).await
}

/// Why a confirmed publish did not land.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ConfirmError {
    #[error("RabbitMQ error: {0}")]
    Broker(#[from] lapin::Error),
    #[error("RabbitMQ refused the message (nack)")]
    Nacked,
    #[error("RabbitMQ returned the message as unroutable")]
    Unroutable,
    #[error("no publisher confirm within {0:?} (broker blocked?)")]
    Timeout(Duration),
    #[error("the channel is not in confirm mode")]
    NotConfirmMode,
}

/// Publishes one persistent-or-not message as `mandatory` on a confirm-mode
/// channel and waits for its confirm, one deadline covering both. `Ok` only
/// when the broker acked it and did not return it: an unroutable mandatory
/// message is confirmed as an ack *with* the returned message attached.
pub async fn publish_confirmed(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
    deadline: Duration,
) -> Result<(), ConfirmError> {
    let confirmed = async {
        let confirm = channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                body,
                properties,
            )
            .await?;
        confirm.await
    };
    let confirmation = tokio::time::timeout(deadline, confirmed)
        .await
        .map_err(|_| ConfirmError::Timeout(deadline))??;
    match confirmation {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(_returned)) => Err(ConfirmError::Unroutable),
        Confirmation::Nack(_) => Err(ConfirmError::Nacked),
        Confirmation::NotRequested => Err(ConfirmError::NotConfirmMode),
    }
}

/// Whether a connection string parses as an AMQP URI. The reason never
/// quotes the value (nor the parser's message, which may): it may hold a
/// password.
pub fn validate_amqp_url(amqp_url: &str) -> Result<(), String> {
    let trimmed = amqp_url.trim();
    if !(trimmed.starts_with("amqp://") || trimmed.starts_with("amqps://")) {
        return Err("it must start with amqp:// or amqps://".into());
    }
    trimmed
        .parse::<lapin::uri::AMQPUri>()
        .map(|_| ())
        .map_err(|_| {
            "it cannot be parsed; expected amqp[s]://user:password@host[:port]/vhost \
         (the value is not shown: it may hold a password)"
                .into()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_url_is_refused_without_echoing_its_secret() {
        for url in [
            "amqp://guest:s3cr3t@127.0.0.1:notaport/%2f",
            "amqp://guest:s3cr3t@[::1/%2f",
            "amqp//guest:s3cr3t@127.0.0.1",
            "http://guest:s3cr3t@127.0.0.1:5672",
            "amqp://guest:s3cr3t@127.0.0.1:99999/%2f",
        ] {
            let reason = validate_amqp_url(url).expect_err(url);
            assert!(!reason.contains("s3cr3t"), "{url}: {reason}");
        }
        assert_eq!(
            validate_amqp_url("amqp://guest:guest@127.0.0.1:5672/%2f"),
            Ok(())
        );
    }
}
