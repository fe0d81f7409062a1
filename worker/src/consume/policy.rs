//! What happens to a batch: the processing policy.
//!
//! - Stored: acknowledged with one multiple-ack after the commit.
//! - The database cannot take writes (unreachable, read-only, disk full:
//!   see `store::outage`): the batch is held unacknowledged and retried with
//!   backoff until writes work again, instead of burning retries. Holding,
//!   not returning, keeps the pause off the queue's delivery count, so no
//!   outage of any length dead-letters good data; deliveries held past
//!   the hold limit (`WorkerConfig::hold_limit`) are re-enqueued as fresh
//!   copies before the broker's consumer_timeout would return them.
//! - Serialization failures and deadlocks: retried in place.
//! - Any other failure may be about the callbacks: the batch is stored one
//!   callback at a time, and the ones that still fail go to a retry queue
//!   or, out of attempts, to the dead-letter queue. A message that cannot
//!   even be decoded is dead-lettered at once.

use lapin::message::Delivery;
use lapin::options::BasicAckOptions;
use sea_orm::DatabaseConnection;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use super::batch::BatchSource;
use super::end::{BrokerLost, SessionEnd};
use super::spans::persist_span;
use super::taken::{Taken, TakenDelivery};
use crate::config::WorkerConfig;
use crate::decode::{decode, DecodedCallback, PoisonEntry};
use crate::failure::{DeadLetterReason, FailureRouter, RouteError, Routed};
use crate::feed::ChangeFeed;
use crate::health::{HoldReason, WorkerHealth};
use crate::metrics::{
    BATCH_SIZE, DATABASE_PAUSES, DB_BATCH_DURATION, DELIVERIES_RECYCLED, DUPLICATES_SKIPPED,
    EVENTS_PERSISTED,
};
use crate::store::outage::{classify, DbFailure};
use crate::store::{self, BatchOutcome};

/// Serialization failures and deadlocks are retried in place this often.
const CONFLICT_RETRIES: u32 = 5;

/// How a batch's write ended after the outage and conflict policy ran.
enum Written {
    Stored(BatchOutcome),
    /// Failed for a reason that may be about these callbacks.
    Failed(sea_orm::DbErr),
    /// Held past the hold limit and re-enqueued as fresh copies.
    Recycled,
}

/// What one consumer needs to apply the policy.
pub struct Processor<'a> {
    pub router: &'a FailureRouter,
    pub queue: &'a str,
    pub config: &'a WorkerConfig,
    pub db: &'a DatabaseConnection,
    pub health: &'a WorkerHealth,
    /// The session's: cancelled when the worker stops or the session ends.
    pub stop: &'a CancellationToken,
}

impl Processor<'_> {
    /// Stores a batch and acknowledges it. `Err` ends the session; whatever
    /// was not acknowledged is redelivered later.
    pub async fn process(
        &self,
        batch: Vec<Delivery>,
        source: &mut BatchSource,
    ) -> Result<(), SessionEnd> {
        let mut taken = Taken::with_capacity(batch.len());
        for delivery in batch {
            match decode(&delivery.properties, &delivery.data) {
                Ok(decoded) => taken.add(delivery, decoded, self.queue),
                Err(poison) => {
                    let reason = poison.to_string();
                    tracing::warn!(%reason, "dead-lettering a message that cannot be processed");
                    route(
                        &delivery,
                        self.router.dead_letter(
                            &delivery.properties,
                            &delivery.data,
                            &reason,
                            DeadLetterReason::Poison,
                        ),
                    )
                    .await?;
                }
            }
        }
        let Some(last) = taken.deliveries.last() else {
            return Ok(());
        };
        let last = &last.delivery;
        metrics::histogram!(BATCH_SIZE.name).record(taken.events.len() as f64);
        let written = if taken.events.is_empty() {
            Written::Stored(BatchOutcome::default())
        } else {
            // One persist span per callback, each a child of that callback's
            // trace, all open for the one statement that stores them together.
            let persist_spans: Vec<tracing::Span> = taken
                .spans()
                .map(|parent| persist_span(parent, taken.events.len()))
                .collect();
            let held: Vec<&Delivery> = taken.deliveries.iter().map(|t| &t.delivery).collect();
            let written = self.write(&taken.events, &held, source).await;
            drop(persist_spans);
            written?
        };
        match written {
            Written::Stored(outcome) => {
                record_stored(taken.events.iter().zip(taken.spans()), &outcome);
                for delivery in &taken.deliveries {
                    self.dead_letter_entries(&delivery.poison_entries).await?;
                }
                // Deliveries on a channel arrive in tag order and each consumer
                // stores one batch at a time, so every earlier tag on this
                // channel is in this batch or already settled: one ack covers all.
                acknowledge(last, true).await
            }
            Written::Recycled => Ok(()),
            Written::Failed(error) => {
                tracing::warn!(%error, batch = taken.events.len(), "batch failed; storing one by one");
                self.process_one_by_one(taken, source).await
            }
        }
    }

    /// After a batch failed for a reason that may be about its callbacks:
    /// store them one at a time; a callback that still fails goes alone to
    /// a retry queue (or, out of attempts, the dead-letter queue). Each
    /// delivery is acknowledged once all it carried is stored or routed.
    async fn process_one_by_one(
        &self,
        taken: Taken,
        source: &mut BatchSource,
    ) -> Result<(), SessionEnd> {
        let mut events = taken.events.into_iter();
        for TakenDelivery {
            delivery,
            spans,
            poison_entries,
        } in taken.deliveries
        {
            let mut recycled = false;
            // Spans first: `zip` stops on them before taking the next
            // delivery's event.
            for (span, event) in spans.into_iter().zip(events.by_ref()) {
                if recycled {
                    // Its delivery went back to the queue whole.
                    continue;
                }
                let single = [event];
                let persist = persist_span(&span, 1);
                let written = self.write(&single, &[&delivery], source).await;
                drop(persist);
                match written? {
                    Written::Stored(outcome) => {
                        record_stored(single.iter().zip([&span]), &outcome);
                    }
                    Written::Recycled => recycled = true,
                    Written::Failed(error) => {
                        let reason = format!("database error: {error}");
                        let (properties, body) = single[0].as_single_message(&delivery);
                        let routed = self
                            .router
                            .retry_or_dead_letter(&properties, body, &reason)
                            .await?;
                        span.in_scope(|| {
                            tracing::warn!(
                                status = %single[0].callback.status,
                                ?routed,
                                %reason,
                                "callback not stored"
                            );
                        });
                    }
                }
            }
            // A recycled delivery was acknowledged when its copy was confirmed.
            if !recycled {
                self.dead_letter_entries(&poison_entries).await?;
                acknowledge(&delivery, false).await?;
            }
        }
        Ok(())
    }

    /// Callbacks of a batch that can never be processed: each goes alone to
    /// the dead-letter queue (confirmed), while its neighbours are stored.
    async fn dead_letter_entries(&self, entries: &[PoisonEntry]) -> Result<(), SessionEnd> {
        for entry in entries {
            let reason = entry.poison.to_string();
            tracing::warn!(
                %reason,
                request_id = entry.envelope.request_id.map(tracing::field::display),
                "dead-lettering a callback that cannot be processed"
            );
            self.router
                .dead_letter(
                    &entry.envelope.to_properties(),
                    &entry.envelope.body,
                    &reason,
                    DeadLetterReason::Poison,
                )
                .await?;
        }
        Ok(())
    }

    /// Writes `events`, applying the policy: conflicts are retried in place;
    /// while the database cannot take writes the batch is held and retried
    /// with backoff (the retry is the probe: it succeeds exactly when writes
    /// work again). Only failures that may be about the callbacks come back.
    async fn write(
        &self,
        events: &[DecodedCallback],
        held: &[&Delivery],
        source: &mut BatchSource,
    ) -> Result<Written, SessionEnd> {
        let mut conflicts = 0;
        let mut holding_since: Option<Instant> = None;
        let mut backoff = super::database::backoff();
        loop {
            let error = match timed_persist(self.db, events, self.config.common.change_feed).await {
                Ok(outcome) => {
                    if holding_since.is_some() {
                        self.health.set_holding(None);
                        tracing::info!(held = held.len(), "database takes writes again; resuming");
                    }
                    return Ok(Written::Stored(outcome));
                }
                Err(error) => error,
            };
            let failure = match classify(&error) {
                // An unexplained error while the database does not even answer
                // is an outage too.
                DbFailure::Other if !store::database_reachable(self.db).await => DbFailure::Outage,
                failure => failure,
            };
            let reason = match failure {
                DbFailure::Conflict if conflicts < CONFLICT_RETRIES => {
                    conflicts += 1;
                    tokio::time::sleep(Duration::from_millis(10 * u64::from(conflicts))).await;
                    continue;
                }
                DbFailure::Conflict | DbFailure::Other => return Ok(Written::Failed(error)),
                DbFailure::Outage => HoldReason::DatabaseUnavailable,
                DbFailure::Schema => HoldReason::SchemaMismatch,
                DbFailure::Cancelled => HoldReason::DatabaseTooSlow,
            };
            // Told once per hold, and again whenever the reason changes.
            if self.health.holding() != Some(reason) || holding_since.is_none() {
                self.health.set_holding(Some(reason));
                if holding_since.is_none() {
                    metrics::counter!(DATABASE_PAUSES.name).increment(1);
                }
                tracing::warn!(
                    %error,
                    ?reason,
                    held = held.len(),
                    "database cannot take these writes; holding deliveries until it can"
                );
            }
            let since = *holding_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= self.config.hold_limit {
                self.recycle(held, source).await?;
                return Ok(Written::Recycled);
            }
            tokio::select! {
                () = tokio::time::sleep(backoff.next_delay()) => {}
                () = self.stop.cancelled() => return Err(SessionEnd::Shutdown),
            }
        }
    }

    /// Re-enqueues held deliveries, and any others already received on this
    /// channel, as fresh copies (confirmed before each original is acked).
    /// A copy starts with a delivery count of zero and a new consumer_timeout
    /// clock, so a long outage never makes the broker count or drop them.
    async fn recycle(
        &self,
        held: &[&Delivery],
        source: &mut BatchSource,
    ) -> Result<(), SessionEnd> {
        let buffered = source.drain_ready()?;
        for delivery in held.iter().copied().chain(&buffered) {
            route(
                delivery,
                self.router.requeue(&delivery.properties, &delivery.data),
            )
            .await?;
        }
        metrics::counter!(DELIVERIES_RECYCLED.name).increment((held.len() + buffered.len()) as u64);
        tracing::warn!(
            recycled = held.len() + buffered.len(),
            "database still cannot take writes; held deliveries re-enqueued as fresh copies"
        );
        Ok(())
    }
}

/// Waits for a failure route to be confirmed, then acks the original.
async fn route(
    delivery: &Delivery,
    routing: impl std::future::Future<Output = Result<Routed, RouteError>>,
) -> Result<Routed, SessionEnd> {
    let routed = routing.await?;
    acknowledge(delivery, false).await?;
    Ok(routed)
}

async fn timed_persist(
    db: &DatabaseConnection,
    events: &[DecodedCallback],
    feed: ChangeFeed,
) -> Result<BatchOutcome, sea_orm::DbErr> {
    let started = Instant::now();
    let result = store::persist_batch(db, events, feed).await;
    let outcome = if result.is_ok() {
        "committed"
    } else {
        "failed"
    };
    metrics::histogram!(DB_BATCH_DURATION.name, "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
    result
}

fn record_stored<'a>(
    stored: impl Iterator<Item = (&'a DecodedCallback, &'a tracing::Span)>,
    outcome: &BatchOutcome,
) {
    metrics::counter!(EVENTS_PERSISTED.name).increment(outcome.inserted as u64);
    metrics::counter!(DUPLICATES_SKIPPED.name).increment(outcome.duplicates as u64);
    outcome.report.record_metrics();
    for (event, span) in stored {
        span.in_scope(|| {
            tracing::debug!(
                status = %event.callback.status,
                request_id = event.envelope.request_id.map(tracing::field::display),
                "callback processed"
            );
        });
    }
}

/// Acks `delivery`, and with `multiple` every earlier one on its channel.
async fn acknowledge(delivery: &Delivery, multiple: bool) -> Result<(), SessionEnd> {
    delivery
        .acker
        .ack(BasicAckOptions { multiple })
        .await
        .map(|_| ())
        .map_err(|e| BrokerLost::Ack(e).into())
}
