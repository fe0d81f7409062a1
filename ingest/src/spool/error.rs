//! What the spool answers when it cannot take a callback, or cannot start.

#[derive(Clone, Debug, thiserror::Error)]
pub(crate) enum SpoolError {
    #[error("the spool is full ({max_bytes} bytes)")]
    Full { max_bytes: u64 },
    #[error("cannot write the spool: {0}")]
    Write(#[source] std::sync::Arc<std::io::Error>),
    #[error("the spool is not running")]
    Stopped,
}

/// Why the spool could not be opened at start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot use spool directory {dir}: {error}")]
    Io {
        dir: String,
        #[source]
        error: std::io::Error,
    },
    #[error(
        "spool directory {0} and every directory inside it are locked by other ingest processes; give this one its own INGEST_SPOOL_DIR"
    )]
    Locked(String),
}

/// Whether the spool could take a callback now, and if not, why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SpoolHealth {
    Accepting,
    Full {
        max_bytes: u64,
    },
    /// The last write failed (with this error), and none has worked since.
    Failing {
        error: String,
    },
}
