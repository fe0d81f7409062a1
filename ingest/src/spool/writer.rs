//! The one task that writes the spool: it takes every append waiting, writes
//! them as records to the active segment, fsyncs once, then answers them
//! all (group commit). A segment is sealed when it reaches its size or when
//! the drainer asks.
//!
//! A failed write is undone (the segment cut back to where it was; if even
//! that fails, the segment is sealed and the drainer skips its torn tail)
//! and its callbacks get 503. Until a write works again the spool reports
//! itself failing, and the writer probes the disk every `PROBE_INTERVAL`
//! with a write of the failed one's size, so readiness comes back when the
//! disk does, traffic or not. A failed segment creation leaves no file and
//! uses up its sequence number, so the next attempt never meets it.

use chrono::{DateTime, Utc};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

use super::accounting::{SegmentInfo, Shared};
use super::error::SpoolError;
use super::segment;
use crate::metrics::SPOOL_WRITES;

/// While writes fail, the writer tries the disk again this often (and so
/// does every callback RabbitMQ cannot confirm): readiness comes back with
/// the first write that works, even if no traffic arrives to try it.
const PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// The file the probe writes, fsyncs and removes.
pub const PROBE_FILE: &str = ".probe";
/// The largest probe: a failed write larger than this is probed with this.
const MAX_PROBE_BYTES: usize = 1 << 20;

pub(super) enum Command {
    Append {
        payload: Vec<u8>,
        callbacks: u64,
        oldest: DateTime<Utc>,
        reply: oneshot::Sender<Result<(), SpoolError>>,
    },
    Seal {
        reply: oneshot::Sender<()>,
    },
}

pub(crate) struct Writer {
    commands: mpsc::UnboundedReceiver<Command>,
    disk: Disk,
}

/// What the blocking part of a write needs: moved to a blocking thread for
/// each group and back. No file stays open between writes, so the
/// filesystem can be remounted (read-only, say) under a running ingest.
struct Disk {
    shared: Arc<Shared>,
    /// Bytes of the last write that failed: what the probe must fit.
    failed_bytes: usize,
}

type Append = (
    Vec<u8>,
    u64,
    DateTime<Utc>,
    oneshot::Sender<Result<(), SpoolError>>,
);

struct Accepted {
    callbacks: u64,
    oldest: DateTime<Utc>,
    reply: oneshot::Sender<Result<(), SpoolError>>,
}

impl Writer {
    pub(super) fn new(shared: Arc<Shared>, commands: mpsc::UnboundedReceiver<Command>) -> Self {
        Self {
            commands,
            disk: Disk {
                shared,
                failed_bytes: 0,
            },
        }
    }

    /// Runs until every `Spool` handle is gone. File I/O (write, fsync) runs
    /// on the blocking pool, one group at a time.
    pub async fn run(mut self) {
        loop {
            let failing = self.disk.shared.failure().is_some();
            let first = tokio::select! {
                command = self.commands.recv() => match command {
                    Some(command) => command,
                    None => return,
                },
                () = tokio::time::sleep(PROBE_INTERVAL), if failing => {
                    match on_blocking_pool(self.disk, Disk::probe).await {
                        Some(disk) => self.disk = disk,
                        None => return,
                    }
                    continue;
                }
            };
            let mut appends: Vec<Append> = Vec::new();
            let mut seals = Vec::new();
            let mut next = Some(first);
            while let Some(command) = next.take().or_else(|| self.commands.try_recv().ok()) {
                match command {
                    Command::Append {
                        payload,
                        callbacks,
                        oldest,
                        reply,
                    } => appends.push((payload, callbacks, oldest, reply)),
                    Command::Seal { reply } => seals.push(reply),
                }
            }
            if !appends.is_empty() {
                match on_blocking_pool(self.disk, move |disk| disk.write(appends)).await {
                    Some(disk) => self.disk = disk,
                    None => return,
                }
            }
            if !seals.is_empty() {
                self.disk.seal();
                for reply in seals {
                    let _ = reply.send(());
                }
            }
        }
    }
}

/// Runs `job` on the blocking pool (file I/O); `None` if it panicked, when
/// the answers of the appends it held were dropped with it (they get 503).
async fn on_blocking_pool(
    mut disk: Disk,
    job: impl FnOnce(&mut Disk) + Send + 'static,
) -> Option<Disk> {
    let done = tokio::task::spawn_blocking(move || {
        job(&mut disk);
        disk
    })
    .await;
    match done {
        Ok(disk) => Some(disk),
        Err(error) => {
            tracing::error!(%error, "the spool writer failed; spooling stops");
            None
        }
    }
}

impl Disk {
    fn write(&mut self, appends: Vec<Append>) {
        let max_bytes = self.shared.config.max_bytes;
        let mut used = self.shared.state().bytes();
        let mut buffer = Vec::new();
        let mut accepted = Vec::new();
        for (payload, callbacks, oldest, reply) in appends {
            let record_bytes = (payload.len() + 8) as u64;
            if used + record_bytes > max_bytes {
                self.shared.state().full = true;
                metrics::counter!(SPOOL_WRITES.name, "outcome" => "full").increment(1);
                let _ = reply.send(Err(SpoolError::Full { max_bytes }));
                continue;
            }
            used += record_bytes;
            segment::encode_record(&payload, &mut buffer);
            accepted.push(Accepted {
                callbacks,
                oldest,
                reply,
            });
        }
        if accepted.is_empty() {
            return;
        }
        match self.write_durably(&buffer) {
            Ok(()) => {
                self.recovered();
                self.record_written(buffer.len() as u64, &accepted);
                metrics::counter!(SPOOL_WRITES.name, "outcome" => "written").increment(1);
                for append in accepted {
                    let _ = append.reply.send(Ok(()));
                }
            }
            Err(error) => {
                metrics::counter!(SPOOL_WRITES.name, "outcome" => "error").increment(1);
                self.failed_bytes = buffer.len();
                self.failing(&error);
                self.undo_failed_write();
                let error = Arc::new(error);
                for append in accepted {
                    let _ = append.reply.send(Err(SpoolError::Write(error.clone())));
                }
            }
        }
    }

    /// Records a failure (what readiness reports); logged when it starts
    /// or its reason changes, not for every write that meets it.
    fn failing(&self, error: &std::io::Error) {
        let message = error.to_string();
        let changed = self.shared.failure().replace(message.clone()) != Some(message);
        if changed {
            tracing::error!(
                %error,
                dir = %self.shared.dir.display(),
                "cannot write the spool; callbacks that RabbitMQ cannot confirm get 503 until a write works again"
            );
        }
    }

    fn recovered(&self) {
        if self.shared.failure().take().is_some() {
            tracing::info!(dir = %self.shared.dir.display(), "the spool can write again");
        }
    }

    /// Cuts the active segment back to what it held before the failed
    /// write; if that fails too, seals it as it is (its torn tail is
    /// skipped when drained).
    fn undo_failed_write(&mut self) {
        let active = self
            .shared
            .state()
            .active
            .as_ref()
            .map(|active| (active.sequence, active.bytes));
        let Some((sequence, bytes)) = active else {
            return;
        };
        if let Err(error) = segment::truncate(&segment::path(&self.shared.dir, sequence), bytes) {
            tracing::debug!(%error, "cannot cut a failed write off the spool segment; sealing it as it is");
            self.seal();
        }
    }

    /// While writes fail: writes, fsyncs and removes a file the size of the
    /// write that failed. When that works, so would the write: the spool is
    /// counted on again.
    fn probe(&mut self) {
        let path = self.shared.dir.join(PROBE_FILE);
        let bytes = self.failed_bytes.clamp(1, MAX_PROBE_BYTES);
        let probed = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(segment::FILE_MODE)
            .open(&path)
            .and_then(|mut file| {
                file.write_all(&vec![0; bytes])?;
                file.sync_data()
            });
        let _ = std::fs::remove_file(&path);
        match probed {
            Ok(()) => self.recovered(),
            Err(error) => self.failing(&error),
        }
    }

    fn write_durably(&mut self, buffer: &[u8]) -> std::io::Result<()> {
        let segment_bytes = self.shared.config.segment_bytes;
        let full = self
            .shared
            .state()
            .active
            .as_ref()
            .is_some_and(|active| active.bytes >= segment_bytes);
        if full {
            self.seal();
        }
        let active = self.shared.state().active.as_ref().map(|a| a.sequence);
        let sequence = match active {
            Some(sequence) => sequence,
            None => self.start_segment()?,
        };
        let mut file = OpenOptions::new()
            .append(true)
            .open(segment::path(&self.shared.dir, sequence))?;
        file.write_all(buffer)?;
        file.sync_data()
    }

    /// Creates the next segment and makes it the active one. Its sequence
    /// number is used up even when creation fails: no name is tried twice.
    fn start_segment(&mut self) -> std::io::Result<u64> {
        let sequence = {
            let mut state = self.shared.state();
            let sequence = state.next_sequence;
            state.next_sequence += 1;
            sequence
        };
        segment::create(&self.shared.dir, sequence)?;
        self.shared.state().active = Some(SegmentInfo {
            sequence,
            bytes: segment::HEADER.len() as u64,
            callbacks: 0,
            oldest: Utc::now(),
        });
        Ok(sequence)
    }

    fn record_written(&self, bytes: u64, accepted: &[Accepted]) {
        {
            let mut state = self.shared.state();
            let was_empty = state.callbacks() == 0;
            if let Some(active) = state.active.as_mut() {
                if active.callbacks == 0 {
                    active.oldest = Utc::now();
                }
                active.bytes += bytes;
                for append in accepted {
                    active.callbacks += append.callbacks;
                    active.oldest = active.oldest.min(append.oldest);
                }
            }
            if was_empty {
                tracing::warn!(
                    dir = %self.shared.dir.display(),
                    "RabbitMQ cannot confirm callbacks: spooling them to disk (each answered 200 once written)"
                );
            }
        }
        self.shared.publish_metrics();
    }

    /// Closes the active segment and hands it to the drainer (an empty one
    /// is removed instead).
    fn seal(&mut self) {
        let mut state = self.shared.state();
        if let Some(active) = state.active.take() {
            if active.callbacks > 0 {
                state.sealed.push_back(active);
            } else {
                drop(state);
                let _ = std::fs::remove_file(segment::path(&self.shared.dir, active.sequence));
            }
        }
    }
}
