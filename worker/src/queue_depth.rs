//! Samples how many messages wait in the main, retry and dead-letter queues,
//! for the `rabbitmq_queue_messages` gauge (a growing DLQ is what SREs page on).

use crate::metrics::QUEUE_MESSAGES;
use lapin::Channel;
use queue_wire::topology::Topology;
use std::time::Duration;

const INTERVAL: Duration = Duration::from_secs(5);

/// Runs until the channel fails (the session's end); the consumer starts a
/// new one with each broker session.
pub async fn sample(channel: Channel, topology: Topology) {
    loop {
        let main = ready_messages(&channel, &topology.main_queue()).await;
        let mut retry = Some(0);
        for queue in topology.retry_queues() {
            retry = match (retry, ready_messages(&channel, &queue).await) {
                (Some(total), Some(count)) => Some(total + count),
                _ => None,
            };
        }
        let dead = ready_messages(&channel, &topology.dead_letter_queue()).await;
        for (kind, count) in [("main", main), ("retry", retry), ("dead_letter", dead)] {
            let Some(count) = count else {
                return;
            };
            metrics::gauge!(QUEUE_MESSAGES.name, "queue" => kind).set(f64::from(count));
        }
        tokio::time::sleep(INTERVAL).await;
    }
}

async fn ready_messages(channel: &Channel, queue: &str) -> Option<u32> {
    queue_wire::topology::ready_messages(channel, queue)
        .await
        .ok()
}
