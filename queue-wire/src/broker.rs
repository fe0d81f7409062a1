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

/// What is wrong with one URL of an `AMQP_URL`. Never quotes the value
/// (nor the parser's message, which may): it may hold a password.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AmqpUrlProblem {
    #[error("it must start with amqp:// or amqps://")]
    Scheme,
    #[error(
        "it cannot be parsed; expected amqp[s]://user:password@host[:port]/vhost \
         (the value is not shown: it may hold a password)"
    )]
    Unparsable,
}

/// Why an `AMQP_URL` is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidAmqpUrl {
    #[error("it names no URL")]
    NoUrl,
    /// The only URL it names.
    #[error(transparent)]
    Url(AmqpUrlProblem),
    /// URL `index` (from 1) of `count`.
    #[error("URL {index} of {count}: {problem}")]
    Node {
        index: usize,
        count: usize,
        problem: AmqpUrlProblem,
    },
}

/// Checks that `AMQP_URL` holds one or more (comma-separated) AMQP URIs
/// that parse.
pub fn check_amqp_url(amqp_url: &str) -> Result<(), InvalidAmqpUrl> {
    let nodes = nodes(amqp_url);
    if nodes.is_empty() {
        return Err(InvalidAmqpUrl::NoUrl);
    }
    for (index, node) in nodes.iter().enumerate() {
        check_one(node).map_err(|problem| match nodes.len() {
            1 => InvalidAmqpUrl::Url(problem),
            count => InvalidAmqpUrl::Node {
                index: index + 1,
                count,
                problem,
            },
        })?;
    }
    Ok(())
}

fn check_one(amqp_url: &str) -> Result<(), AmqpUrlProblem> {
    if !(amqp_url.starts_with("amqp://") || amqp_url.starts_with("amqps://")) {
        return Err(AmqpUrlProblem::Scheme);
    }
    amqp_url
        .parse::<lapin::uri::AMQPUri>()
        .map(|_| ())
        .map_err(|_| AmqpUrlProblem::Unparsable)
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

    /// The refusal as the configuration error shows it.
    fn as_text(amqp_url: &str) -> Result<(), String> {
        check_amqp_url(amqp_url).map_err(|error| error.to_string())
    }

    #[test]
    fn a_bad_url_is_refused_without_echoing_its_secret() {
        for url in [
            "amqp://guest:s3cr3t@127.0.0.1:notaport/%2f",
            "amqp://guest:s3cr3t@[::1/%2f",
            "amqp//guest:s3cr3t@127.0.0.1",
            "http://guest:s3cr3t@127.0.0.1:5672",
            "amqp://guest:s3cr3t@127.0.0.1:99999/%2f",
        ] {
            let reason = as_text(url).expect_err(url);
            assert!(!reason.contains("s3cr3t"), "{url}: {reason}");
        }
        assert_eq!(as_text("amqp://guest:guest@127.0.0.1:5672/%2f"), Ok(()));
    }

    #[test]
    fn several_nodes_are_checked_one_by_one() {
        let cluster = "amqp://u:p@10.0.0.1:5672/%2f, amqp://u:p@10.0.0.2:5673/%2f,";
        assert_eq!(as_text(cluster), Ok(()));
        assert_eq!(nodes(cluster).len(), 2);
        assert_eq!(node_label(nodes(cluster)[1]), "10.0.0.2:5673");
        let reason = as_text("amqp://u:s3cr3t@h1/%2f,http://u:s3cr3t@h2").unwrap_err();
        assert!(reason.starts_with("URL 2 of 2"), "{reason}");
        assert!(!reason.contains("s3cr3t"));
        assert!(as_text(" , ").is_err());
    }

    #[test]
    fn the_refusal_is_typed() {
        assert_eq!(check_amqp_url(" , "), Err(InvalidAmqpUrl::NoUrl));
        assert_eq!(
            check_amqp_url("http://h"),
            Err(InvalidAmqpUrl::Url(AmqpUrlProblem::Scheme))
        );
        assert_eq!(
            check_amqp_url("amqp://h/%2f,amqp://u:p@h:99999/%2f"),
            Err(InvalidAmqpUrl::Node {
                index: 2,
                count: 2,
                problem: AmqpUrlProblem::Unparsable
            })
        );
        assert_eq!(
            as_text("http://h").unwrap_err(),
            "it must start with amqp:// or amqps://"
        );
        assert_eq!(
            AmqpUrlProblem::Unparsable.to_string(),
            "it cannot be parsed; expected amqp[s]://user:password@host[:port]/vhost \
             (the value is not shown: it may hold a password)"
        );
    }
}
