//! Building and running the worker: database (migrated), consumer task and
//! HTTP port, with one shutdown path for all of them.

use actix_web::dev::{Server, ServerHandle};
use actix_web::{web, App, HttpServer};
use migrations::{Migrator, MigratorTrait};
use sea_orm::sqlx::postgres::PgConnectOptions;
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};
use std::net::TcpListener;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::WorkerConfig;
use crate::consumer;
use crate::health::WorkerHealth;
use crate::http::{self, HttpState, WriteAccess};
use crate::twilio_api::TwilioClient;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("database: {0}")]
    Database(#[from] DbErr),
    #[error("cannot listen: {0}")]
    Listen(#[from] std::io::Error),
    #[error("cannot build the Twilio API client: {0}")]
    Twilio(String),
}

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
            let unreachable = matches!(
                crate::db_failure::classify(error),
                crate::db_failure::DbFailure::Outage
            );
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
                    // delayed ACK; see crate::nodelay.
                    if let Err(error) = crate::nodelay::enable_for_peer_port(port) {
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

pub struct Application {
    port: u16,
    server: Server,
    consumer: JoinHandle<()>,
    shutdown: ShutdownHandle,
}

/// Stops the consumer (after its current batch) and the HTTP port.
#[derive(Clone)]
pub struct ShutdownHandle {
    signal: Arc<watch::Sender<bool>>,
    server: ServerHandle,
    consumer: tokio::task::AbortHandle,
}

impl ShutdownHandle {
    pub async fn shutdown(&self) {
        self.signal.send_replace(true);
        self.server.stop(true).await;
    }

    /// Kills the consumer task as a bug would (tests of what follows).
    #[doc(hidden)]
    pub fn kill_consumer(&self) {
        self.consumer.abort();
    }
}

impl Application {
    pub async fn build(config: WorkerConfig) -> Result<Self, StartError> {
        let db = connect_database(&config.common.database_url, config.database_pool_size).await?;
        if config.auto_migrate {
            migrate(&db).await?;
        }
        let listener = TcpListener::bind(config.addr)?;
        let port = listener.local_addr()?.port();
        let _ = service_kit::metrics::install();
        let health = Arc::new(WorkerHealth::default());
        let sender = match config.sending.clone() {
            Some(sending) => {
                Some(TwilioClient::new(sending).map_err(|e| StartError::Twilio(e.to_string()))?)
            }
            None => None,
        };
        let state = web::Data::new(HttpState {
            db: db.clone(),
            health: health.clone(),
            sender,
            write_access: WriteAccess::new(config.api_token.clone(), config.addr),
        });
        let server =
            HttpServer::new(move || App::new().app_data(state.clone()).configure(http::routes))
                .workers(1)
                .disable_signals()
                .listen(listener)?
                .run();
        // Last, once nothing can fail any more: a failed build leaves no task behind.
        let (signal, shutdown_rx) = watch::channel(false);
        let consumer = tokio::spawn(consumer::run(config.clone(), db, health, shutdown_rx));
        let shutdown = ShutdownHandle {
            signal: Arc::new(signal),
            server: server.handle(),
            consumer: consumer.abort_handle(),
        };
        Ok(Self {
            port,
            server,
            consumer,
            shutdown,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Serves until the shutdown handle is used, then waits for the consumer
    /// to finish its batch and close its session. A consumer that ends on
    /// its own (a bug, a panic) stops the process with an error: a worker
    /// that no longer consumes must not look alive.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let Self {
            server,
            mut consumer,
            shutdown,
            ..
        } = self;
        let mut server = std::pin::pin!(server);
        tokio::select! {
            served = &mut server => {
                shutdown.signal.send_replace(true);
                if let Err(error) = consumer.await {
                    tracing::error!(%error, "consumer task failed");
                    return Err(std::io::Error::other(format!("consumer task failed: {error}")));
                }
                served
            }
            ended = &mut consumer => {
                if *shutdown.signal.borrow() {
                    // Asked to stop: let the server finish its own graceful stop.
                    return server.await;
                }
                let why = match ended {
                    Ok(()) => "ended".to_owned(),
                    Err(error) => error.to_string(),
                };
                tracing::error!(reason = %why, "consumer task stopped unexpectedly; shutting down");
                // Not graceful: idle keep-alive connections would hold it for 30 s.
                // (The server future must be polled for the stop to complete.)
                let _ = tokio::join!(shutdown.server.stop(false), server);
                Err(std::io::Error::other(format!("consumer task stopped unexpectedly: {why}")))
            }
        }
    }
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
