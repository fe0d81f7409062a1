//! Building and running the ingest service: bind, wire the routes, serve
//! until the shutdown future resolves, then drain the spool into RabbitMQ
//! (for up to `INGEST_SHUTDOWN_DRAIN_SECS`) and close the broker connection.

use actix_web::dev::{Server, ServerHandle};
use actix_web::http::KeepAlive;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpResponse, HttpServer};
use std::future::Future;
use std::net::TcpListener;
use std::time::Duration;

use crate::config::IngestConfig;
use crate::publisher::{CallbackPublisher, SpoolPolicy};
use crate::request_telemetry::callback_telemetry;
use crate::routes::status;
use crate::signed_url::SignedUrlOrigin;
use crate::spool::{OpenError, Spool};
use crate::state::{BodyLimits, IngestState};

/// Slow clients: the request head must arrive within this (408 otherwise).
const REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// How long in-flight requests get to finish after SIGTERM: each is
/// answered within its confirm timeout (15 s at most), so 20 s lets every
/// one finish.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(20);

/// How long an idle client connection is kept open. Longer than the idle
/// timeout of whatever calls ingest (AWS ALB 60 s, hyper clients 90 s), so
/// that the client closes first: a request sent on a connection the server
/// is closing at that instant fails unanswered.
const KEEP_ALIVE: Duration = Duration::from_secs(120);

/// Why ingest cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen: {0}")]
    Listen(#[from] std::io::Error),
    /// A configuration problem: the directory is unusable or taken.
    #[error(transparent)]
    Spool(#[from] OpenError),
}

pub struct Application {
    port: u16,
    server: Server,
    publisher: CallbackPublisher,
    /// How long the spool may take to drain after the last request.
    shutdown_drain: Duration,
}

impl Application {
    /// Opens the spool, binds `config.addr` (port 0 picks a free port) and
    /// starts connecting to RabbitMQ in the background; the server serves
    /// from the start.
    pub fn build(config: IngestConfig) -> Result<Self, StartError> {
        // Install the recorder before the first request records anything.
        let _ = service_kit::metrics::install(crate::metrics::ALL);
        let spool = config.spool.clone().map(Spool::open).transpose()?;
        let listener = TcpListener::bind(config.addr)?;
        let port = listener.local_addr()?.port();
        let (spool, spool_writer) = match spool {
            Some((spool, writer)) => (Some(spool), Some(writer)),
            None => (None, None),
        };
        let publisher = CallbackPublisher::new(
            config.amqp_url.clone(),
            config.topology.clone(),
            config.batching,
            config.confirm_timeout,
            spool.map(|spool| SpoolPolicy {
                spool,
                spool_after: config.spool_after,
            }),
        );
        let state = web::Data::new(IngestState {
            keyring: config.keyring.clone(),
            signed_url: SignedUrlOrigin::new(
                config.public_base_url.clone(),
                config.trust_forwarded_headers,
            ),
            body_limits: BodyLimits {
                max_bytes: config.body_limit_bytes,
                timeout: config.body_timeout,
            },
            publisher: publisher.clone(),
        });
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .service(
                    web::resource("/twilio/status")
                        .route(
                            web::post()
                                .to(status::receive_status)
                                .wrap(from_fn(callback_telemetry)),
                        )
                        .default_service(web::to(method_not_allowed)),
                )
                .configure(service_kit::probes::mount::<IngestState>)
        })
        .shutdown_timeout(SHUTDOWN_TIMEOUT.as_secs())
        .client_request_timeout(REQUEST_HEAD_TIMEOUT)
        .keep_alive(KeepAlive::Timeout(KEEP_ALIVE))
        .disable_signals();
        if let Some(workers) = config.workers {
            server = server.workers(workers);
        }
        let server = server.listen(listener)?.run();
        // Last, once nothing can fail any more: a failed build leaves no task behind.
        if let Some(writer) = spool_writer {
            tokio::spawn(writer.run());
        }
        publisher.start();
        Ok(Self {
            port,
            server,
            publisher,
            shutdown_drain: config.shutdown_drain,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle to stop the server gracefully from elsewhere.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until `shutdown` resolves (or `handle().stop(true)`): then
    /// stops accepting, lets in-flight requests (and their publishes)
    /// finish, drains the spool into RabbitMQ while it can confirm (up to
    /// the drain window), and closes the broker connection.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let handle = self.server.handle();
        let mut server = std::pin::pin!(self.server);
        let served = tokio::select! {
            served = &mut server => served,
            () = shutdown => {
                tracing::info!("stopping: finishing in-flight requests");
                let (_, served) = tokio::join!(handle.stop(true), server);
                served
            }
        };
        self.publisher.shutdown(self.shutdown_drain).await;
        served
    }
}

async fn method_not_allowed() -> HttpResponse {
    HttpResponse::MethodNotAllowed()
        .insert_header(("Allow", "POST"))
        .finish()
}
