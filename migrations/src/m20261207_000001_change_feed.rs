//! The change feed's transactional outbox (`message_changes`): the store
//! statement that moves a message's current status records the change in
//! the same transaction, and the worker's relay publishes it and then
//! deletes it. So the table holds only changes not yet confirmed by
//! RabbitMQ: empty in steady state, a backlog while the broker is away.
//!
//! `messages` learns three columns, each with a constant default or none
//! (a catalog change, instant on a table of any size):
//! - `change_sequence`: how many changes the message has had, the
//!   `sequence` of its latest (0 for a row from before the feed);
//! - `previous_status`: its status before the latest change;
//! - `changed_in`: the transaction of the latest change, so the statement
//!   that makes a change can tell it did (its `RETURNING` sees only the new
//!   row, and the row it locked may be newer than its snapshot).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = "
ALTER TABLE messages
  ADD COLUMN change_sequence INTEGER NOT NULL DEFAULT 0,
  ADD COLUMN previous_status TEXT,
  ADD COLUMN changed_in XID8;

CREATE TABLE message_changes (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  change_id UUID NOT NULL DEFAULT gen_random_uuid(),
  message_sid TEXT NOT NULL,
  sequence INTEGER NOT NULL,
  status TEXT NOT NULL,
  previous_status TEXT,
  error_code INTEGER,
  final BOOLEAN NOT NULL,
  account_sid TEXT,
  from_address TEXT,
  to_address TEXT,
  occurred_at TIMESTAMPTZ NOT NULL,
  recorded_at TIMESTAMPTZ NOT NULL,
  traceparent TEXT
);
";

const DOWN: &str = "
DROP TABLE IF EXISTS message_changes;
ALTER TABLE messages
  DROP COLUMN IF EXISTS change_sequence,
  DROP COLUMN IF EXISTS previous_status,
  DROP COLUMN IF EXISTS changed_in;
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
