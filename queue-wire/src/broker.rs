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

/// Whether `AMQP_URL` holds one or more (comma-separated) AMQP URIs that
/// parse. The reason never quotes a value (nor the parser's message, which
/// may): it may hold a password.
pub fn validate_amqp_url(amqp_url: &str) -> Result<(), String> {
    let nodes = nodes(amqp_url);
    if nodes.is_empty() {
        return Err("it names no URL".into());
    }
    for (index, node) in nodes.iter().enumerate() {
        validate_one(node).map_err(|reason| match nodes.len() {
            1 => reason,
            count => format!("URL {} of {count}: {reason}", index + 1),
        })?;
    }
    Ok(())
}

fn validate_one(amqp_url: &str) -> Result<(), String> {
    if !(amqp_url.starts_with("amqp://") || amqp_url.starts_with("amqps://")) {
        return Err("it must start with amqp:// or amqps://".into());
    }
    amqp_url
        .parse::<lapin::uri::AMQPUri>()
        .map(|_| ())
        .map_err(|_| {
            "it cannot be parsed; expected amqp[s]://user:password@host[:port]/vhost \
         (the value is not shown: it may hold a password)"
                .into()
        })
}

/// The nodes an `AMQP_URL` names: one URL, or several of one cluster,
/// comma-separated.
pub fn nodes(amqp_url: &str) -> Vec<&str> {
    amqp_url
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .collect()
}

/// A node as logs name it: host:port, never the credentials.
pub fn node_label(amqp_url: &str) -> String {
    match amqp_url.trim().parse::<lapin::uri::AMQPUri>() {
        Ok(uri) => format!("{}:{}", uri.authority.host, uri.authority.port),
        Err(_) => "?".to_owned(),
    }
}

/// A connection to the first node of `amqp_url` that answers (for one-shot
/// commands; services keep theirs with a `Reconnector`).
pub async fn connect_any(amqp_url: &str, connection_name: &str) -> lapin::Result<Connection> {
    let mut last = None;
    for node in nodes(amqp_url) {
        match connect(node, connection_name).await {
            Ok(connection) => return Ok(connection),
            Err(error) => {
                tracing::warn!(node = %node_label(node), %error, "cannot reach this RabbitMQ node; trying the next");
                last = Some(error);
            }
        }
    }
    Err(last.unwrap_or_else(|| lapin::Error::from(std::io::Error::other("AMQP_URL names no node"))))
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

    #[test]
    fn several_nodes_are_checked_one_by_one() {
        let cluster = "amqp://u:p@10.0.0.1:5672/%2f, amqp://u:p@10.0.0.2:5673/%2f,";
        assert_eq!(validate_amqp_url(cluster), Ok(()));
        assert_eq!(nodes(cluster).len(), 2);
        assert_eq!(node_label(nodes(cluster)[1]), "10.0.0.2:5673");
        let reason = validate_amqp_url("amqp://u:s3cr3t@h1/%2f,http://u:s3cr3t@h2").unwrap_err();
        assert!(reason.starts_with("URL 2 of 2"), "{reason}");
        assert!(!reason.contains("s3cr3t"));
        assert!(validate_amqp_url(" , ").is_err());
    }
}
