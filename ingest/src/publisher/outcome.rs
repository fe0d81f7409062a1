//! What publishing a callback comes to: where it is now, or why it is not
//! kept.

use crate::link::LinkError;
use crate::spool::SpoolError;

#[derive(Clone, Debug, thiserror::Error)]
pub(crate) enum PublishError {
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    NotConfirmed(#[from] queue_wire::broker::ConfirmError),
    #[error("RabbitMQ has stopped confirming in time")]
    Unresponsive,
    #[error("RabbitMQ could not confirm, and the spool could not take it: {0}")]
    Spool(#[source] SpoolError),
}

/// Where an accepted callback is now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Committed {
    /// Confirmed by RabbitMQ.
    Broker,
    /// In the local spool, on disk; the drainer will publish it.
    Spool,
}
