//! What the one-shot `worker reconcile` needs.

use super::cli::ReconcileCommand;
use super::error::ConfigError;
use super::reconcile::ReconcileConfig;
use super::twilio::{self, TwilioApiConfig};

/// The Twilio API (credentials are required) and the thresholds.
#[derive(Clone, Debug)]
pub struct ReconcileRunConfig {
    pub dry_run: bool,
    pub twilio_api: TwilioApiConfig,
    pub reconcile: ReconcileConfig,
}

impl ReconcileRunConfig {
    pub fn new(command: ReconcileCommand) -> Result<Self, ConfigError> {
        let (twilio_api, _) = twilio::from_args(command.twilio)?;
        Ok(Self {
            dry_run: command.dry_run,
            twilio_api: twilio_api.ok_or(ConfigError::NoApiCredentials)?,
            reconcile: ReconcileConfig::for_one_run(command.reconcile)?,
        })
    }
}
