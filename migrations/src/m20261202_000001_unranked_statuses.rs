//! Statuses Twilio adds after this release are stored with their raw value
//! and precedence -1 (see `twilio_protocol::status::CallbackStatus`). Such a value can
//! be any length, and a btree entry is capped near 2.7 kB, so the "stuck in
//! a status" index covers the known (ranked) statuses only.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = "
DROP INDEX IF EXISTS messages_status_idx;
CREATE INDEX messages_status_idx ON messages (status, last_seen_at) WHERE status_precedence >= 0;
";

const DOWN: &str = "
DROP INDEX IF EXISTS messages_status_idx;
CREATE INDEX messages_status_idx ON messages (status, last_seen_at);
";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::execute(manager, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::execute(manager, DOWN).await
    }
}
