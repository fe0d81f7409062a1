//! A batch as taken for storing: its deliveries, each with the spans of the
//! callbacks it carried, and those callbacks as one slice.

use lapin::message::Delivery;

use super::spans::process_span;
use crate::decode::{DecodedCallback, DecodedDelivery, PoisonEntry};
use crate::metrics::{CALLBACKS_PER_DELIVERY, UNRECOGNISED_STATUSES};

/// One delivery of a batch: the spans of the callbacks it carried (their
/// `DecodedCallback`s are the batch's next ones, in order) and the entries
/// that can never be processed.
pub struct TakenDelivery {
    pub delivery: Delivery,
    pub spans: Vec<tracing::Span>,
    pub poison_entries: Vec<PoisonEntry>,
}

/// The deliveries of one batch, and the callbacks they carry in order as
/// one slice: the statement that stores them takes them so.
pub struct Taken {
    pub deliveries: Vec<TakenDelivery>,
    pub events: Vec<DecodedCallback>,
}

impl Taken {
    pub fn with_capacity(deliveries: usize) -> Self {
        Self {
            deliveries: Vec::with_capacity(deliveries),
            events: Vec::with_capacity(deliveries),
        }
    }

    pub fn add(&mut self, delivery: Delivery, decoded: DecodedDelivery, queue: &str) {
        let carried = decoded.callbacks.len() + decoded.poison_entries.len();
        metrics::histogram!(CALLBACKS_PER_DELIVERY.name).record(carried as f64);
        let mut spans = Vec::with_capacity(decoded.callbacks.len());
        for event in decoded.callbacks {
            if event.callback.status.known().is_none() {
                metrics::counter!(UNRECOGNISED_STATUSES.name).increment(1);
            }
            spans.push(process_span(&delivery, &event, queue));
            self.events.push(event);
        }
        self.deliveries.push(TakenDelivery {
            delivery,
            spans,
            poison_entries: decoded.poison_entries,
        });
    }

    /// Every callback's span, in the order of `events`.
    pub fn spans(&self) -> impl Iterator<Item = &tracing::Span> {
        self.deliveries.iter().flat_map(|taken| &taken.spans)
    }
}
