//! The append-only event history and the per-message projection.
//!
//! Plain SQL: the constraints and indexes are the point of this schema and
//! read best as written.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE TABLE message_status_events (
    id                BIGSERIAL PRIMARY KEY,
    -- SHA-256 of the message SID and every parameter Twilio sent, sorted:
    -- the same callback delivered twice has the same key and adds no row.
    dedup_key         TEXT        NOT NULL UNIQUE,
    message_sid       TEXT        NOT NULL,
    status            TEXT        NOT NULL,
    status_rank       SMALLINT    NOT NULL,
    error_code        INTEGER,
    raw_payload       JSONB       NOT NULL,
    content_type      TEXT        NOT NULL,
    idempotency_token TEXT,
    request_id        TEXT        NOT NULL,
    received_at       TIMESTAMPTZ NOT NULL,
    persisted_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- The read API: a message's history in the order received.
CREATE INDEX message_status_events_history_idx
    ON message_status_events (message_sid, received_at, id);

CREATE TABLE messages (
    message_sid          TEXT PRIMARY KEY,
    status               TEXT        NOT NULL,
    status_rank          SMALLINT    NOT NULL,
    -- rank * 10 + a fixed tie-break, so the winner never depends on arrival order
    status_precedence    SMALLINT    NOT NULL,
    error_code           INTEGER,
    account_sid          TEXT,
    from_address         TEXT,
    to_address           TEXT,
    first_seen_at        TIMESTAMPTZ NOT NULL,
    last_seen_at         TIMESTAMPTZ NOT NULL,
    event_count          INTEGER     NOT NULL,
    -- bit set of delivered(1) / undelivered(2) / failed(4) seen
    terminal_outcomes    SMALLINT    NOT NULL DEFAULT 0,
    conflicting_outcomes BOOLEAN     NOT NULL DEFAULT false,
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Operational queries: messages stuck in a status, contradictions.
CREATE INDEX messages_status_idx ON messages (status, last_seen_at);
CREATE INDEX messages_conflicting_idx ON messages (message_sid) WHERE conflicting_outcomes;
"#;

const DOWN: &str = "DROP TABLE messages; DROP TABLE message_status_events;";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::execute(manager, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::execute(manager, DOWN).await
    }
}
