//! What every handler shares: the pools, the consumer's health, the
//! Twilio client and the statistics cache. (The API's access rule,
//! `ApiAccess`, is app data of its own.)

use crate::feed::{ChangeFeed, FeedStatus};
use sea_orm::DatabaseConnection;
use std::sync::Arc;
use twilio_protocol::status::MessageStatus;

use crate::health::WorkerHealth;
use crate::stats::StatsCache;
use crate::twilio_api::TwilioClient;

pub struct HttpState {
    /// The writers' pool: probes and recording a sent message.
    pub db: DatabaseConnection,
    /// The readers' own small pool, with a statement timeout: however many
    /// read at once, the writers keep their connections.
    pub reads: DatabaseConnection,
    pub health: Arc<WorkerHealth>,
    /// `None` when no Twilio API credentials are configured.
    pub twilio: Option<TwilioClient>,
    /// What counts as stale, per status (`WORKER_RECONCILE_AFTER`).
    pub stale_after: Vec<(MessageStatus, std::time::Duration)>,
    pub stats: StatsCache,
    /// Whether changes go to the feed, and what `/readyz` shows of it.
    pub feed: ChangeFeed,
    pub feed_status: Arc<FeedStatus>,
    /// Where the console lists and replays dead letters.
    pub amqp_url: String,
    pub topology: queue_wire::topology::Topology,
}
