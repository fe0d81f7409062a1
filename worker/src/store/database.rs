//! The worker's Postgres: pools that survive outages, TCP_NODELAY and
//! keepalive on their connections, statement timeouts, migrations, and start-up errors said in one useful line.

use migrations::{Migrator, MigratorTrait};
use sea_orm::sqlx::postgres::PgConnectOptions;
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};
use std::str::FromStr;
use std::time::Duration;

use super::outage::{classify, sqlstate, DbFailure};

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

/// The read API's own pool: enough for a few readers at once; more wait
/// (up to the acquire timeout) instead of taking the writers' connections.
pub const READ_POOL: PoolSettings = PoolSettings {
    application_name: "worker-reads",
    size: 4,
    // A reader waits up to 4 s for a connection and its statement runs at
    // most 10 s: every read answers within 15 s.
    acquire_timeout: Duration::from_secs(4),
    statement_timeout: Some(Duration::from_secs(10)),
};

/// A write that runs this long is stuck behind locks or an overloaded
/// server: it is cancelled and held like an outage (`outage::DbFailure::Cancelled`).
pub const WRITE_STATEMENT_TIMEOUT: Duration = Duration::from_secs(60);

/// How a pool is sized and how long its statements may run.
#[derive(Clone, Copy, Debug)]
pub struct PoolSettings {
    /// What `pg_stat_activity` shows for its connections.
    pub application_name: &'static str,
    pub size: u32,
    /// `statement_timeout` on its connections; `None`: the server's (none by
    /// default), for migrations and one-off commands.
    pub statement_timeout: Option<Duration>,
    /// How long a caller waits for a free connection.
    pub acquire_timeout: Duration,
}

impl PoolSettings {
    /// A pool of `size` whose statements run as long as they need.
    pub fn unbounded(size: u32) -> Self {
        Self {
            application_name: "worker",
            size,
            statement_timeout: None,
            acquire_timeout: Duration::from_secs(3),
        }
    }
}

/// A pool that connects on demand, so a database outage never stops the
/// process, only pauses consumption.
pub async fn connect_database(url: &str, pool_size: u32) -> Result<DatabaseConnection, DbErr> {
    connect_pool(url, PoolSettings::unbounded(pool_size)).await
}

/// Same, with a statement timeout when `settings` has one.
pub async fn connect_pool(url: &str, settings: PoolSettings) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(settings.size)
        .min_connections(0)
        .connect_timeout(Duration::from_secs(3))
        .acquire_timeout(settings.acquire_timeout)
        .connect_lazy(true)
        .sqlx_logging(false);
    let statement_timeout = settings
        .statement_timeout
        .map(|timeout| timeout.as_millis().to_string());
    options.map_sqlx_postgres_opts(move |connection| {
        let connection = connection.application_name(settings.application_name);
        match &statement_timeout {
            Some(milliseconds) => {
                connection.options([("statement_timeout", milliseconds.as_str())])
            }
            None => connection,
        }
    });
    if let Some(port) = tcp_port(url) {
        options.map_sqlx_postgres_pool_opts(move |pool| {
            pool.after_connect(move |_connection, _metadata| {
                Box::pin(async move {
                    // Without TCP_NODELAY each large statement waits ~40 ms
                    // for a delayed ACK; without keepalive a silently lost
                    // server holds the connection for hours. See
                    // `super::socket_options`.
                    if let Err(error) = super::socket_options::tune_for_peer_port(port) {
                        tracing::warn!(%error, "cannot set TCP_NODELAY and keepalive on the database connection");
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
