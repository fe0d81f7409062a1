//! Building and running the ingest service: bind, wire the routes, serve
//! until stopped, then close the broker connection.

use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};
use std::net::TcpListener;
use twilio_protocol::signature::SignatureVerifier;

use crate::config::IngestConfig;
use crate::publisher::CallbackPublisher;
use crate::routes::{probes, status};

/// What every request handler needs.
pub struct IngestState {
    pub verifier: SignatureVerifier,
    pub public_base_url: Option<String>,
    pub body_limit_bytes: usize,
    pub body_timeout: std::time::Duration,
    pub trust_forwarded_headers: bool,
    pub publisher: CallbackPublisher,
    /// Where callbacks are published (for span attributes).
    pub exchange: String,
}

async fn method_not_allowed() -> actix_web::HttpResponse {
    actix_web::HttpResponse::MethodNotAllowed()
        .insert_header(("Allow", "POST"))
        .finish()
}

pub struct Application {
    port: u16,
    server: Server,
    publisher: CallbackPublisher,
}

impl Application {
    /// Binds `config.addr` (port 0 picks a free port) and starts connecting
    /// to RabbitMQ in the background; the server serves from the start.
    pub fn build(config: IngestConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind(config.addr)?;
        let port = listener.local_addr()?.port();
        // Install the recorder before the first request records anything.
        let _ = service_kit::metrics::install();
        let publisher = CallbackPublisher::new(&config.topology, config.confirm_timeout);
        let state = web::Data::new(IngestState {
            verifier: SignatureVerifier::new(config.auth_tokens.clone()),
            public_base_url: config.public_base_url.clone(),
            body_limit_bytes: config.body_limit_bytes,
            body_timeout: config.body_timeout,
            trust_forwarded_headers: config.trust_forwarded_headers,
            publisher: publisher.clone(),
            exchange: config.topology.exchange(),
        });
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .service(
                    web::resource("/twilio/status")
                        .route(web::post().to(status::receive_status))
                        .default_service(web::to(method_not_allowed)),
                )
                .route("/healthz", web::get().to(probes::healthz))
                .route("/readyz", web::get().to(probes::readyz))
                .route("/metrics", web::get().to(probes::metrics))
        })
        .shutdown_timeout(config.shutdown_timeout.as_secs())
        // Slow clients: the request head must arrive within this (408 otherwise).
        .client_request_timeout(std::time::Duration::from_secs(5));
        if let Some(workers) = config.workers {
            server = server.workers(workers);
        }
        let server = server.listen(listener)?.run();
        // Last, once nothing can fail any more: a failed build leaves no task behind.
        publisher.start(config.amqp_url.clone(), config.topology.clone());
        Ok(Self {
            port,
            server,
            publisher,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle to stop the server gracefully (what SIGTERM does).
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until SIGTERM/SIGINT or `handle().stop(true)`: stops accepting,
    /// lets in-flight requests (and their publishes) finish, then closes the
    /// broker connection.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        self.publisher.shutdown().await;
        served
    }
}
