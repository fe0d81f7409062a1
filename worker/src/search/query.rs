//! One page of a search: the filters as equalities on `messages`, the
//! cursor as a row comparison on the listing's order, read backwards along
//! the index of the most selective filter (see the migration
//! `m20261208_000001_message_search`). One more row than asked for says
//! whether there is a next page.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use serde::Serialize;

use super::cursor::Cursor;
use super::filter::SearchFilter;
use crate::entity::{message, StoredStatus};

/// A message as a search lists it.
#[derive(Clone, Debug, Serialize)]
pub struct ListedMessage {
    pub message_sid: String,
    pub status: StoredStatus,
    pub error_code: Option<i32>,
    pub account_sid: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Page {
    pub messages: Vec<ListedMessage>,
    /// Where the next page starts; `None` on the last one.
    pub next_cursor: Option<String>,
}

pub async fn search(db: &impl ConnectionTrait, filter: &SearchFilter) -> Result<Page, DbErr> {
    use message::Column;
    let mut select = message::Entity::find();
    if let Some(to) = &filter.to {
        select = select.filter(Column::ToAddress.eq(to.as_str()));
    }
    if let Some(from) = &filter.from {
        select = select.filter(Column::FromAddress.eq(from.as_str()));
    }
    if let Some(status) = filter.status {
        // Always true for a known status; said so that the planner may also
        // read `messages_status_idx` (partial on it) for a rare status.
        select = select
            .filter(Column::Status.eq(status.as_str()))
            .filter(Column::StatusPrecedence.gte(0));
    }
    if let Some(code) = filter.error_code {
        select = select.filter(Column::ErrorCode.eq(code));
    }
    if let Some(account) = &filter.account_sid {
        select = select.filter(Column::AccountSid.eq(account.as_str()));
    }
    if let Some(since) = filter.since {
        select = select.filter(Column::FirstSeenAt.gte(since));
    }
    if let Some(until) = filter.until {
        select = select.filter(Column::FirstSeenAt.lt(until));
    }
    if let Some(after) = &filter.after {
        select = select.filter(
            Expr::tuple([
                Expr::col((message::Entity, Column::FirstSeenAt)),
                Expr::col((message::Entity, Column::MessageSid)),
            ])
            .lt(Expr::tuple([
                Expr::val(after.first_seen_at),
                Expr::val(after.message_sid.as_str()),
            ])),
        );
    }
    let mut rows = select
        .order_by_desc(Column::FirstSeenAt)
        .order_by_desc(Column::MessageSid)
        .limit(filter.limit + 1)
        .all(db)
        .await?;
    let more = rows.len() as u64 > filter.limit;
    rows.truncate(filter.limit as usize);
    let next_cursor = more.then(|| rows.last()).flatten().map(|last| {
        Cursor {
            first_seen_at: last.first_seen_at,
            message_sid: last.message_sid.clone(),
        }
        .encode()
    });
    Ok(Page {
        messages: rows
            .into_iter()
            .map(|row| ListedMessage {
                message_sid: row.message_sid,
                status: row.status,
                error_code: row.error_code,
                account_sid: row.account_sid,
                from: row.from_address,
                to: row.to_address,
                first_seen_at: row.first_seen_at,
                last_seen_at: row.last_seen_at,
            })
            .collect(),
        next_cursor,
    })
}
