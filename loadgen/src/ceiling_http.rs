//! The HTTP ceiling: a bare actix-web server that answers 200 to every POST
//! without looking at it, on its own thread and runtime in this process, so
//! the same client code measures what HTTP alone costs on this machine.

use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::Context;
use std::net::TcpListener;
use std::thread::JoinHandle;

pub struct BareServer {
    pub port: u16,
    handle: actix_web::dev::ServerHandle,
    thread: JoinHandle<std::io::Result<()>>,
}

async fn accept(body: web::Bytes) -> HttpResponse {
    // The body is read in full, as ingest reads it, and then ignored.
    drop(body);
    HttpResponse::Ok().finish()
}

impl BareServer {
    /// Starts on 127.0.0.1 with a free port and `workers` HTTP worker threads.
    pub fn start(workers: usize) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("ceiling-http".into())
            .spawn(move || {
                actix_web::rt::System::new().block_on(async move {
                    let server = HttpServer::new(|| {
                        App::new().route("/twilio/status", web::post().to(accept))
                    })
                    .workers(workers.max(1))
                    .disable_signals()
                    .shutdown_timeout(1)
                    .listen(listener)?
                    .run();
                    let _ = handle_tx.send(server.handle());
                    server.await
                })
            })?;
        let handle = handle_rx
            .recv()
            .context("the bare HTTP server did not start")?;
        Ok(Self {
            port,
            handle,
            thread,
        })
    }

    pub async fn stop(self) {
        self.handle.stop(false).await;
        let _ = tokio::task::spawn_blocking(move || self.thread.join()).await;
    }
}
