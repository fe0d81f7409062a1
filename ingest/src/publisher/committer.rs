//! Group commit: callbacks that arrive together share one broker message
//! and one publisher confirm.
//!
//! Verified callbacks queue here. The committer takes the first, waits for
//! a free in-flight slot, then takes every callback already waiting, up to
//! a count and a size cap, and publishes them as one persistent, mandatory
//! batch message; each request is answered when that message's confirm
//! arrives. No timer: a lone callback goes alone at once, and under load
//! whatever arrived while the slots were busy goes together. Several
//! batches are in flight at once (`in_flight` slots).
//!
//! A batch RabbitMQ cannot confirm in time (not connected, blocking
//! publishers, a nack, no confirm within `spool_after`) goes to the spool
//! instead, and its requests are answered once it is on disk.

use queue_wire::batch::encode_batch;
use queue_wire::envelope::CallbackEnvelope;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_util::sync::CancellationToken;

use super::link::LinkSupervisor;
use super::{Committed, Destination, PublishError, SpoolPolicy};
use crate::metrics::{BATCHES_IN_FLIGHT, BATCH_SIZE};

/// How callbacks are grouped; see the `INGEST_BATCH_*` settings.
#[derive(Clone, Copy, Debug)]
pub struct BatchLimits {
    pub max_callbacks: usize,
    pub max_bytes: usize,
    pub in_flight: usize,
    /// Optional wait before a batch is closed, to let more join it.
    pub linger: Duration,
}

/// One verified callback waiting for its batch's confirm.
pub struct Pending {
    pub envelope: CallbackEnvelope,
    pub answer: oneshot::Sender<Result<Committed, PublishError>>,
    /// When its request stops waiting: its batch must be confirmed by then.
    pub deadline: Instant,
}

pub struct Committer {
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
        let slots = Arc::new(Semaphore::new(self.limits.in_flight.max(1)));
        let mut carried: Option<Pending> = None;
        loop {
            let first = match carried.take() {
                Some(pending) => pending,
                None => tokio::select! {
                    next = self.queue.recv() => match next {
                        Some(pending) => pending,
                        None => break,
                    },
                    () = self.stop.cancelled() => break,
                },
            };
            let Ok(slot) = slots.clone().acquire_owned().await else {
                break;
            };
            if !self.limits.linger.is_zero() {
                tokio::time::sleep(self.limits.linger).await;
            }
            let (batch, next) = self.take_batch(first);
            carried = next;
            let link = self.link.clone();
            let destination = self.destination.clone();
            let spool = self.spool.clone();
            tokio::spawn(async move {
                commit(batch, &link, &destination, spool.as_ref()).await;
                drop(slot);
            });
        }
        // Every slot back: every batch in flight has been answered.
        let _ = slots
            .acquire_many(u32::try_from(self.limits.in_flight.max(1)).unwrap_or(u32::MAX))
            .await;
    }

    /// `first` and whatever else is already waiting, within the caps; the
    /// callback that would pass the size cap starts the next batch.
    fn take_batch(&mut self, first: Pending) -> (Vec<Pending>, Option<Pending>) {
        let mut bytes = first.envelope.body.len();
        let mut batch = vec![first];
        while batch.len() < self.limits.max_callbacks {
            let Ok(pending) = self.queue.try_recv() else {
                break;
            };
            if bytes + pending.envelope.body.len() > self.limits.max_bytes {
                return (batch, Some(pending));
            }
            bytes += pending.envelope.body.len();
            batch.push(pending);
        }
        (batch, None)
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
    let outcome = match publish(&envelopes, link, destination, publish_deadline).await {
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
    let link = link.current().ok_or(PublishError::NotConnected)?;
    if link.is_blocked() {
        return Err(PublishError::Blocked);
    }
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
    tokio::select! {
        confirmed = confirmed => Ok(confirmed?),
        () = blocked(&link) => Err(PublishError::Blocked),
    }
}

/// How often a batch waiting for its confirm looks for flow control.
const BLOCKED_POLL: Duration = Duration::from_millis(10);

/// Resolves once the broker blocks this connection.
async fn blocked(link: &super::link::Link) {
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
            request_id: "r".into(),
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
            linger: Duration::ZERO,
        };
        Committer::new(link, destination, limits, None, CancellationToken::new())
    }

    #[test]
    fn a_batch_takes_what_is_waiting_up_to_the_count_cap() {
        let (queue, mut committer) = committer(3, 1 << 20);
        let mut answers = Vec::new();
        for _ in 0..4 {
            let (p, a) = pending(10);
            queue.send(p).unwrap();
            answers.push(a);
        }
        let (first, _) = pending(10);
        let (batch, carried) = committer.take_batch(first);
        assert_eq!(batch.len(), 3);
        assert!(carried.is_none());
        let (first, _) = pending(10);
        let (batch, _) = committer.take_batch(first);
        assert_eq!(batch.len(), 3, "the first plus the two still waiting");
    }

    #[test]
    fn the_callback_that_passes_the_size_cap_starts_the_next_batch() {
        let (queue, mut committer) = committer(100, 25);
        let mut answers = Vec::new();
        for size in [10, 10, 1000] {
            let (p, a) = pending(size);
            queue.send(p).unwrap();
            answers.push(a);
        }
        let (first, _) = pending(10);
        let (batch, carried) = committer.take_batch(first);
        assert_eq!(batch.len(), 2, "10 + 10 fit in 25, the third 10 does not");
        let carried = carried.expect("the overflowing one is carried over");
        assert_eq!(carried.envelope.body.len(), 10);
        // A callback larger than the cap still goes, alone.
        let (batch, carried) = committer.take_batch(carried);
        assert_eq!(batch.len(), 1);
        let oversized = carried.expect("the 1000-byte one");
        let (batch, carried) = committer.take_batch(oversized);
        assert_eq!((batch.len(), carried.is_none()), (1, true));
    }
}
