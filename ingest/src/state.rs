//! What every request handler shares, built once by `app`.

use std::time::Duration;
use twilio_protocol::keyring::Keyring;

use crate::publisher::CallbackPublisher;
use crate::signed_url::SignedUrlOrigin;

pub(crate) struct IngestState {
    pub keyring: Keyring,
    pub signed_url: SignedUrlOrigin,
    pub body_limits: BodyLimits,
    pub publisher: CallbackPublisher,
}

/// How much of a request ingest reads, and for how long.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BodyLimits {
    pub max_bytes: usize,
    pub timeout: Duration,
}
