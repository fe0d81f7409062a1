//! The web console at `/console/`: server-rendered HTML for people who
//! would rather look than query. It reads through the same code as the API
//! (`crate::search`, `crate::stats`, `crate::dlq`) and follows the same
//! access rule (`crate::http::ApiAccess`): a bearer token, or a sign-in
//! that sets an HttpOnly, SameSite=Strict cookie (`session`); every form
//! that changes something carries a CSRF token (`session::Viewer`).
//!
//! No JavaScript: forms, links and `<details>` do everything, the charts
//! are SVG drawn here (`charts`), and the one stylesheet is served by the
//! worker (`assets`), so the console works offline and under a strict
//! Content-Security-Policy.

mod assets;
mod charts;
mod error;
mod layout;
mod pages;
mod session;

use actix_web::middleware::DefaultHeaders;
use actix_web::{web, HttpResponse};

/// Mounts the console under `/console`.
pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route(
            "/console",
            web::get().to(|| async {
                HttpResponse::PermanentRedirect()
                    .insert_header(("Location", "/console/"))
                    .finish()
            }),
        )
        .service(
            web::scope("/console")
                .wrap(
                    DefaultHeaders::new()
                        .add((
                            "Content-Security-Policy",
                            "default-src 'none'; style-src 'self'; img-src 'self'; \
                             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
                        ))
                        .add(("X-Content-Type-Options", "nosniff"))
                        .add(("Referrer-Policy", "no-referrer"))
                        .add(("X-Frame-Options", "DENY")),
                )
                .route("/assets/console.css", web::get().to(assets::stylesheet))
                .route("/sign-in", web::get().to(session::sign_in_page))
                .route("/sign-in", web::post().to(session::sign_in))
                .route("/sign-out", web::post().to(session::sign_out))
                .route("/", web::get().to(pages::search::page))
                .route(
                    "/messages/{message_sid}",
                    web::get().to(pages::message::page),
                )
                .route("/outcomes", web::get().to(pages::outcomes::page))
                .route("/dead-letters", web::get().to(pages::dead_letters::page))
                .route(
                    "/dead-letters/replay",
                    web::post().to(pages::dead_letters::replay),
                ),
        );
}
