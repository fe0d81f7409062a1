//! The console's one stylesheet, compiled into the binary: nothing is
//! fetched from anywhere else.

use actix_web::HttpResponse;

const STYLESHEET: &str = include_str!("assets/console.css");

pub(super) async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header(("Cache-Control", "public, max-age=3600"))
        .body(STYLESHEET)
}
