//! The Postgres schema, applied by `worker migrate` (and by the worker at
//! start unless `WORKER_AUTO_MIGRATE=false`).

pub use sea_orm_migration::prelude::*;

mod m20261126_000001_status_tables;
mod m20261202_000001_unranked_statuses;
mod m20261203_000001_reconciliation;
mod m20261204_000001_partitioned_history;
mod m20261206_000001_account_ownership;
mod m20261207_000001_change_feed;
mod m20261208_000001_message_search;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261126_000001_status_tables::Migration),
            Box::new(m20261202_000001_unranked_statuses::Migration),
            Box::new(m20261203_000001_reconciliation::Migration),
            Box::new(m20261204_000001_partitioned_history::Migration),
            Box::new(m20261206_000001_account_ownership::Migration),
            Box::new(m20261207_000001_change_feed::Migration),
            Box::new(m20261208_000001_message_search::Migration),
        ]
    }
}

/// Runs a migration's SQL (each migration is one text of statements).
async fn execute(manager: &SchemaManager<'_>, sql: &str) -> Result<(), DbErr> {
    manager
        .get_connection()
        .execute_unprepared(sql)
        .await
        .map(|_| ())
}
