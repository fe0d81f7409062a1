//! Telling a database outage from a bad callback.
//!
//! Some errors say that the database as a whole cannot take writes now: no
//! connection, a read-only server (after a failover), a full disk, an
//! administrator shutdown or crash recovery. Retrying one callback after
//! another against those only burns their retry budgets, so they pause
//! consumption instead, exactly like an unreachable database. Serialization
//! failures and deadlocks are retried in place. Everything else is taken to
//! be about the callbacks in hand and goes through the per-callback retries.
//!
//! A schema that does not fit the statements (a column, table, function or
//! type missing or changed: an upgrade half done, a migration running) is a
//! deployment fault, not a fault of the callbacks: it holds like an outage,
//! and `/readyz` says which. So does a statement cancelled for taking too
//! long (`statement_timeout`): the database is overloaded or locked.

use sea_orm::sqlx;
use sea_orm::{DbErr, RuntimeErr};
use std::borrow::Cow;
use std::sync::Arc;

/// What a failed write says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbFailure {
    /// The database cannot take writes now: hold the batch and wait.
    Outage,
    /// The schema does not fit the statements: hold like an outage.
    Schema,
    /// Cancelled by `statement_timeout` (or an administrator): the
    /// database is too slow now. Writes hold; reads answer 503.
    Cancelled,
    /// A conflict with a concurrent transaction: run it again.
    Conflict,
    /// Possibly about these callbacks: isolate them and retry each.
    Other,
}

/// SQLSTATEs that mean the whole database refuses writes for now.
fn is_outage_state(code: &str) -> bool {
    // 08: connection exception; 53: insufficient resources (disk full, out
    // of memory, too many connections); 58: system error (I/O).
    code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("58")
        || matches!(
            code,
            // read-only transaction (a hot standby, default_transaction_read_only)
            "25006"
            // admin shutdown, crash shutdown, cannot connect now (recovery)
            | "57P01" | "57P02" | "57P03"
            // the database was dropped under us
            | "57P04"
        )
}

/// SQLSTATEs that mean the schema does not match what the statements expect.
fn is_schema_state(code: &str) -> bool {
    matches!(
        code,
        // undefined column, table, function, object (a type), schema
        "42703" | "42P01" | "42883" | "42704" | "3F000"
        // datatype mismatch, wrong object type, an old plan's result type changed
        | "42804" | "42809" | "0A000"
    )
}

pub fn classify(error: &DbErr) -> DbFailure {
    if let DbErr::ConnectionAcquire(_) = error {
        return DbFailure::Outage;
    }
    let Some(sqlx_error) = sqlx_error(error) else {
        return DbFailure::Other;
    };
    match sqlx_error {
        sqlx::Error::Database(_) => match sqlstate(error).as_deref() {
            Some("40001" | "40P01") => DbFailure::Conflict,
            Some("57014") => DbFailure::Cancelled,
            Some(code) if is_outage_state(code) => DbFailure::Outage,
            Some(code) if is_schema_state(code) => DbFailure::Schema,
            _ => DbFailure::Other,
        },
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => DbFailure::Outage,
        _ => DbFailure::Other,
    }
}

/// The SQLSTATE the server answered with, if the error is the server's.
pub fn sqlstate(error: &DbErr) -> Option<Cow<'_, str>> {
    sqlx_error(error)?.as_database_error()?.code()
}

/// The error of a statement run through sqlx directly (`store::columns`),
/// as SeaORM reports one: what `classify` and `sqlstate` read.
pub fn from_sqlx(error: sqlx::Error) -> DbErr {
    DbErr::Query(RuntimeErr::SqlxError(Arc::new(error)))
}

fn sqlx_error(error: &DbErr) -> Option<&sqlx::Error> {
    match error {
        DbErr::Conn(RuntimeErr::SqlxError(sqlx_error))
        | DbErr::Exec(RuntimeErr::SqlxError(sqlx_error))
        | DbErr::Query(RuntimeErr::SqlxError(sqlx_error)) => Some(sqlx_error),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outage_states() {
        for code in [
            "25006", "53100", "53200", "53300", "57P01", "57P02", "57P03", "08006", "58030",
        ] {
            assert!(is_outage_state(code), "{code}");
        }
        for code in ["23505", "22P02", "P0001", "40001", "42P01"] {
            assert!(!is_outage_state(code), "{code}");
        }
        for code in ["42703", "42P01", "42883", "42804"] {
            assert!(is_schema_state(code), "{code}");
        }
        for code in ["23505", "22P02", "22P05", "23514", "P0001"] {
            assert!(!is_schema_state(code), "{code}");
        }
    }

    #[test]
    fn pool_and_io_errors_are_outages() {
        let pool = DbErr::Conn(RuntimeErr::SqlxError(std::sync::Arc::new(
            sqlx::Error::PoolTimedOut,
        )));
        assert_eq!(classify(&pool), DbFailure::Outage);
        assert_eq!(
            classify(&from_sqlx(sqlx::Error::PoolClosed)),
            DbFailure::Outage
        );
        assert_eq!(sqlstate(&pool), None);
        assert_eq!(classify(&DbErr::Custom("x".into())), DbFailure::Other);
    }
}
