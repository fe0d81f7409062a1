//! The durable local spool: where callbacks go when RabbitMQ cannot confirm
//! them in time (not connected, blocking publishers, a late confirm or a
//! nack), so that Twilio still gets its 200 and nothing it sent is lost.
//!
//! An append-only log of checksummed records in segment files (`segment`),
//! written by one task that group-commits appends with one fsync (`writer`):
//! a request is answered 200 only after the fsync that covers its callback.
//! A drainer (`drainer`) republishes sealed segments with confirms once the
//! broker is back, and removes a segment only after every record in it is
//! confirmed; a crash in between republishes some, which the worker's dedup
//! absorbs. A spool directory is locked, so two processes never share one:
//! a second process on the same `INGEST_SPOOL_DIR` takes an `ingest-N`
//! directory inside it. A restarted ingest drains what an earlier one left
//! in its directory, and the drainer adopts directories no process holds
//! (a process that died or was scaled away). Full, or failing to
//! write: 503, never a 200 that was not written.
//!
//! What it does not guarantee: a lost disk loses what was on it.

pub mod drainer;
pub mod segment;
mod writer;

use chrono::{DateTime, Utc};
use queue_wire::batch::QueueMessage;
use queue_wire::envelope::CallbackEnvelope;
use std::collections::VecDeque;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::{SPOOLED_BYTES, SPOOLED_CALLBACKS, SPOOLING, SPOOL_OLDEST_AGE};

/// After a failed write, readiness stops counting on the spool this long.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);

/// Where the spool lives and how big it may grow.
#[derive(Clone, Debug)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    pub max_bytes: u64,
    pub segment_bytes: u64,
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("the spool is full ({max_bytes} bytes)")]
    Full { max_bytes: u64 },
    #[error("cannot write the spool: {0}")]
    Write(String),
    #[error("the spool is not running")]
    Stopped,
}

/// Why the spool could not be opened at start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot use spool directory {dir}: {error}")]
    Io { dir: String, error: std::io::Error },
    #[error(
        "spool directory {0} and every directory inside it are locked by other ingest processes; give this one its own INGEST_SPOOL_DIR"
    )]
    Locked(String),
}

/// A sealed segment waiting to be drained, oldest first.
#[derive(Clone, Debug)]
pub struct SegmentInfo {
    pub sequence: u64,
    pub bytes: u64,
    pub callbacks: u64,
    /// When its oldest callback was received (for the age metric).
    pub oldest: DateTime<Utc>,
}

#[derive(Debug, Default)]
struct State {
    sealed: VecDeque<SegmentInfo>,
    /// The segment the writer appends to, if any.
    active: Option<SegmentInfo>,
    next_sequence: u64,
    /// An append was refused for want of room, and nothing was drained since.
    full: bool,
}

impl State {
    fn bytes(&self) -> u64 {
        self.sealed
            .iter()
            .chain(&self.active)
            .map(|s| s.bytes)
            .sum()
    }

    fn callbacks(&self) -> u64 {
        self.sealed
            .iter()
            .chain(&self.active)
            .map(|s| s.callbacks)
            .sum()
    }

    fn oldest(&self) -> Option<DateTime<Utc>> {
        self.sealed
            .iter()
            .chain(&self.active)
            .map(|s| s.oldest)
            .min()
    }
}

struct Shared {
    config: SpoolConfig,
    /// The directory this process holds: `config.dir` or an `ingest-N` in it.
    dir: PathBuf,
    /// Left by another process and taken over for draining only: it does
    /// not report the spool metrics, which are this process's own.
    adopted: bool,
    state: Mutex<State>,
    /// When the last write failed, until one succeeds again.
    failed_at: Mutex<Option<Instant>>,
    /// Held for the process's life: the directory's lock.
    _lock: File,
}

/// A handle to the spool; cheap to clone.
#[derive(Clone)]
pub struct Spool {
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<writer::Command>,
}

impl Spool {
    /// Opens and locks a directory of its own under `config.dir` (the
    /// directory itself, or, when another process holds that, the first
    /// free `ingest-N` inside it), and takes stock of what an earlier
    /// process left there. Returns the spool and the writer task to spawn.
    pub fn open(config: SpoolConfig) -> Result<(Self, writer::Writer), OpenError> {
        let root = config.dir.clone();
        let io = |error| OpenError::Io {
            dir: root.display().to_string(),
            error,
        };
        std::fs::create_dir_all(&root).map_err(io)?;
        let (dir, lock) = claim(&root)?;
        if dir != root {
            tracing::info!(
                dir = %dir.display(),
                "another ingest process holds the spool directory; this one spools in a directory of its own inside it"
            );
        }
        let state = take_stock(&dir).map_err(io)?;
        let (commands, receiver) = mpsc::unbounded_channel();
        let spool = Self {
            shared: Arc::new(Shared {
                config,
                dir,
                adopted: false,
                state: Mutex::new(state),
                failed_at: Mutex::new(None),
                _lock: lock,
            }),
            commands,
        };
        spool.publish_metrics();
        let writer = writer::Writer::new(spool.clone(), receiver);
        Ok((spool, writer))
    }

    /// The spools under the same root that no process holds and that hold
    /// segments (left by a process that died or was scaled away), locked
    /// for this one to drain. Nothing is ever appended to them.
    pub fn adopt_orphans(&self) -> Vec<Spool> {
        let root = &self.shared.config.dir;
        let mut candidates = vec![root.clone()];
        if let Ok(entries) = std::fs::read_dir(root) {
            candidates.extend(
                entries
                    .filter_map(|entry| entry.ok())
                    .filter(|entry| slot_number(&entry.file_name().to_string_lossy()).is_some())
                    .map(|entry| entry.path()),
            );
        }
        candidates
            .into_iter()
            .filter(|dir| *dir != self.shared.dir && holds_segments(dir))
            .filter_map(|dir| self.adopt(dir))
            .collect()
    }

    fn adopt(&self, dir: PathBuf) -> Option<Spool> {
        let lock = try_lock(&dir).ok().flatten()?;
        let state = match take_stock(&dir) {
            Ok(state) => state,
            Err(error) => {
                tracing::warn!(dir = %dir.display(), %error, "cannot read a spool left by another process");
                return None;
            }
        };
        tracing::warn!(
            dir = %dir.display(),
            callbacks = state.callbacks(),
            "adopted a spool no process holds; draining it"
        );
        // No writer: the channel's receiver is dropped at once.
        let (commands, _) = mpsc::unbounded_channel();
        Some(Self {
            shared: Arc::new(Shared {
                config: self.shared.config.clone(),
                dir,
                adopted: true,
                state: Mutex::new(state),
                failed_at: Mutex::new(None),
                _lock: lock,
            }),
            commands,
        })
    }

    /// The directory this spool holds (the configured one, or one inside it).
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Appends callbacks as one record and returns once it is on disk.
    pub async fn append(&self, envelopes: &[CallbackEnvelope]) -> Result<(), SpoolError> {
        let (reply, replied) = oneshot::channel();
        let (payload, _) = queue_wire::batch::encode_batch(envelopes);
        let oldest = envelopes
            .iter()
            .map(|e| e.received_at)
            .min()
            .unwrap_or_else(Utc::now);
        self.commands
            .send(writer::Command::Append {
                payload,
                callbacks: envelopes.len() as u64,
                oldest,
                reply,
            })
            .map_err(|_| SpoolError::Stopped)?;
        replied.await.map_err(|_| SpoolError::Stopped)?
    }

    /// Whether an append now could be taken: not full, and the last write
    /// worked (or failed long enough ago to be worth trying again: the next
    /// append is the probe).
    pub fn can_accept(&self) -> bool {
        let failed_recently = self
            .lock_failed_at()
            .is_some_and(|at| at.elapsed() < RETRY_AFTER_FAILURE);
        let state = self.lock_state();
        !failed_recently && !state.full && state.bytes() < self.shared.config.max_bytes
    }

    fn lock_failed_at(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.shared
            .failed_at
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether anything waits to be drained.
    pub fn is_empty(&self) -> bool {
        let state = self.lock_state();
        state.sealed.is_empty() && state.active.as_ref().is_none_or(|a| a.callbacks == 0)
    }

    /// The oldest sealed segment; if there is none, the active one is
    /// sealed first (asking the writer, so no append is split).
    pub async fn next_to_drain(&self) -> Option<SegmentInfo> {
        if let Some(oldest) = self.lock_state().sealed.front().cloned() {
            return Some(oldest);
        }
        let (reply, sealed) = oneshot::channel();
        self.commands.send(writer::Command::Seal { reply }).ok()?;
        sealed.await.ok()?;
        self.lock_state().sealed.front().cloned()
    }

    /// Removes a drained segment (its file, durably) and forgets it.
    pub fn remove(&self, sequence: u64) -> std::io::Result<()> {
        let dir = &self.shared.dir;
        match std::fs::remove_file(segment::path(dir, sequence)) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
        segment::sync_dir(dir)?;
        {
            let mut state = self.lock_state();
            state.sealed.retain(|s| s.sequence != sequence);
            state.full = false;
        }
        self.publish_metrics();
        Ok(())
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn publish_metrics(&self) {
        if self.shared.adopted {
            return;
        }
        let (bytes, callbacks, oldest) = {
            let state = self.lock_state();
            (state.bytes(), state.callbacks(), state.oldest())
        };
        metrics::gauge!(SPOOLED_BYTES.name).set(bytes as f64);
        metrics::gauge!(SPOOLED_CALLBACKS.name).set(callbacks as f64);
        metrics::gauge!(SPOOLING.name).set(if callbacks > 0 { 1.0 } else { 0.0 });
        let age = oldest.map_or(0.0, |at| (Utc::now() - at).as_seconds_f64().max(0.0));
        metrics::gauge!(SPOOL_OLDEST_AGE.name).set(age);
    }
}

/// Most processes one spool directory serves (the directory itself and
/// `ingest-1` .. `ingest-63` inside it).
const MAX_SLOTS: usize = 64;

fn slot_number(name: &str) -> Option<usize> {
    name.strip_prefix("ingest-")?.parse().ok()
}

/// The first directory under `root` no other process holds, locked.
fn claim(root: &Path) -> Result<(PathBuf, File), OpenError> {
    for slot in 0..MAX_SLOTS {
        let dir = match slot {
            0 => root.to_path_buf(),
            n => root.join(format!("ingest-{n}")),
        };
        let io = |error| OpenError::Io {
            dir: dir.display().to_string(),
            error,
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        if let Some(lock) = try_lock(&dir).map_err(io)? {
            return Ok((dir, lock));
        }
    }
    Err(OpenError::Locked(root.display().to_string()))
}

/// The directory's lock, if no other process holds it. Held through a file
/// opened read-only, so the filesystem can still be remounted read-only.
fn try_lock(dir: &Path) -> std::io::Result<Option<File>> {
    let lock_path = dir.join(".lock");
    if !lock_path.exists() {
        File::create(&lock_path)?;
    }
    let lock = File::open(&lock_path)?;
    match lock.try_lock() {
        Ok(()) => Ok(Some(lock)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(error)) => Err(error),
    }
}

fn holds_segments(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .filter_map(|entry| entry.ok())
            .any(|entry| segment::sequence_of(&entry.file_name().to_string_lossy()).is_some())
    })
}

/// What an earlier process left: every segment, sealed, with its callbacks
/// counted (damage reported here once; the drainer skips it again).
fn take_stock(dir: &Path) -> std::io::Result<State> {
    let mut sequences: Vec<u64> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| segment::sequence_of(&entry.file_name().to_string_lossy()))
        .collect();
    sequences.sort_unstable();
    let mut state = State {
        next_sequence: sequences.last().map_or(0, |last| last + 1),
        ..State::default()
    };
    for sequence in sequences {
        let path = segment::path(dir, sequence);
        let bytes = std::fs::metadata(&path)?.len();
        let contents = segment::read(&path)?;
        let mut callbacks = 0;
        let mut oldest: Option<DateTime<Utc>> = None;
        for payload in &contents.payloads {
            if let Ok(QueueMessage::Batch(envelopes)) = decode_payload(payload) {
                callbacks += envelopes.len() as u64;
                for envelope in &envelopes {
                    let at = envelope.received_at;
                    oldest = Some(oldest.map_or(at, |o| o.min(at)));
                }
            }
        }
        if let Some(damage) = contents.damage {
            tracing::warn!(
                segment = %path.display(),
                skipped_bytes = contents.skipped_bytes,
                damage,
                "spool segment damaged (torn by a crash?): its intact records will be drained, the rest skipped"
            );
        }
        state.sealed.push_back(SegmentInfo {
            sequence,
            bytes,
            callbacks,
            oldest: oldest.unwrap_or_else(Utc::now),
        });
    }
    if !state.sealed.is_empty() {
        tracing::warn!(
            callbacks = state.callbacks(),
            segments = state.sealed.len(),
            dir = %dir.display(),
            "the spool holds callbacks an earlier process could not publish; draining them once RabbitMQ confirms"
        );
    }
    Ok(state)
}

/// A record's payload as a queue message (the batch format).
pub fn decode_payload(payload: &[u8]) -> Result<QueueMessage, queue_wire::envelope::EnvelopeError> {
    let (_, properties) = queue_wire::batch::encode_batch(&[]);
    QueueMessage::decode(&properties, payload.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_claim_gets_a_directory_of_its_own_until_none_is_left() {
        let root = tempfile::tempdir().unwrap();
        let held: Vec<(PathBuf, File)> = (0..MAX_SLOTS)
            .map(|_| claim(root.path()).unwrap())
            .collect();
        assert_eq!(held[0].0, root.path());
        assert_eq!(held[1].0, root.path().join("ingest-1"));
        let mut dirs: Vec<&PathBuf> = held.iter().map(|(dir, _)| dir).collect();
        dirs.dedup();
        assert_eq!(dirs.len(), MAX_SLOTS);
        assert!(matches!(claim(root.path()), Err(OpenError::Locked(_))));
        // A directory let go is claimed again.
        drop(held);
        assert_eq!(claim(root.path()).unwrap().0, root.path());
    }
}
