//! The worker's Postgres: a pool that survives outages, TCP_NODELAY on its
//! connections, migrations, and start-up errors said in one useful line.

use migrations::{Migrator, MigratorTrait};
use sea_orm::sqlx::postgres::PgConnectOptions;
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};
use std::str::FromStr;
use std::time::Duration;

use super::outage::{classify, DbFailure};

/// A database failure at start, said in one line that names the server and
/// the database, with what to do about it.
pub struct DatabaseStartFailure {
    pub message: String,
    /// The database does not exist: a configuration problem (exit code 2).
    pub missing_database: bool,
}

pub fn explain_database_error(url: &str, error: &DbErr) -> DatabaseStartFailure {
    let options = PgConnectOptions::from_str(url).ok();
    let host = options
        .as_ref()
        .map_or_else(|| "?".to_owned(), |o| o.get_host().to_owned());
    let port = options.as_ref().map_or(5432, PgConnectOptions::get_port);
    let user = options
        .as_ref()
        .map_or_else(|| "postgres".to_owned(), |o| o.get_username().to_owned());
    let database = options
        .as_ref()
        .and_then(|o| o.get_database().map(str::to_owned))
        .unwrap_or_else(|| user.clone());
    let server = format!("{host}:{port}");
    match sqlstate(error).as_deref() {
        Some("3D000") => DatabaseStartFailure {
            message: format!(
                "database {database:?} does not exist on {server}; create it with: \
                 createdb -h {host} -p {port} -U {user} {database}   (or run `cargo xtask up`)"
            ),
            missing_database: true,
        },
        Some("28P01" | "28000") => DatabaseStartFailure {
            message: format!(
                "Postgres on {server} refused user {user:?} for database {database:?}: \
                 check the user and password in DATABASE_URL"
            ),
            missing_database: false,
        },
        _ => {
            let unreachable = matches!(classify(error), DbFailure::Outage);
            let hint = if unreachable {
                "; is Postgres running there? (pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start)"
            } else {
                ""
            };
            DatabaseStartFailure {
                message: format!("cannot use database {database:?} on {server}: {error}{hint}"),
                missing_database: false,
            }
        }
    }
}

fn sqlstate(error: &DbErr) -> Option<String> {
    let (DbErr::Conn(runtime) | DbErr::Exec(runtime) | DbErr::Query(runtime)) = error else {
        return None;
    };
    let sea_orm::RuntimeErr::SqlxError(sqlx_error) = runtime else {
        return None;
    };
    sqlx_error
        .as_database_error()
        .and_then(|e| e.code().map(|c| c.into_owned()))
}

/// A pool that connects on demand, so a database outage never stops the
/// process, only pauses consumption.
pub async fn connect_database(url: &str, pool_size: u32) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(pool_size)
        .min_connections(0)
        .connect_timeout(Duration::from_secs(3))
        .acquire_timeout(Duration::from_secs(3))
        .connect_lazy(true)
        .sqlx_logging(false);
    if let Some(port) = tcp_port(url) {
        options.map_sqlx_postgres_pool_opts(move |pool| {
            pool.after_connect(move |_connection, _metadata| {
                Box::pin(async move {
                    // Without it each large statement waits ~40 ms for a
                    // delayed ACK; see `super::nodelay`.
                    if let Err(error) = super::nodelay::enable_for_peer_port(port) {
                        tracing::warn!(%error, "cannot set TCP_NODELAY on the database connection");
                    }
                    Ok(())
                })
            })
        });
    }
    Database::connect(options).await
}

/// The TCP port a Postgres URL connects to; `None` for a Unix socket.
fn tcp_port(url: &str) -> Option<u16> {
    let options = PgConnectOptions::from_str(url).ok()?;
    let over_unix_socket = options.get_socket().is_some() || options.get_host().starts_with('/');
    (!over_unix_socket).then(|| options.get_port())
}

pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    Migrator::up(db, None).await
}

#[cfg(test)]
mod tests {
    use super::tcp_port;

    #[test]
    fn finds_the_tcp_port_of_a_database_url() {
        assert_eq!(tcp_port("postgres://u@db:6543/x"), Some(6543));
        assert_eq!(tcp_port("postgres://u@db/x"), Some(5432));
        assert_eq!(
            tcp_port("postgres://u@localhost/x?host=/var/run/postgresql"),
            None
        );
        assert_eq!(tcp_port("not a url"), None);
    }
}
