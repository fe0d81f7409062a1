//! The durable local spool: where callbacks go when RabbitMQ cannot confirm
//! them in time (not connected, blocking publishers, a late confirm or a
//! nack), so that Twilio still gets its 200 and nothing it sent is lost.
//!
//! An append-only log of checksummed records (`record`: a batch message as
//! it is published) in segment files (`segment`), written by one task that
//! group-commits appends with one fsync (`writer`):
//! a request is answered 200 only after the fsync that covers its callback.
//! A drainer (`drainer`) republishes sealed segments with confirms once the
//! broker is back, and removes a segment only after every record in it is
//! confirmed; a crash in between republishes some, which the worker's dedup
//! absorbs. What a spool holds and how much room it takes is kept by
//! `accounting`. A spool directory is locked (`directory`), so two
//! processes never share one:
//! a second process on the same `INGEST_SPOOL_DIR` takes an `ingest-N`
//! directory inside it. A restarted ingest drains what an earlier one left
//! in its directory, and the drainer adopts directories no process holds
//! (a process that died or was scaled away). On SIGTERM the drainer empties
//! the spool before the process exits, for as long as it is given. Full, or
//! failing to write: 503, never a 200 that was not written, and readiness
//! says so until a write works again (the writer probes the disk).
//!
//! Directories are `0700` and files `0600`: callbacks hold phone numbers.
//! A segment that cannot be read back whole is renamed `*.damaged` and
//! kept, never deleted.
//!
//! What it does not guarantee: a lost disk loses what was on it.

mod accounting;
mod directory;
pub(crate) mod drainer;
mod error;
mod handle;
pub(crate) mod record;
pub(crate) mod segment;
mod writer;

pub use accounting::SpoolConfig;
pub use error::OpenError;
pub(crate) use error::{SpoolError, SpoolHealth};
pub(crate) use handle::Spool;
