//! One broker session: a connection with a consumer (a channel each) per
//! `WORKER_CONCURRENCY`, a second connection for failure routes, and the
//! queue-depth sampler. It runs until the broker is lost or the worker
//! stops, and closes every channel before its connection.

use lapin::options::{BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer};
use queue_wire::reconnect::Reconnector;
use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;

use super::batch::BatchSource;
use super::end::SessionEnd;
use super::policy::Processor;
use crate::config::WorkerConfig;
use crate::failure::FailureRouter;
use crate::health::WorkerHealth;
use crate::queue_depth;

pub struct Session {
    connection: Connection,
    /// Retry and dead-letter publishes go on a connection of their own: a
    /// broker in flow control blocks publishing connections, and acks of
    /// batches already stored must still get through.
    publishing: Connection,
    consumers: Vec<Consumer>,
    router: FailureRouter,
    depth_sampler: tokio::task::JoinHandle<()>,
    /// Every channel, kept so that a clean stop closes each one before its
    /// connection: a channel whose last handle is dropped closes itself in
    /// the background, and one that does so while the connection closes
    /// makes lapin log an ERROR.
    channels: Vec<Channel>,
}

impl Session {
    /// `Ok(None)`: the worker stopped while connecting.
    pub async fn open(
        config: &WorkerConfig,
        reconnector: &mut Reconnector,
        stop: &CancellationToken,
    ) -> lapin::Result<Option<Self>> {
        let Some(connection) = reconnector.connect(stop).await else {
            return Ok(None);
        };
        let Some(publishing) = reconnector.connect_named("failures", stop).await else {
            let _ = connection.close(200, "worker stopping".into()).await;
            return Ok(None);
        };
        match Self::set_up(config, connection, publishing).await {
            Ok(session) => Ok(Some(session)),
            Err((error, connection, publishing)) => {
                let _ = connection.close(200, "session set-up failed".into()).await;
                let _ = publishing.close(200, "session set-up failed".into()).await;
                Err(error)
            }
        }
    }

    async fn set_up(
        config: &WorkerConfig,
        connection: Connection,
        publishing: Connection,
    ) -> Result<Self, (lapin::Error, Connection, Connection)> {
        let topology = &config.common.topology;
        let opened = async {
            topology.declare(&connection).await?;
            if config.common.change_feed.is_on() {
                let channel = connection.create_channel().await?;
                topology.declare_changes_exchange(&channel).await?;
                let _ = channel.close(200, "change feed declared".into()).await;
            }
            let mut consumers = Vec::with_capacity(config.concurrency);
            let mut channels = Vec::with_capacity(config.concurrency + 2);
            for _ in 0..config.concurrency {
                let channel = connection.create_channel().await?;
                channels.push(channel.clone());
                channel
                    .basic_qos(config.prefetch, BasicQosOptions::default())
                    .await?;
                consumers.push(
                    channel
                        .basic_consume(
                            topology.main_queue().into(),
                            "".into(),
                            BasicConsumeOptions::default(),
                            FieldTable::default(),
                        )
                        .await?,
                );
            }
            let route_channel = publishing.create_channel().await?;
            route_channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            let depth_channel = connection.create_channel().await?;
            channels.push(depth_channel.clone());
            channels.push(route_channel.clone());
            Ok::<_, lapin::Error>((consumers, channels, route_channel, depth_channel))
        }
        .await;
        match opened {
            Ok((consumers, channels, route_channel, depth_channel)) => Ok(Self {
                depth_sampler: tokio::spawn(queue_depth::sample(depth_channel, topology.clone())),
                router: FailureRouter::new(route_channel, topology.clone()),
                connection,
                publishing,
                consumers,
                channels,
            }),
            Err(error) => Err((error, connection, publishing)),
        }
    }

    pub async fn close(self) {
        self.depth_sampler.abort();
        let _ = self.depth_sampler.await;
        for channel in &self.channels {
            if channel.status().connected() {
                let _ = channel.close(200, "worker session ending".into()).await;
            }
        }
        // Unacknowledged deliveries return to the queue when the connection closes.
        let _ = self
            .connection
            .close(200, "worker session ending".into())
            .await;
        let _ = self
            .publishing
            .close(200, "worker session ending".into())
            .await;
    }

    /// Runs every consumer until one of them ends the session; the others
    /// then finish the batch in hand and stop too.
    pub async fn consume(
        &self,
        config: &WorkerConfig,
        db: &DatabaseConnection,
        health: &WorkerHealth,
        stop: &CancellationToken,
    ) -> SessionEnd {
        // Cancelled when the worker stops or any consumer ends the session.
        let session_stop = stop.child_token();
        let queue = config.common.topology.main_queue();
        let loops = self.consumers.iter().map(|consumer| {
            let session_stop = &session_stop;
            let processor = Processor {
                router: &self.router,
                queue: &queue,
                config,
                db,
                health,
                stop: session_stop,
            };
            let mut source = BatchSource::new(consumer.clone(), config.max_batch);
            async move {
                let end = consume_one(&processor, &mut source).await;
                session_stop.cancel();
                end
            }
        });
        let ends = futures_util::future::join_all(loops).await;
        // The reason to report is the first that is not "asked to stop".
        ends.into_iter()
            .find(|end| !matches!(end, SessionEnd::Shutdown))
            .unwrap_or(SessionEnd::Shutdown)
    }
}

/// One consumer's loop: batch after batch until the session ends.
async fn consume_one(processor: &Processor<'_>, source: &mut BatchSource) -> SessionEnd {
    loop {
        let (batch, pending_end) = match source.next_batch(processor.stop).await {
            Ok(taken) => taken,
            Err(end) => return end,
        };
        if let Err(end) = processor.process(batch, source).await {
            return end;
        }
        if let Some(end) = pending_end {
            return end;
        }
    }
}
