//! Batch assembly: wait for one delivery, then take whatever else this
//! consumer has already received, up to `WorkerConfig::max_batch` callbacks
//! (a delivery may carry several: ingest's group commit), without waiting
//! for more. Under load batches fill by themselves; a lone callback is stored
//! at once. A delivery is never split between batches.

use futures_util::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::Consumer;
use queue_wire::batch::declared_callbacks;
use tokio_util::sync::CancellationToken;

use super::end::{BrokerLost, SessionEnd};

pub struct BatchSource {
    consumer: Consumer,
    /// Most callbacks in one batch.
    max_batch: usize,
    /// A delivery received but left for the next batch (it would have
    /// passed the cap).
    carried: Option<Delivery>,
}

impl BatchSource {
    pub fn new(consumer: Consumer, max_batch: usize) -> Self {
        Self {
            consumer,
            max_batch,
            carried: None,
        }
    }

    /// The next batch, and the end of the session if it came while the
    /// batch was being taken (the batch is processed first).
    pub async fn next_batch(
        &mut self,
        stop: &CancellationToken,
    ) -> Result<(Vec<Delivery>, Option<SessionEnd>), SessionEnd> {
        if stop.is_cancelled() {
            return Err(SessionEnd::Shutdown);
        }
        if let Some(first) = self.carried.take() {
            return self.fill(first);
        }
        let first = tokio::select! {
            biased;
            () = stop.cancelled() => return Err(SessionEnd::Shutdown),
            next = self.consumer.next() => next,
        };
        let first = match first {
            Some(Ok(delivery)) => delivery,
            Some(Err(error)) => return Err(BrokerLost::Consumer(error).into()),
            None => return Err(BrokerLost::Cancelled.into()),
        };
        self.fill(first)
    }

    /// `first` and whatever else is ready, within the cap.
    fn fill(&mut self, first: Delivery) -> Result<(Vec<Delivery>, Option<SessionEnd>), SessionEnd> {
        let mut callbacks = declared_callbacks(&first.properties);
        let mut batch = vec![first];
        while callbacks < self.max_batch {
            let next = match self.peek_ready() {
                Ok(Some(next)) => next,
                Ok(None) => break,
                Err(end) => return Ok((batch, Some(end))),
            };
            let carried = declared_callbacks(&next.properties);
            if callbacks + carried > self.max_batch {
                self.carried = Some(next);
                break;
            }
            callbacks += carried;
            batch.push(next);
        }
        Ok((batch, None))
    }

    /// Every delivery already received, without waiting.
    pub fn drain_ready(&mut self) -> Result<Vec<Delivery>, SessionEnd> {
        let mut ready = Vec::new();
        while let Some(delivery) = self.peek_ready()? {
            ready.push(delivery);
        }
        Ok(ready)
    }

    /// The next delivery already received (one set aside first).
    fn peek_ready(&mut self) -> Result<Option<Delivery>, SessionEnd> {
        match self.carried.take() {
            Some(delivery) => Ok(Some(delivery)),
            None => self.next_ready(),
        }
    }

    fn next_ready(&mut self) -> Result<Option<Delivery>, SessionEnd> {
        match self.consumer.next().now_or_never() {
            Some(Some(Ok(delivery))) => Ok(Some(delivery)),
            Some(Some(Err(error))) => Err(BrokerLost::Consumer(error).into()),
            Some(None) => Err(BrokerLost::Cancelled.into()),
            None => Ok(None),
        }
    }
}
