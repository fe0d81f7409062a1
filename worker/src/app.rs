//! Building and running the worker: database (migrated), consumer task and
//! HTTP port, with one shutdown path for all of them.

use actix_web::dev::{Server, ServerHandle};
use actix_web::{web, App, HttpServer};
use sea_orm::DbErr;
use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::WorkerConfig;
use crate::consume;
use crate::feed::{self, FeedStatus};
use crate::health::WorkerHealth;
use crate::http::{self, ApiAccess, HttpState};
use crate::reconcile::{self, Reconciler};
use crate::retention;
use crate::stats::StatsCache;
use crate::store::database::{
    connect_database, connect_pool, migrate, PoolSettings, READ_POOL, WRITE_STATEMENT_TIMEOUT,
};
use crate::twilio_api::TwilioClient;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("database: {0}")]
    Database(#[from] DbErr),
    #[error("cannot listen: {0}")]
    Listen(#[from] std::io::Error),
    #[error("cannot build the Twilio API client: {0}")]
    Twilio(#[source] rustls::Error),
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
    stop: CancellationToken,
    server: ServerHandle,
    #[cfg(feature = "test-support")]
    consumer: tokio::task::AbortHandle,
}

impl ShutdownHandle {
    pub async fn shutdown(&self) {
        self.stop.cancel();
        self.server.stop(true).await;
    }

    /// Kills the consumer task as a bug would (tests of what follows).
    #[cfg(feature = "test-support")]
    pub fn kill_consumer(&self) {
        self.consumer.abort();
    }
}

impl Application {
    pub async fn build(config: WorkerConfig) -> Result<Self, StartError> {
        let url = &config.common.database_url;
        if config.auto_migrate {
            // Its own connection, with no statement timeout: a migration of
            // a large history takes as long as it takes.
            let migrator = connect_database(url, 1).await?;
            migrate(&migrator).await?;
            migrator.close().await?;
        }
        let db = connect_pool(
            url,
            PoolSettings {
                application_name: "worker-writes",
                statement_timeout: Some(WRITE_STATEMENT_TIMEOUT),
                ..PoolSettings::unbounded(config.database_pool_size)
            },
        )
        .await?;
        let reads = connect_pool(url, READ_POOL).await?;
        let listener = TcpListener::bind(config.addr)?;
        let port = listener.local_addr()?.port();
        let _ = service_kit::metrics::install(crate::metrics::ALL);
        let health = Arc::new(WorkerHealth::default());
        let feed_status = Arc::new(FeedStatus::new(config.common.change_feed));
        let twilio = match config.twilio_api.clone() {
            Some(api) => {
                Some(TwilioClient::new(api, config.sending.clone()).map_err(StartError::Twilio)?)
            }
            None => None,
        };
        let state = web::Data::new(HttpState {
            db: db.clone(),
            reads,
            health: health.clone(),
            twilio: twilio.clone(),
            stale_after: config.reconcile.after.clone(),
            stats: StatsCache::default(),
            feed: config.common.change_feed,
            feed_status: feed_status.clone(),
            amqp_url: config.common.amqp_url.clone(),
            topology: config.common.topology.clone(),
        });
        let access = ApiAccess::new(
            config.api_token.clone(),
            config.api_read_tokens.clone(),
            config.addr,
        );
        let server = serve(listener, state, web::Data::new(access))?;
        // Last, once nothing can fail any more: a failed build leaves no task behind.
        let stop = CancellationToken::new();
        if let (Some(twilio), Some(interval)) = (twilio, config.reconcile.interval) {
            let reconciler = Reconciler::new(
                db.clone(),
                twilio,
                config.reconcile.clone(),
                config.common.change_feed,
            );
            tokio::spawn(reconcile::run_periodically(
                reconciler,
                interval,
                stop.clone(),
            ));
        }
        tokio::spawn(retention::run_periodically(
            db.clone(),
            config.history.clone(),
            stop.clone(),
        ));
        if config.common.change_feed.is_on() {
            tokio::spawn(feed::measure_periodically(
                db.clone(),
                feed_status.clone(),
                stop.clone(),
            ));
            if config.relay_changes {
                let settings = feed::RelaySettings {
                    database_url: url.clone(),
                    amqp_url: config.common.amqp_url.clone(),
                    topology: config.common.topology.clone(),
                };
                tokio::spawn(feed::run(settings, feed_status, stop.clone()));
            }
        }
        let consumer = tokio::spawn(consume::run(config.clone(), db, health, stop.clone()));
        let shutdown = ShutdownHandle {
            stop: stop.clone(),
            server: server.handle(),
            #[cfg(feature = "test-support")]
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

    /// Serves until `shutdown` resolves (or the shutdown handle is used),
    /// then waits for the consumer to finish its batch and close its
    /// session. A consumer that ends on its own (a bug, a panic) stops the
    /// process with an error: a worker that no longer consumes must not
    /// look alive.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let Self {
            server,
            mut consumer,
            shutdown: handle,
            ..
        } = self;
        let on_shutdown = {
            let handle = handle.clone();
            tokio::spawn(async move {
                shutdown.await;
                tracing::info!("stopping: finishing the current batch");
                handle.shutdown().await;
            })
        };
        let _stop_watching = AbortOnDrop(on_shutdown);
        let shutdown = handle;
        let mut server = std::pin::pin!(server);
        tokio::select! {
            served = &mut server => {
                shutdown.stop.cancel();
                if let Err(error) = consumer.await {
                    tracing::error!(%error, "consumer task failed");
                    return Err(std::io::Error::other(format!("consumer task failed: {error}")));
                }
                served
            }
            ended = &mut consumer => {
                if shutdown.stop.is_cancelled() {
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

/// The HTTP port on `listener`: probes, metrics and the API.
fn serve(
    listener: TcpListener,
    state: web::Data<HttpState>,
    access: web::Data<ApiAccess>,
) -> std::io::Result<Server> {
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(access.clone())
            .configure(http::routes)
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run();
    Ok(server)
}

/// Aborts a background task when dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
