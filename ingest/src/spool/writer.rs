//! The one task that writes the spool: it takes every append waiting, writes
//! them as records to the active segment, fsyncs once, then answers them
//! all (group commit). A segment is sealed when it reaches its size, when
//! the drainer asks, or after a failed write (whose torn tail the drainer
//! then skips).

use chrono::{DateTime, Utc};
use std::fs::OpenOptions;
use std::io::Write;
use tokio::sync::{mpsc, oneshot};

use super::{segment, SegmentInfo, Spool, SpoolError};
use crate::metrics::SPOOL_WRITES;

pub enum Command {
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

pub struct Writer {
    commands: mpsc::UnboundedReceiver<Command>,
    disk: Disk,
}

/// What the blocking part of a write needs: moved to a blocking thread for
/// each group and back. No file stays open between writes, so the
/// filesystem can be remounted (read-only, say) under a running ingest.
struct Disk {
    spool: Spool,
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
    pub(super) fn new(spool: Spool, commands: mpsc::UnboundedReceiver<Command>) -> Self {
        Self {
            commands,
            disk: Disk { spool },
        }
    }

    /// Runs until every `Spool` handle is gone. File I/O (write, fsync) runs
    /// on the blocking pool, one group at a time.
    pub async fn run(mut self) {
        while let Some(first) = self.commands.recv().await {
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
                let mut disk = self.disk;
                let written = tokio::task::spawn_blocking(move || {
                    disk.write(appends);
                    disk
                })
                .await;
                match written {
                    Ok(disk) => self.disk = disk,
                    // Its appends' answers were dropped with it: they get 503.
                    Err(error) => {
                        tracing::error!(%error, "the spool writer failed; spooling stops");
                        return;
                    }
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

impl Disk {
    fn write(&mut self, appends: Vec<Append>) {
        let max_bytes = self.spool.shared.config.max_bytes;
        let mut used = self.spool.lock_state().bytes();
        let mut buffer = Vec::new();
        let mut accepted = Vec::new();
        for (payload, callbacks, oldest, reply) in appends {
            let record_bytes = (payload.len() + 8) as u64;
            if used + record_bytes > max_bytes {
                self.spool.lock_state().full = true;
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
                *self.spool.lock_failed_at() = None;
                self.record_written(buffer.len() as u64, &accepted);
                metrics::counter!(SPOOL_WRITES.name, "outcome" => "written").increment(1);
                for append in accepted {
                    let _ = append.reply.send(Ok(()));
                }
            }
            Err(error) => {
                tracing::error!(
                    %error,
                    dir = %self.spool.dir().display(),
                    "cannot write the spool; callbacks that RabbitMQ cannot confirm get 503"
                );
                *self.spool.lock_failed_at() = Some(std::time::Instant::now());
                metrics::counter!(SPOOL_WRITES.name, "outcome" => "error").increment(1);
                // The segment may now end in a torn record: seal it as it is.
                self.seal();
                for append in accepted {
                    let _ = append.reply.send(Err(SpoolError::Write(error.to_string())));
                }
            }
        }
    }

    fn write_durably(&mut self, buffer: &[u8]) -> std::io::Result<()> {
        let segment_bytes = self.spool.shared.config.segment_bytes;
        let full = self
            .spool
            .lock_state()
            .active
            .as_ref()
            .is_some_and(|active| active.bytes >= segment_bytes);
        if full {
            self.seal();
        }
        let active = self.spool.lock_state().active.as_ref().map(|a| a.sequence);
        let sequence = match active {
            Some(sequence) => sequence,
            None => {
                let sequence = self.spool.lock_state().next_sequence;
                segment::create(self.spool.dir(), sequence)?;
                let mut state = self.spool.lock_state();
                state.next_sequence = sequence + 1;
                state.active = Some(SegmentInfo {
                    sequence,
                    bytes: segment::HEADER.len() as u64,
                    callbacks: 0,
                    oldest: Utc::now(),
                });
                sequence
            }
        };
        let mut file = OpenOptions::new()
            .append(true)
            .open(segment::path(self.spool.dir(), sequence))?;
        file.write_all(buffer)?;
        file.sync_data()
    }

    fn record_written(&self, bytes: u64, accepted: &[Accepted]) {
        {
            let mut state = self.spool.lock_state();
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
                    dir = %self.spool.dir().display(),
                    "RabbitMQ cannot confirm callbacks: spooling them to disk (each answered 200 once written)"
                );
            }
        }
        self.spool.publish_metrics();
    }

    /// Closes the active segment and hands it to the drainer (an empty one
    /// is removed instead).
    fn seal(&mut self) {
        let mut state = self.spool.lock_state();
        if let Some(active) = state.active.take() {
            if active.callbacks > 0 {
                state.sealed.push_back(active);
            } else {
                drop(state);
                let _ = std::fs::remove_file(segment::path(self.spool.dir(), active.sequence));
            }
        }
    }
}
