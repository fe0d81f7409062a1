//! The queue between ingest and worker: the message that carries one
//! callback (`envelope`), the exchanges and queues both sides declare
//! (`topology`), and connecting and publishing with confirms (`broker`).

pub mod batch;
pub mod broker;
pub mod envelope;
pub mod reconnect;
pub mod topology;
