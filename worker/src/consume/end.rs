//! Why a broker session ends, shared by the modules that end one.

use crate::failure::RouteError;

/// Why a broker session ended.
#[derive(Debug)]
pub enum SessionEnd {
    Shutdown,
    BrokerLost(BrokerLost),
}

/// What was lost: the session is renewed, and whatever was not
/// acknowledged is redelivered.
#[derive(Debug, thiserror::Error)]
pub enum BrokerLost {
    #[error(transparent)]
    Consumer(lapin::Error),
    #[error("consumer cancelled by the broker")]
    Cancelled,
    #[error("ack failed: {0}")]
    Ack(#[source] lapin::Error),
    #[error(transparent)]
    Route(#[from] RouteError),
}

impl From<BrokerLost> for SessionEnd {
    fn from(lost: BrokerLost) -> Self {
        Self::BrokerLost(lost)
    }
}

impl From<RouteError> for SessionEnd {
    fn from(error: RouteError) -> Self {
        Self::BrokerLost(error.into())
    }
}
