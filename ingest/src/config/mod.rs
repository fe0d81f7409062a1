//! Ingest configuration: read once from flags and environment variables
//! (names fixed by the contract), validated before anything starts.
//!
//! `args` is what the command line and the environment may say (every
//! number bounded by clap: a value outside its range is a one-line error
//! and exit code 2, never a panic later); `validated` turns it into the
//! `IngestConfig` the application runs on; `error` says why it could not.
//! Settings that serve nearly everyone at their default are not settings:
//! each is a named constant next to the code that uses it.

mod args;
mod error;
mod retired;
#[cfg(test)]
mod tests;
mod validated;

/// The parts of `IngestConfig` that tests may change in process.
pub use crate::publisher::BatchLimits;
pub use crate::spool::SpoolConfig;
pub use args::IngestArgs;
pub use error::ConfigError;
pub use retired::RETIRED;
pub use validated::IngestConfig;
