//! One message by its SID: its current state and every event of its
//! history in the order received (`GET /messages/{sid}` and the console's
//! message page).

use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder};
use twilio_protocol::callback::MessageSid;

use crate::entity::{message, message_status_event};

pub struct MessageHistory {
    pub message: message::Model,
    pub events: Vec<message_status_event::Model>,
}

/// `None` for a SID never seen.
pub async fn message_history(
    db: &impl ConnectionTrait,
    sid: &MessageSid,
) -> Result<Option<MessageHistory>, DbErr> {
    let Some(message) = message::Entity::find_by_id(sid.as_str().to_owned())
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    // Its events were received between its first and last sighting: the
    // bounds leave out the history's other days (partitions) before any is read.
    let events = message_status_event::Entity::find()
        .filter(message_status_event::Column::MessageSid.eq(sid.as_str()))
        .filter(
            message_status_event::Column::ReceivedAt
                .between(message.first_seen_at, message.last_seen_at),
        )
        .order_by_asc(message_status_event::Column::ReceivedAt)
        .order_by_asc(message_status_event::Column::PersistedAt)
        .order_by_asc(message_status_event::Column::DedupKey)
        .all(db)
        .await?;
    Ok(Some(MessageHistory { message, events }))
}
