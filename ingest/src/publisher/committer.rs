//! Group commit: callbacks that arrive together share one broker message
//! and one publisher confirm.
//!
//! Verified callbacks queue here. The committer takes every callback
//! waiting, up to a count and a size cap, and publishes them as one
//! persistent, mandatory batch message; each request is answered when that
//! message's confirm arrives. No timer: a lone callback goes alone at once.
//! While a batch is in flight the next one fills up, and goes when that
//! batch is answered, so under load what arrived during one publish goes
//! together; when half a batch's worth is already waiting it goes at once,
//! up to `in_flight` batches side by side, so a slow confirm never caps the
//! rate at one batch per round trip.
//!
//! A batch RabbitMQ cannot confirm in time (not connected, blocking
//! publishers, a nack, no confirm within `spool_after`) goes to the spool
//! instead, and its requests are answered once it is on disk.

use queue_wire::batch::encode_batch;
use queue_wire::broker::ConfirmError;
use queue_wire::envelope::CallbackEnvelope;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use super::outcome::{Committed, PublishError};
use crate::link::{Destination, Link, LinkError, LinkSupervisor};
use crate::metrics::{BATCHES_IN_FLIGHT, BATCH_SIZE};
use crate::spool::Spool;

/// How callbacks are grouped.
#[derive(Clone, Copy, Debug)]
pub struct BatchLimits {
    pub max_callbacks: usize,
    pub max_bytes: usize,
    pub in_flight: usize,
}

impl BatchLimits {
    pub(crate) const DEFAULT: Self = Self {
        // RabbitMQ's cost is per message: 64 callbacks of a few hundred
        // bytes share one, and past a few dozen the saving is small.
        max_callbacks: 64,
        // A larger callback still goes, alone; 512 KiB keeps a message far
        // below RabbitMQ's 16 MiB default largest message.
        max_bytes: 512 * 1024,
        // Enough that a slow confirm does not cap the rate at one batch per
        // round trip; callbacks that arrive while all are in flight go
        // together in the next one.
        in_flight: 4,
    };
}

/// How the publisher falls back on the spool.
#[derive(Clone)]
pub(crate) struct SpoolPolicy {
    pub spool: Spool,
    /// How long a batch may wait for its confirm before it is spooled.
    pub spool_after: Duration,
}

/// The longest a batch waits for RabbitMQ's confirm before it is spooled:
/// a confirm usually takes milliseconds, so one not there in a second is
/// not coming soon, and the request still has time to be answered 200.
const MAX_SPOOL_AFTER: Duration = Duration::from_secs(1);

/// How long a batch waits for its confirm before it is spooled: at most a
/// second, and at most half of the request's `confirm_timeout`, so that
/// spooling always starts well before the request stops waiting.
pub(crate) fn spool_after(confirm_timeout: Duration) -> Duration {
    MAX_SPOOL_AFTER.min(confirm_timeout / 2)
}

/// One verified callback waiting for its batch's confirm.
pub(crate) struct Pending {
    pub envelope: CallbackEnvelope,
    pub answer: oneshot::Sender<Result<Committed, PublishError>>,
    /// When its request stops waiting: its batch must be confirmed by then.
    pub deadline: Instant,
}

pub(crate) struct Committer {
    queue: mpsc::UnboundedReceiver<Pending>,
    link: Arc<LinkSupervisor>,
    destination: Arc<Destination>,
    limits: BatchLimits,
    spool: Option<SpoolPolicy>,
    stop: CancellationToken,
}

impl Committer {
    pub fn new(
        link: Arc<LinkSupervisor>,
        destination: Arc<Destination>,
        limits: BatchLimits,
        spool: Option<SpoolPolicy>,
        stop: CancellationToken,
    ) -> (mpsc::UnboundedSender<Pending>, Self) {
        let (sender, queue) = mpsc::unbounded_channel();
        let committer = Self {
            queue,
            link,
            destination,
            limits,
            spool,
            stop,
        };
        (sender, committer)
    }

    /// Runs until stopped, then waits for the batches in flight.
    pub async fn run(mut self) {
        let slots = self.limits.in_flight.max(1);
        let free = Arc::new(Semaphore::new(slots));
        let finished = Arc::new(Notify::new());
        let mut waiting: VecDeque<Pending> = VecDeque::new();
        loop {
            if waiting.is_empty() {
                tokio::select! {
                    next = self.queue.recv() => match next {
                        Some(pending) => waiting.push_back(pending),
                        None => break,
                    },
                    () = self.stop.cancelled() => break,
                }
            }
            self.take_waiting(&mut waiting);
            // While a batch is in flight, the next one fills up as it waits:
            // it goes when that batch is answered, or at once when enough are
            // waiting to be worth a message of their own.
            while free.available_permits() < slots && waiting.len() < self.parallel_threshold() {
                tokio::select! {
                    () = finished.notified() => {}
                    next = self.queue.recv() => match next {
                        Some(pending) => waiting.push_back(pending),
                        None => break,
                    },
                    () = self.stop.cancelled() => break,
                }
                self.take_waiting(&mut waiting);
            }
            let Ok(slot) = free.clone().acquire_owned().await else {
                break;
            };
            let batch = self.take_batch(&mut waiting);
            let link = self.link.clone();
            let destination = self.destination.clone();
            let spool = self.spool.clone();
            let finished = finished.clone();
            tokio::spawn(async move {
                commit(batch, &link, &destination, spool.as_ref()).await;
                drop(slot);
                finished.notify_one();
            });
        }
        // Every slot back: every batch in flight has been answered.
        let _ = free
            .acquire_many(u32::try_from(slots).unwrap_or(u32::MAX))
            .await;
    }

    /// Callbacks waiting that justify a second batch in flight at once.
    fn parallel_threshold(&self) -> usize {
        (self.limits.max_callbacks / 2).max(1)
    }

    /// Moves every callback already queued to `waiting`, without waiting.
    fn take_waiting(&mut self, waiting: &mut VecDeque<Pending>) {
        while let Ok(pending) = self.queue.try_recv() {
            waiting.push_back(pending);
        }
    }

    /// The oldest waiting callbacks, within the caps (a callback larger than
    /// the size cap still goes, alone).
    fn take_batch(&self, waiting: &mut VecDeque<Pending>) -> Vec<Pending> {
        let mut bytes = 0;
        let mut batch = Vec::new();
        while batch.len() < self.limits.max_callbacks {
            let Some(next) = waiting.front() else {
                break;
            };
            let size = next.envelope.body.len();
            if !batch.is_empty() && bytes + size > self.limits.max_bytes {
                break;
            }
            bytes += size;
            batch.extend(waiting.pop_front());
        }
        batch
    }
}

/// What a spool write leaves of a request's time: an fsync takes
/// milliseconds, and the answer must still come before its deadline.
const SPOOL_WRITE_MARGIN: Duration = Duration::from_millis(250);

/// Publishes one batch (or spools it) and answers each of its callbacks
/// with the outcome.
async fn commit(
    batch: Vec<Pending>,
    link: &LinkSupervisor,
    destination: &Destination,
    spool: Option<&SpoolPolicy>,
) {
    // A request that already gave up (its answer deadline passed) is not
    // published: it was answered 503 and Twilio's retry, if any, brings it.
    let now = Instant::now();
    let live: Vec<Pending> = batch
        .into_iter()
        .filter(|pending| !pending.answer.is_closed() && pending.deadline > now)
        .collect();
    // The confirm must come before the first of these requests stops
    // waiting, so that a 503 always means "not confirmed in time".
    let Some(deadline) = live.iter().map(|pending| pending.deadline).min() else {
        return;
    };
    let (envelopes, answers): (Vec<_>, Vec<_>) = live
        .into_iter()
        .map(|pending| (pending.envelope, pending.answer))
        .unzip();
    metrics::histogram!(BATCH_SIZE.name).record(envelopes.len() as f64);
    metrics::gauge!(BATCHES_IN_FLIGHT.name).increment(1.0);
    let mut publish_deadline = deadline - now;
    if let Some(policy) = spool {
        publish_deadline = publish_deadline
            .saturating_sub(SPOOL_WRITE_MARGIN)
            .min(policy.spool_after);
    }
    // With a spool to fall back on, a broker that stopped confirming is not
    // made to time out every batch: they go to the spool at once.
    let published = if spool.is_some() && link.skip_broker() {
        Err(PublishError::Unresponsive)
    } else {
        publish(&envelopes, link, destination, publish_deadline).await
    };
    let outcome = match published {
        Ok(()) => Ok(Committed::Broker),
        Err(error) => match spool {
            Some(policy) => {
                tracing::debug!(%error, callbacks = envelopes.len(), "not confirmed in time; spooling");
                policy
                    .spool
                    .append(&envelopes)
                    .await
                    .map(|()| Committed::Spool)
                    .map_err(PublishError::Spool)
            }
            None => Err(error),
        },
    };
    metrics::gauge!(BATCHES_IN_FLIGHT.name).decrement(1.0);
    for answer in answers {
        let _ = answer.send(outcome.clone());
    }
}

async fn publish(
    envelopes: &[CallbackEnvelope],
    link: &LinkSupervisor,
    destination: &Destination,
    deadline: Duration,
) -> Result<(), PublishError> {
    let supervisor = link;
    let link = supervisor.usable()?;
    let (body, properties) = encode_batch(envelopes);
    let confirmed = queue_wire::broker::publish_confirmed(
        link.channel(),
        &destination.exchange,
        &destination.routing_key,
        &body,
        properties,
        deadline,
    );
    // A broker that starts blocking publishers will not confirm this batch
    // until the alarm clears: stop waiting as soon as it does.
    let outcome = tokio::select! {
        confirmed = confirmed => confirmed.map_err(PublishError::from),
        () = blocked(&link) => Err(LinkError::Blocked.into()),
    };
    match &outcome {
        Ok(()) => supervisor.mark_responsive(),
        Err(PublishError::NotConfirmed(ConfirmError::Timeout(_))) => supervisor.mark_unresponsive(),
        Err(PublishError::NotConfirmed(ConfirmError::Nacked)) => supervisor.nacked(),
        Err(_) => {}
    }
    outcome
}

/// How often a batch waiting for its confirm looks for flow control.
const BLOCKED_POLL: Duration = Duration::from_millis(10);

/// Resolves once the broker blocks this connection.
async fn blocked(link: &Link) {
    while !link.is_blocked() {
        tokio::time::sleep(BLOCKED_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use queue_wire::envelope::BodyKind;
    use queue_wire::topology::Topology;

    fn pending(body_bytes: usize) -> (Pending, oneshot::Receiver<Result<Committed, PublishError>>) {
        let (answer, answered) = oneshot::channel();
        let envelope = CallbackEnvelope {
            body: vec![b'x'; body_bytes],
            body_kind: BodyKind::Form,
            received_at: Utc::now(),
            request_id: Some(uuid::Uuid::nil()),
            idempotency_token: None,
            trace_context: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        (
            Pending {
                envelope,
                answer,
                deadline,
            },
            answered,
        )
    }

    fn committer(
        max_callbacks: usize,
        max_bytes: usize,
    ) -> (mpsc::UnboundedSender<Pending>, Committer) {
        let link = Arc::new(LinkSupervisor::new(
            "amqp://127.0.0.1:1/%2f".into(),
            Topology::new("unit"),
            "unit test",
        ));
        let destination = Arc::new(Destination {
            exchange: "x".into(),
            routing_key: "k".into(),
        });
        let limits = BatchLimits {
            max_callbacks,
            max_bytes,
            in_flight: 1,
        };
        Committer::new(link, destination, limits, None, CancellationToken::new())
    }

    #[test]
    fn a_batch_takes_the_oldest_waiting_up_to_the_count_cap() {
        let (_, committer) = committer(3, 1 << 20);
        let mut waiting: VecDeque<Pending> = (0..4).map(|_| pending(10).0).collect();
        assert_eq!(committer.take_batch(&mut waiting).len(), 3);
        assert_eq!(committer.take_batch(&mut waiting).len(), 1);
        assert!(committer.take_batch(&mut waiting).is_empty());
    }

    #[test]
    fn the_callback_that_passes_the_size_cap_starts_the_next_batch() {
        let (_, committer) = committer(100, 25);
        let mut waiting: VecDeque<Pending> = [10, 10, 10, 1000, 10]
            .iter()
            .map(|size| pending(*size).0)
            .collect();
        let sizes = |batch: Vec<Pending>| -> Vec<usize> {
            batch.iter().map(|p| p.envelope.body.len()).collect()
        };
        assert_eq!(
            sizes(committer.take_batch(&mut waiting)),
            [10, 10],
            "the third does not fit in 25"
        );
        assert_eq!(sizes(committer.take_batch(&mut waiting)), [10]);
        assert_eq!(
            sizes(committer.take_batch(&mut waiting)),
            [1000],
            "larger than the cap: alone"
        );
        assert_eq!(sizes(committer.take_batch(&mut waiting)), [10]);
    }

    #[test]
    fn a_second_batch_goes_in_parallel_only_when_half_a_batch_waits() {
        let (_, usual) = committer(64, 1 << 20);
        assert_eq!(usual.parallel_threshold(), 32);
        let (_, tiny) = committer(1, 1 << 20);
        assert_eq!(tiny.parallel_threshold(), 1);
    }
}
