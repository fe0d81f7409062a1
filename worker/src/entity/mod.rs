//! SeaORM entities for the two tables, used by the read API. (The write path
//! is hand-written SQL in `store::projection`: batch inserts with ON
//! CONFLICT rules.)

pub mod message;
pub mod message_status_event;

use sea_orm::DeriveValueType;
use serde::Serialize;
use std::fmt;
use std::str::FromStr;
use twilio_protocol::status::CallbackStatus;

/// A status column: text in Postgres, typed here. A status this release does
/// not know reads back as `CallbackStatus::Unrecognised`, kept as received.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, DeriveValueType)]
#[serde(transparent)]
#[sea_orm(value_type = "String")]
pub struct StoredStatus(pub CallbackStatus);

impl FromStr for StoredStatus {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(CallbackStatus::parse(s)))
    }
}

impl fmt::Display for StoredStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl StoredStatus {
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

/// A status compares equal to its text (`row.status == "delivered"`), for
/// the integration tests.
#[cfg(any(test, feature = "test-support"))]
impl PartialEq<str> for StoredStatus {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

#[cfg(any(test, feature = "test-support"))]
impl PartialEq<&str> for StoredStatus {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(any(test, feature = "test-support"))]
impl PartialEq<String> for StoredStatus {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}
