//! The worker against the real RabbitMQ and Postgres: each test has its own
//! topology and its own freshly migrated database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod access;
mod accounts;
mod api;
mod batches;
mod console;
mod console_browser;
mod database;
mod dead_letters;
mod dedup;
mod durability;
mod end_to_end;
mod failures;
mod feed;
mod helpers;
mod history;
mod ordering;
mod outages;
mod outcomes;
mod readers;
mod reconcile;
mod report;
mod seams;
mod search;
mod sending;
