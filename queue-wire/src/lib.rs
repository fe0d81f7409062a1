//! The queue between ingest and worker: the message that carries one
//! callback (`envelope`) and the one that carries several (`batch`), the
//! exchanges and queues both sides declare (`topology`), publishing with
//! confirms (`broker`), and (re)connecting to one node or a cluster
//! (`reconnect`).

pub mod batch;
pub mod broker;
pub mod envelope;
pub mod reconnect;
pub mod topology;
