//! Republishing the spool: once RabbitMQ is connected and not blocking, the
//! oldest segment is read and each record published as the batch message it
//! holds, with confirms, several in flight. The segment is removed only when
//! every record in it is confirmed; on any failure draining pauses with
//! backoff and that segment is tried again later, whole (the records already
//! confirmed are published twice, and the worker's dedup keeps one).
//!
//! A segment with damage (see `segment`) is drained of every record that
//! can be read, then renamed aside instead of removed, and what it skipped
//! is counted and logged once. A segment whose file is gone when its turn
//! comes is forgotten, not retried.
//!
//! At shutdown (`finish`) the drainer stops waiting for the adoption
//! interval: it empties its own spool and any spool it can adopt, then
//! returns what it drained and what is left; `stop` ends it sooner, between
//! two records (a segment cut short stays on disk, whole).

use futures_util::stream::{FuturesUnordered, StreamExt};
use queue_wire::broker::ConfirmError;
use service_kit::backoff::Backoff;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use super::accounting::SegmentInfo;
use super::handle::Spool;
use super::record::Record;
use super::segment::{self, SegmentContents};
use crate::link::{Destination, LinkError, LinkSupervisor};
use crate::metrics::{SPOOL_DAMAGED_RECORDS, SPOOL_DRAINED};

/// How often an idle drainer looks for work and a ready broker.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How often the drainer looks for spools other processes left behind.
const ADOPTION_INTERVAL: Duration = Duration::from_secs(10);
/// Records published and waiting for their confirm at once.
const IN_FLIGHT: usize = 8;

#[derive(Debug, thiserror::Error)]
enum DrainError {
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    NotConfirmed(#[from] ConfirmError),
    #[error("cannot read or remove a spool segment: {0}")]
    Io(#[from] std::io::Error),
    #[error("stopped before the segment was drained")]
    Stopped,
}

pub(crate) struct Drainer {
    pub spool: Spool,
    pub link: Arc<LinkSupervisor>,
    pub destination: Arc<Destination>,
    pub confirm_timeout: Duration,
    /// Cancelled at shutdown, once no request can spool any more: drain
    /// everything now, then return.
    pub finish: CancellationToken,
    /// Cancelled when there is no more time: return at once.
    pub stop: CancellationToken,
}

/// What the drainer did after `finish`, and what it leaves.
#[derive(Debug, Default)]
pub(crate) struct FinalDrain {
    /// Callbacks drained (confirmed by RabbitMQ) after `finish`.
    pub drained: u64,
    /// Spools of other processes it adopted and could not empty, with the
    /// callbacks left in each (its own spool is the caller's to count).
    pub orphans_left: Vec<(PathBuf, u64)>,
}

/// What to do next.
enum Step {
    Own,
    Orphans,
    /// Finishing, and nothing is left that can be drained.
    Done,
    Stop,
}

/// Where the drainer stands between steps.
struct Progress {
    next_adoption: Instant,
    /// Adopted spools left with callbacks by the last look.
    orphans_left: BTreeMap<PathBuf, u64>,
    /// Whether orphans were looked for since `finish`.
    looked_since_finish: bool,
}

impl Drainer {
    pub async fn run(self) -> FinalDrain {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        let mut drained_since_empty = 0u64;
        let mut drained_finishing = 0u64;
        let mut progress = Progress {
            next_adoption: Instant::now(),
            orphans_left: BTreeMap::new(),
            looked_since_finish: false,
        };
        loop {
            let drained = match self.next_step(&progress).await {
                Step::Stop | Step::Done => break,
                Step::Own => self.drain_own(&mut drained_since_empty).await,
                Step::Orphans => {
                    progress.next_adoption = Instant::now() + ADOPTION_INTERVAL;
                    progress.looked_since_finish = self.finish.is_cancelled();
                    self.drain_orphans(&mut progress.orphans_left).await
                }
            };
            // A segment that was being drained when `finish` came counts.
            let finishing = self.finish.is_cancelled();
            match drained {
                Ok(drained) => {
                    backoff.reset();
                    if finishing {
                        drained_finishing += drained;
                    }
                }
                Err(DrainError::Stopped) => break,
                Err(error) => {
                    self.replace_link_after_nack(&error);
                    let delay = backoff.next_delay();
                    tracing::warn!(
                        %error,
                        retry_in_ms = delay.as_millis() as u64,
                        "draining the spool paused"
                    );
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = self.stop.cancelled() => break,
                    }
                }
            }
        }
        FinalDrain {
            drained: drained_finishing,
            orphans_left: progress.orphans_left.into_iter().collect(),
        }
    }

    /// Waits until there is something to drain and the broker could confirm
    /// it. While its own spool is empty and the broker ready, it drains the
    /// spools other processes left behind, every `ADOPTION_INTERVAL` (and
    /// at once when finishing).
    async fn next_step(&self, progress: &Progress) -> Step {
        loop {
            if self.stop.is_cancelled() {
                return Step::Stop;
            }
            let finishing = self.finish.is_cancelled();
            // Keeps the age of the oldest spooled callback current.
            self.spool.publish_metrics();
            let ready = self.link.is_ready();
            let own_empty = self.spool.is_empty();
            if ready && !own_empty {
                return Step::Own;
            }
            if finishing && own_empty {
                let orphans_pending =
                    !progress.looked_since_finish || !progress.orphans_left.is_empty();
                // Orphans not adopted yet are no one's in particular: not
                // worth waiting for a broker that is away.
                if !orphans_pending || (!ready && progress.orphans_left.is_empty()) {
                    return Step::Done;
                }
                if ready {
                    return Step::Orphans;
                }
            }
            if ready && Instant::now() >= progress.next_adoption {
                return Step::Orphans;
            }
            tokio::select! {
                () = tokio::time::sleep(POLL_INTERVAL) => {}
                () = self.stop.cancelled() => {}
                () = self.finish.cancelled(), if !finishing => {}
            }
        }
    }

    /// Drains the oldest segment of this process's own spool.
    async fn drain_own(&self, drained_since_empty: &mut u64) -> Result<u64, DrainError> {
        let Some(segment) = self.spool.next_to_drain().await else {
            return Err(std::io::Error::other("the spool writer has stopped").into());
        };
        let drained = self.drain(&self.spool, &segment).await?;
        metrics::counter!(SPOOL_DRAINED.name).increment(drained);
        *drained_since_empty += drained;
        tracing::info!(
            segment = segment.sequence,
            drained,
            "spool segment drained into RabbitMQ"
        );
        if self.spool.is_empty() {
            tracing::info!(
                drained = *drained_since_empty,
                "spool drained: every spooled callback is now confirmed by RabbitMQ"
            );
            *drained_since_empty = 0;
        }
        Ok(drained)
    }

    /// A nack asks for a new link: retrying on the same channel can be
    /// nacked forever (a quorum queue whose leader was lost).
    fn replace_link_after_nack(&self, error: &DrainError) {
        if let DrainError::NotConfirmed(ConfirmError::Nacked) = error {
            self.link.nacked();
        }
    }

    /// Adopts every spool no process holds and drains each; `left` becomes
    /// what they still hold. The first error is returned once all were tried.
    async fn drain_orphans(&self, left: &mut BTreeMap<PathBuf, u64>) -> Result<u64, DrainError> {
        left.clear();
        let mut drained = 0;
        let mut first_error = None;
        for orphan in self.spool.adopt_orphans() {
            let (drained_here, error) = self.drain_adopted(&orphan).await;
            drained += drained_here;
            let remaining = orphan.callbacks();
            if remaining > 0 || error.is_some() {
                left.insert(orphan.dir().to_path_buf(), remaining);
            }
            if let Some(error) = error {
                first_error.get_or_insert(error);
            }
            if self.stop.is_cancelled() {
                break;
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(drained),
        }
    }

    /// Drains a spool another process left, segment by segment, until it is
    /// empty or a publish fails (the next look adopts it again).
    async fn drain_adopted(&self, orphan: &Spool) -> (u64, Option<DrainError>) {
        let mut drained_here = 0;
        while let Some(segment) = orphan.next_to_drain().await {
            match self.drain(orphan, &segment).await {
                Ok(drained) => {
                    drained_here += drained;
                    metrics::counter!(SPOOL_DRAINED.name).increment(drained);
                }
                Err(error) => {
                    tracing::warn!(%error, dir = %orphan.dir().display(), "draining an adopted spool paused");
                    return (drained_here, Some(error));
                }
            }
        }
        tracing::info!(
            dir = %orphan.dir().display(),
            drained = drained_here,
            "adopted spool drained: every callback in it is now confirmed by RabbitMQ"
        );
        (drained_here, None)
    }

    /// Publishes every record of `segment` that can be read, then removes
    /// it (or, damaged, sets it aside). Returns how many callbacks it
    /// published. A segment whose file is gone is forgotten: there is
    /// nothing left to publish, and retrying it would never end.
    async fn drain(&self, spool: &Spool, segment: &SegmentInfo) -> Result<u64, DrainError> {
        let path = segment::path(spool.dir(), segment.sequence);
        let read_path = path.clone();
        let read = tokio::task::spawn_blocking(move || segment::read(&read_path))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let mut contents = match read {
            Ok(contents) => contents,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                tracing::warn!(
                    segment = %path.display(),
                    "a spool segment was gone before it was drained (removed from outside?); forgetting it"
                );
                spool.forget(segment.sequence);
                return Ok(0);
            }
            Err(error) => return Err(error.into()),
        };
        let payloads = std::mem::take(&mut contents.payloads);
        let mut drained = 0;
        let mut not_batches = 0u64;
        let mut in_flight = FuturesUnordered::new();
        let mut cut_short = false;
        for payload in payloads {
            let Ok(record) = Record::decode(contents.format, payload) else {
                not_batches += 1;
                continue;
            };
            if self.stop.is_cancelled() {
                cut_short = true;
                break;
            }
            drained += record.callbacks;
            let link = self.link.usable()?;
            let destination = self.destination.clone();
            let deadline = self.confirm_timeout;
            in_flight.push(async move {
                queue_wire::broker::publish_confirmed(
                    link.channel(),
                    &destination.exchange,
                    &destination.routing_key,
                    &record.body,
                    record.properties(),
                    deadline,
                )
                .await
            });
            if in_flight.len() >= IN_FLIGHT {
                if let Some(confirmed) = in_flight.next().await {
                    confirmed?;
                }
            }
        }
        while let Some(confirmed) = in_flight.next().await {
            confirmed?;
        }
        if cut_short {
            return Err(DrainError::Stopped);
        }
        // Confirms came in time: new batches may go to the broker again.
        self.link.mark_responsive();
        self.done_with(spool, segment, &path, &contents, not_batches)?;
        Ok(drained)
    }

    /// Removes a drained segment, or sets it aside if part of it could not
    /// be read (said once, here, with what was skipped).
    fn done_with(
        &self,
        spool: &Spool,
        segment: &SegmentInfo,
        path: &std::path::Path,
        contents: &SegmentContents,
        not_batches: u64,
    ) -> std::io::Result<()> {
        let damaged_records = contents.damage.map_or(0, |d| d.records) + not_batches;
        if damaged_records == 0 {
            spool.remove(segment.sequence)?;
            if contents.torn_tail_bytes > 0 {
                tracing::warn!(
                    segment = %path.display(),
                    torn_tail_bytes = contents.torn_tail_bytes,
                    "a spool segment ended in a torn record (a write cut short by a crash, never answered 200): skipped it, drained the rest"
                );
            }
            return Ok(());
        }
        let aside = spool.set_aside(segment.sequence)?;
        metrics::counter!(SPOOL_DAMAGED_RECORDS.name).increment(damaged_records);
        let reason = match contents.damage {
            Some(damage) => damage.reason,
            None => "a record that is not a batch of callbacks",
        };
        tracing::error!(
            segment = %path.display(),
            kept_as = %aside.display(),
            damaged_records,
            damaged_bytes = contents.damage.map_or(0, |d| d.bytes),
            torn_tail_bytes = contents.torn_tail_bytes,
            reason,
            "spool segment damaged: drained every record that could be read; the ones that could not are skipped and the file is kept aside for inspection"
        );
        Ok(())
    }
}
