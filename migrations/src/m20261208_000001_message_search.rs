//! What `GET /messages` (the search API) and the console's searches need:
//! one btree per filter, each ending in the listing's order
//! (`first_seen_at`, `message_sid`), so every filter, and every filter with
//! a time window, is one index range read backwards from the page's cursor
//! (keyset pagination), however large the table.
//!
//! - `to_address`, `from_address`, `account_sid`: the address a support
//!   person types, a sender, a tenant;
//! - `status`: the current status (this entry moves with every change, as
//!   `messages_status_idx`'s already does);
//! - `error_code`: partial, only rows that have one (a small share);
//! - `first_seen_at` alone: no filter, or only a time window. It replaces
//!   the BRIN summary `GET /stats` used: a btree serves those windows too,
//!   and no update of a `messages` row is HOT anyway (`messages_status_idx`
//!   covers columns every update changes), so the btree's extra entries are
//!   what each of these indexes costs.
//!
//! Built in the migration's transaction: writes to `messages` wait while
//! each index reads the table once (about 10 s per index per 10 million
//! messages here; see BENCHMARKS.md).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = "
CREATE INDEX messages_to_search_idx ON messages (to_address, first_seen_at, message_sid);
CREATE INDEX messages_from_search_idx ON messages (from_address, first_seen_at, message_sid);
CREATE INDEX messages_account_search_idx ON messages (account_sid, first_seen_at, message_sid);
CREATE INDEX messages_status_search_idx ON messages (status, first_seen_at, message_sid);
CREATE INDEX messages_error_search_idx ON messages (error_code, first_seen_at, message_sid)
  WHERE error_code IS NOT NULL;
CREATE INDEX messages_first_seen_idx ON messages (first_seen_at, message_sid);
DROP INDEX IF EXISTS messages_first_seen_brin;
";

const DOWN: &str = "
CREATE INDEX IF NOT EXISTS messages_first_seen_brin ON messages USING brin (first_seen_at);
DROP INDEX IF EXISTS messages_first_seen_idx;
DROP INDEX IF EXISTS messages_error_search_idx;
DROP INDEX IF EXISTS messages_status_search_idx;
DROP INDEX IF EXISTS messages_account_search_idx;
DROP INDEX IF EXISTS messages_from_search_idx;
DROP INDEX IF EXISTS messages_to_search_idx;
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
