//! Reconciliation: Twilio sends no callback for a message's initial status,
//! retries a failed callback once at most, and some carriers never send a
//! receipt. So messages left without a final status are looked up in
//! Twilio's Messages API, with their account's credentials, and what it
//! says is recorded as an event (`source = reconciliation`, the API's
//! answer as raw payload) through the same dedup key and projection as a
//! callback: a callback arriving before or after changes nothing twice and
//! never moves the status backwards.
//!
//! A run: count stale messages (`worker_stale_messages`), take those due a
//! lookup (`candidates`), oldest first, at most `max_per_run`; look them up
//! with `concurrency` requests in flight per account, all of an account's
//! lookups held back while Twilio says 429 (`pacing`); record.

mod candidates;
mod pacing;

pub(crate) use candidates::stale_counts;
pub use candidates::Candidate;

use chrono::Utc;
use futures_util::stream::{self, StreamExt};
use sea_orm::{DatabaseConnection, DbErr};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use twilio_protocol::callback::MessageSid;
use twilio_protocol::status::{CallbackStatus, MessageStatus};

use crate::config::ReconcileConfig;
use crate::decode::dedup::DedupKey;
use crate::feed::ChangeFeed;
use crate::metrics::{
    RECONCILE_API_ERRORS, RECONCILE_CHECKED, RECONCILE_RECOVERED, STALE_MESSAGES,
};
use crate::store::event::{EventRow, ReconciledEvent};
use crate::store::write_rows;
use crate::twilio_api::{FetchError, FetchedMessage, TwilioClient};
use pacing::Pacer;

/// Lookups of one message that Twilio rate-limits before the run moves on.
const RATE_LIMITED_ATTEMPTS: u32 = 5;

/// What a lookup of one message came to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Twilio knows a status we did not have: recorded (or, in a dry run, would be).
    Recorded,
    /// Twilio says what we have.
    Unchanged,
    /// Twilio answered 404: recorded, never asked again.
    NotFound,
    /// No answer to go by (rate limited throughout, Twilio or the network
    /// failing, our credentials refused): asked again next run.
    Failed,
}

/// One line of `worker reconcile`'s output.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    pub message_sid: String,
    pub account_sid: Option<String>,
    pub stored_status: MessageStatus,
    pub twilio_status: Option<String>,
    pub error_code: Option<i32>,
    pub action: Action,
    /// Why it failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Totals of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RunSummary {
    pub checked: usize,
    pub recorded: usize,
    pub unchanged: usize,
    pub not_found: usize,
    pub failed: usize,
}

impl RunSummary {
    fn count(&mut self, finding: &Finding) {
        self.checked += 1;
        match finding.action {
            Action::Recorded => self.recorded += 1,
            Action::Unchanged => self.unchanged += 1,
            Action::NotFound => self.not_found += 1,
            Action::Failed => self.failed += 1,
        }
    }
}

pub struct Reconciler {
    db: DatabaseConnection,
    twilio: TwilioClient,
    config: ReconcileConfig,
    feed: ChangeFeed,
}

impl Reconciler {
    pub fn new(
        db: DatabaseConnection,
        twilio: TwilioClient,
        config: ReconcileConfig,
        feed: ChangeFeed,
    ) -> Self {
        Self {
            db,
            twilio,
            config,
            feed,
        }
    }

    /// One run. `dry_run`: look up, but write nothing.
    pub async fn run_once(&self, dry_run: bool) -> Result<(RunSummary, Vec<Finding>), DbErr> {
        for (status, stale) in candidates::stale_counts(&self.db, &self.config.after, None).await? {
            metrics::gauge!(STALE_MESSAGES.name, "status" => status).set(stale as f64);
        }
        let due = candidates::due(
            &self.db,
            &self.config.after,
            self.config.max_checks,
            self.config.max_per_run,
            !dry_run,
        )
        .await?;
        // By the account the API is asked as (a message with no AccountSid
        // belongs to the main account): its limits are that account's.
        let mut by_account: HashMap<Option<String>, Vec<Candidate>> = HashMap::new();
        for candidate in due {
            by_account
                .entry(self.twilio.account_for(candidate.account_sid.as_deref()))
                .or_default()
                .push(candidate);
        }
        // A UUID like ingest's request ids: the events' `request_id`.
        let run_id = uuid::Uuid::new_v4();
        let accounts = by_account.into_values().map(|messages| async move {
            let pacer = Pacer::default();
            stream::iter(messages)
                .map(|candidate| self.reconcile_one(candidate, &pacer, run_id, dry_run))
                .buffer_unordered(self.config.concurrency)
                .collect::<Vec<_>>()
                .await
        });
        let mut summary = RunSummary::default();
        let mut findings = Vec::new();
        for outcome in futures_util::future::join_all(accounts)
            .await
            .into_iter()
            .flatten()
        {
            let finding = outcome?;
            summary.count(&finding);
            findings.push(finding);
        }
        Ok((summary, findings))
    }

    async fn reconcile_one(
        &self,
        candidate: Candidate,
        pacer: &Pacer,
        run_id: uuid::Uuid,
        dry_run: bool,
    ) -> Result<Finding, DbErr> {
        let mut finding = Finding {
            message_sid: candidate.message_sid.to_string(),
            account_sid: candidate.account_sid.clone(),
            stored_status: candidate.status,
            twilio_status: None,
            error_code: None,
            action: Action::Failed,
            error: None,
        };
        let fetched = self.fetch(&candidate, pacer).await;
        metrics::counter!(RECONCILE_CHECKED.name).increment(1);
        match fetched {
            Ok(message) => {
                let status = CallbackStatus::parse(&message.status);
                finding.twilio_status = Some(message.status.clone());
                finding.error_code = message.error_code;
                let unchanged = status == CallbackStatus::Known(candidate.status)
                    && message.error_code == candidate.error_code;
                if unchanged {
                    finding.action = Action::Unchanged;
                } else {
                    finding.action = Action::Recorded;
                    if !dry_run {
                        self.record(&candidate, message, status, run_id).await?;
                    }
                }
                if !dry_run {
                    candidates::mark_checked(&self.db, &candidate.message_sid, false).await?;
                }
            }
            Err(FetchError::NotFound) => {
                metrics::counter!(RECONCILE_API_ERRORS.name, "kind" => "not_found").increment(1);
                finding.action = Action::NotFound;
                if !dry_run {
                    candidates::mark_checked(&self.db, &candidate.message_sid, true).await?;
                }
            }
            Err(error) => {
                // Counted where it happened (rate limits once per 429).
                tracing::warn!(message_sid = %candidate.message_sid, %error, "reconciliation lookup failed");
                finding.error = Some(error.to_string());
            }
        }
        Ok(finding)
    }

    /// Looks the message up, waiting out the account's rate limits. Once
    /// one message of the account is still rate limited after every
    /// attempt, the account's other lookups wait for the next run.
    async fn fetch(
        &self,
        candidate: &Candidate,
        pacer: &Pacer,
    ) -> Result<FetchedMessage, FetchError> {
        let mut attempt = 0;
        loop {
            pacer.ready().await;
            if pacer.given_up() {
                return Err(FetchError::RateLimited { retry_after: None });
            }
            let result = self
                .twilio
                .fetch_message(
                    candidate.account_sid.as_deref(),
                    candidate.message_sid.as_str(),
                )
                .await;
            match result {
                Err(FetchError::RateLimited { retry_after }) => {
                    metrics::counter!(RECONCILE_API_ERRORS.name, "kind" => "rate_limited")
                        .increment(1);
                    attempt += 1;
                    if attempt >= RATE_LIMITED_ATTEMPTS {
                        pacer.give_up();
                        return Err(FetchError::RateLimited { retry_after });
                    }
                    pacer
                        .pause(retry_after.unwrap_or_else(|| pacing::backoff(attempt - 1)))
                        .await;
                }
                Err(FetchError::NotFound) => return Err(FetchError::NotFound),
                Err(error) => {
                    metrics::counter!(RECONCILE_API_ERRORS.name, "kind" => error.kind())
                        .increment(1);
                    return Err(error);
                }
                Ok(message) => return Ok(message),
            }
        }
    }

    /// Stores what Twilio said as an event, through the callbacks' statement.
    async fn record(
        &self,
        candidate: &Candidate,
        message: FetchedMessage,
        status: CallbackStatus,
        run_id: uuid::Uuid,
    ) -> Result<(), DbErr> {
        let event = ReconciledEvent {
            dedup_key: reconciled_dedup_key(&candidate.message_sid, &status, message.error_code),
            message_sid: candidate.message_sid.to_string(),
            status: status.clone(),
            error_code: message.error_code,
            api_answer: message.raw,
            request_id: run_id,
            // When Twilio last changed the message, as the event's time (so
            // time to final is Twilio's, not our lookup's); now if unknown.
            received_at: message.updated_at.unwrap_or_else(Utc::now),
            account_sid: message
                .account_sid
                .or_else(|| candidate.account_sid.clone()),
            from_address: message.from,
            to_address: message.to,
        };
        let written = write_rows(&self.db, &[EventRow::reconciled(&event)], self.feed).await?;
        written.report.record_metrics();
        if written.inserted > 0 {
            // A status Twilio invents tomorrow is one label, not one each.
            let label = match &status {
                CallbackStatus::Known(known) => known.as_str(),
                CallbackStatus::Unrecognised(_) => "unrecognised",
            };
            metrics::counter!(RECONCILE_RECOVERED.name, "status" => label).increment(1);
        }
        tracing::info!(
            message_sid = %candidate.message_sid,
            from = %candidate.status,
            status = %status,
            error_code = ?event.error_code,
            "status recovered from Twilio's Messages API"
        );
        Ok(())
    }
}

/// The same status (and error code) learned twice is one event.
fn reconciled_dedup_key(
    message_sid: &MessageSid,
    status: &CallbackStatus,
    error_code: Option<i32>,
) -> DedupKey {
    let mut hasher = Sha256::new();
    hasher.update(b"twilio-api-message/v1\n");
    hasher.update(message_sid.as_str().as_bytes());
    hasher.update(b"\n");
    hasher.update(status.as_str().as_bytes());
    hasher.update(b"\n");
    hasher.update(
        error_code
            .map(|c| c.to_string())
            .unwrap_or_default()
            .as_bytes(),
    );
    crate::decode::dedup::key_of(hasher)
}

/// Runs every `interval` until `stop`; a failed run is logged and the next
/// one tried on schedule.
pub async fn run_periodically(reconciler: Reconciler, interval: Duration, stop: CancellationToken) {
    let reconciler = &reconciler;
    crate::periodic::every(interval, stop, move || async move {
        match reconciler.run_once(false).await {
            Ok((summary, _)) if summary.checked > 0 => {
                tracing::info!(
                    checked = summary.checked,
                    recorded = summary.recorded,
                    unchanged = summary.unchanged,
                    not_found = summary.not_found,
                    failed = summary.failed,
                    "reconciliation run"
                );
            }
            Ok(_) => tracing::debug!("reconciliation run: nothing due"),
            Err(error) => tracing::warn!(%error, "reconciliation run failed; next on schedule"),
        }
    })
    .await;
}
