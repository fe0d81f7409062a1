//! What reconciliation with Twilio's Messages API and the delivery report
//! need:
//! - `message_status_events.source`: `callback`, or `reconciliation` for a
//!   status learned from the API (its raw payload is the API's answer);
//! - `messages.final_at`: when the first final status (lifecycle rank 4 or
//!   more) was received; NULL while there is none (rows finished before this
//!   migration keep NULL: their time to final is not known);
//! - `messages.reconciled_at`, `reconcile_checks`: when the API was last asked
//!   about the message and how often; `twilio_not_found_at`: the API answered
//!   404, so it is never asked again;
//! - a BRIN index on `messages.first_seen_at` for `GET /stats` windows. A
//!   btree would add an entry on every status change (no update of a
//!   `messages` row is HOT: `messages_status_idx` covers columns every
//!   update changes); a BRIN summary costs next to nothing and rows are
//!   appended roughly in `first_seen_at` order.
//!
//! Only columns with constant defaults are added: on Postgres 11+ each is a
//! catalog change, instant on a live table of any size. The index is built
//! in the migration's transaction (it blocks writes while it reads the
//! table once; a BRIN build is a sequential scan, about a second per few
//! million rows).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = "
ALTER TABLE message_status_events ADD COLUMN source TEXT NOT NULL DEFAULT 'callback';
ALTER TABLE messages
  ADD COLUMN final_at TIMESTAMPTZ,
  ADD COLUMN reconciled_at TIMESTAMPTZ,
  ADD COLUMN reconcile_checks SMALLINT NOT NULL DEFAULT 0,
  ADD COLUMN twilio_not_found_at TIMESTAMPTZ;
CREATE INDEX messages_first_seen_brin ON messages USING brin (first_seen_at);
";

const DOWN: &str = "
DROP INDEX IF EXISTS messages_first_seen_brin;
ALTER TABLE messages
  DROP COLUMN twilio_not_found_at,
  DROP COLUMN reconcile_checks,
  DROP COLUMN reconciled_at,
  DROP COLUMN final_at;
ALTER TABLE message_status_events DROP COLUMN source;
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
