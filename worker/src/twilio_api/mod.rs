//! Twilio's REST API, the one thing we call out to: creating a message
//! (`send`) and looking one up (`fetch`). hyper with rustls on ring (the
//! crypto lapin already uses), so the workspace keeps one TLS stack and
//! reqwest stays TLS-free.

mod client;
mod fetch;
mod send;

pub use client::TwilioClient;
pub use fetch::{FetchError, FetchedMessage};
pub use send::{SendError, SendRequest};
