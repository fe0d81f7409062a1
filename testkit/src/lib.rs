//! Test support shared by the services' integration tests: each test gets
//! its own RabbitMQ topology (a unique name prefix) and its own Postgres
//! database, both removed when the test ends, so tests run in parallel
//! against the real local services; a console test gets a headless Chromium
//! of its own.
//!
//! Every helper is reachable from the crate root; the modules group them by
//! job.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod broker;
pub mod browser;
mod callbacks;
mod changes;
mod cleanup;
pub mod cluster;
mod database;
mod http;
mod proxy;
mod rabbitmqctl;
mod services;
pub mod vectors;
mod wait;

pub use broker::{delete_topology, test_retry_delays, TestBroker};
pub use browser::{Browser, BrowserError, BrowserOptions};
pub use callbacks::{callback_envelope, message_sid, post_signed, sign, status_params, TEST_TOKEN};
pub use changes::{check_feed_order, last_statuses, ChangeListener, ReceivedChange};
pub use database::TestDatabase;
pub use http::{json, metric_value, scrape_metrics};
pub use proxy::ToggleProxy;
pub use rabbitmqctl::close_broker_connection;
pub use services::{amqp_url, postgres_server_url, unique_name};
pub use wait::wait_for;
