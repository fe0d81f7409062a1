//! The change feed: every change of a message's current status, published
//! to the `<prefix>.changes` topic exchange, per message in order.
//!
//! - the store statement records each change in the outbox
//!   (`message_changes`) in the transaction that makes it
//!   (`store::projection`), so nothing committed can miss the feed;
//! - `relay` publishes the outbox with publisher confirms and deletes what
//!   RabbitMQ confirmed; one worker relays at a time (a Postgres advisory
//!   lock), one change per message in flight, so each message's changes go
//!   out in `sequence` order;
//! - `change` is what a published change says (its body, routing key and
//!   headers), `outbox` the SQL that reads, removes and measures the outbox,
//!   `status` what `/readyz` and the metrics show of it.

mod change;
mod outbox;
mod relay;
mod status;

pub use relay::{run, RelaySettings};
pub use status::{measure_periodically, FeedStatus};

use std::sync::LazyLock;
use tokio::sync::Notify;

/// Whether changes are recorded and published (`WORKER_CHANGE_FEED`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ChangeFeed {
    #[default]
    On,
    Off,
}

impl ChangeFeed {
    pub fn is_on(self) -> bool {
        self == Self::On
    }
}

/// Wakes this process's relay when a commit here recorded changes, so they
/// go out at once rather than at its next look (changes committed by other
/// workers are found by that look).
static RECORDED: LazyLock<Notify> = LazyLock::new(Notify::new);

/// Called after a commit that recorded changes.
pub fn changes_recorded() {
    RECORDED.notify_one();
}

/// Resolves at the next `changes_recorded` (or at once if one came since
/// the last wait).
async fn next_recorded() {
    RECORDED.notified().await;
}
