//! Batch assembly: wait for one delivery, then take whatever else this
//! consumer has already received, up to `WORKER_MAX_BATCH`, without waiting
//! for more. Under load batches fill by themselves; a lone callback is
//! stored at once.

use futures_util::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::Consumer;
use tokio_util::sync::CancellationToken;

use super::session::SessionEnd;

pub struct BatchSource {
    consumer: Consumer,
    max_batch: usize,
}

impl BatchSource {
    pub fn new(consumer: Consumer, max_batch: usize) -> Self {
        Self {
            consumer,
            max_batch,
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
        let first = tokio::select! {
            biased;
            () = stop.cancelled() => return Err(SessionEnd::Shutdown),
            next = self.consumer.next() => next,
        };
        let first = match first {
            Some(Ok(delivery)) => delivery,
            Some(Err(error)) => return Err(SessionEnd::BrokerLost(error.to_string())),
            None => return Err(cancelled_by_broker()),
        };
        let mut batch = vec![first];
        while batch.len() < self.max_batch {
            match self.next_ready() {
                Ok(Some(delivery)) => batch.push(delivery),
                Ok(None) => break,
                Err(end) => return Ok((batch, Some(end))),
            }
        }
        Ok((batch, None))
    }

    /// Every delivery already received, without waiting.
    pub fn drain_ready(&mut self) -> Result<Vec<Delivery>, SessionEnd> {
        let mut ready = Vec::new();
        while let Some(delivery) = self.next_ready()? {
            ready.push(delivery);
        }
        Ok(ready)
    }

    fn next_ready(&mut self) -> Result<Option<Delivery>, SessionEnd> {
        match self.consumer.next().now_or_never() {
            Some(Some(Ok(delivery))) => Ok(Some(delivery)),
            Some(Some(Err(error))) => Err(SessionEnd::BrokerLost(error.to_string())),
            Some(None) => Err(cancelled_by_broker()),
            None => Ok(None),
        }
    }
}

fn cancelled_by_broker() -> SessionEnd {
    SessionEnd::BrokerLost("consumer cancelled by the broker".into())
}
