//! The worker's HTTP port: the probes and metrics (`probes`, mounted from
//! `service_kit`), and the API behind its token (`access`): reading a
//! message (`reads`), finding messages (`search`), statistics (`stats`)
//! and sending (`sending`). Refusals map to statuses in one place (`error`).

mod access;
mod deadline;
mod error;
mod probes;
mod reads;
mod search;
mod sending;
mod state;
mod stats;

pub use access::{bearer_token, ApiAccess, Scope};
pub use error::ApiError;
pub use state::HttpState;

use actix_web::middleware::from_fn;
use actix_web::web;

/// The probes are open; every other route needs the API token (`access`).
/// The console checks the same rule itself (it also takes its sign-in
/// cookie), so it is mounted before the API's catch-all scope.
pub fn routes(config: &mut web::ServiceConfig) {
    service_kit::probes::mount::<HttpState>(config);
    crate::console::routes(config);
    config.service(
        web::scope("")
            .wrap(from_fn(access::require_token))
            .route("/messages", web::get().to(search::search_messages))
            .route("/messages/{message_sid}", web::get().to(reads::get_message))
            .route("/stats", web::get().to(stats::get_stats))
            .route("/messages", web::post().to(sending::send_message)),
    );
}
