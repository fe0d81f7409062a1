//! Accounts own their messages: a message belongs to the account it was
//! first recorded under (`messages.account_sid`). A callback verified with
//! another account's secret for that message is kept in the history with
//! `message_status_events.foreign_account` set, and never changes the
//! message's current state.
//!
//! One column with a constant default: a catalog change on Postgres 11+,
//! instant on a history of any size (its partitions included; partitions
//! created later copy it with `LIKE`).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = "
ALTER TABLE message_status_events
  ADD COLUMN foreign_account BOOLEAN NOT NULL DEFAULT false;
";

const DOWN: &str = "
ALTER TABLE message_status_events DROP COLUMN IF EXISTS foreign_account;
";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        super::execute(manager, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        super::execute(manager, DOWN).await
    }
}
