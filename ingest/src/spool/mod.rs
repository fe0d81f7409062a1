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
//! (a process that died or was scaled away). On SIGTERM the drainer empties
//! the spool before the process exits, for as long as it is given. Full, or
//! failing to write: 503, never a 200 that was not written, and readiness
//! says so until a write works again (the writer probes the disk).
//!
//! Directories are `0700` and files `0600`: callbacks hold phone numbers.
//! A segment that cannot be read back whole is renamed `*.damaged` and
//! kept, never deleted.
//!
//! What it does not guarantee: a lost disk loses what was on it.

pub mod drainer;
pub mod segment;
mod writer;

use chrono::{DateTime, Utc};
use queue_wire::batch::QueueMessage;
use queue_wire::envelope::CallbackEnvelope;
use std::collections::VecDeque;
use std::fs::{DirBuilder, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

use crate::metrics::{SPOOLED_BYTES, SPOOLED_CALLBACKS, SPOOLING, SPOOL_OLDEST_AGE};

/// While writes fail, the writer tries the disk again this often (and so
/// does every callback RabbitMQ cannot confirm): readiness comes back with
/// the first write that works, even if no traffic arrives to try it.
const PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// Owner only: spool directories hold phone numbers.
const DIR_MODE: u32 = 0o700;

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

/// Whether the spool could take a callback now, and if not, why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpoolHealth {
    Accepting,
    Full {
        max_bytes: u64,
    },
    /// The last write failed (with this error), and none has worked since.
    Failing {
        error: String,
    },
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
    /// Why the last write failed, until one succeeds again.
    failure: Mutex<Option<String>>,
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
        create_private_dir(&root).map_err(io)?;
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
                failure: Mutex::new(None),
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
                failure: Mutex::new(None),
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
    /// worked (after a failure, until a write or the writer's probe works).
    pub fn health(&self) -> SpoolHealth {
        if let Some(error) = self.lock_failure().clone() {
            return SpoolHealth::Failing { error };
        }
        let max_bytes = self.shared.config.max_bytes;
        let state = self.lock_state();
        if state.full || state.bytes() >= max_bytes {
            return SpoolHealth::Full { max_bytes };
        }
        SpoolHealth::Accepting
    }

    fn lock_failure(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.shared
            .failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Callbacks in the spool, not yet drained.
    pub fn callbacks(&self) -> u64 {
        self.lock_state().callbacks()
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

    /// Seals the segment being written, if any (removing it when it holds
    /// nothing): at shutdown, so that an empty file is not left behind.
    pub async fn seal_active(&self) {
        let (reply, sealed) = oneshot::channel();
        if self.commands.send(writer::Command::Seal { reply }).is_ok() {
            let _ = sealed.await;
        }
    }

    /// Removes a drained segment and forgets it. The state is updated as
    /// soon as the file is gone (or found gone), so that a failure after
    /// that (the directory's fsync) never sends the drainer back to a file
    /// that no longer exists; such a failure is logged, not returned: at
    /// worst a crash brings the segment back and its callbacks are
    /// published again, which the worker's dedup absorbs.
    pub fn remove(&self, sequence: u64) -> std::io::Result<()> {
        let dir = &self.shared.dir;
        match std::fs::remove_file(segment::path(dir, sequence)) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
        self.forget(sequence);
        self.sync_dir_after("removing a drained spool segment");
        Ok(())
    }

    /// Renames a segment that could not be read back whole to
    /// `<name>.damaged`, out of the drainer's way but kept for whoever can
    /// recover what it holds, and forgets it.
    pub fn set_aside(&self, sequence: u64) -> std::io::Result<PathBuf> {
        let path = segment::path(&self.shared.dir, sequence);
        let aside = damaged_path(&path);
        match std::fs::rename(&path, &aside) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
        self.forget(sequence);
        self.sync_dir_after("setting a damaged spool segment aside");
        Ok(aside)
    }

    /// Forgets a segment whose file is gone (drained, then found missing).
    pub fn forget(&self, sequence: u64) {
        {
            let mut state = self.lock_state();
            state.sealed.retain(|s| s.sequence != sequence);
            state.full = false;
        }
        self.publish_metrics();
    }

    fn sync_dir_after(&self, what: &'static str) {
        if let Err(error) = segment::sync_dir(&self.shared.dir) {
            tracing::warn!(
                %error,
                dir = %self.shared.dir.display(),
                "{what}: the directory could not be fsynced; a crash now could bring the file back (its callbacks would be published again, and the worker's dedup keeps one)"
            );
        }
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
        let created = create_private_dir(&dir).map_err(io)?;
        if let Some(lock) = try_lock(&dir).map_err(io)? {
            if !created {
                make_private(&dir);
            }
            return Ok((dir, lock));
        }
    }
    Err(OpenError::Locked(root.display().to_string()))
}

/// Creates `dir` (and its missing parents) `0700`; `false` if it existed.
fn create_private_dir(dir: &Path) -> std::io::Result<bool> {
    match DirBuilder::new()
        .recursive(false)
        .mode(DIR_MODE)
        .create(dir)
    {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => {
            Ok(false)
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(dir)?;
            Ok(true)
        }
        Err(error) => Err(error),
    }
}

/// Takes group and other access away from a spool directory that was made
/// by someone else (a volume's mount point, an earlier release's `0755`),
/// when it is plainly the spool's: nothing in it but the spool's own
/// files. A directory shared with anything else (sticky like `/tmp`, or
/// holding other files) is left as it is, with a warning: its segment
/// files are `0600` whatever the directory's mode.
fn make_private(dir: &Path) {
    let Ok(metadata) = std::fs::metadata(dir) else {
        return;
    };
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return;
    }
    let only_spool = std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .filter_map(|entry| entry.ok())
            .all(|entry| is_spool_entry(&entry.file_name().to_string_lossy()))
    });
    let shown_mode = format!("{mode:o}");
    if mode & 0o1000 != 0 || !only_spool {
        tracing::warn!(
            dir = %dir.display(),
            mode = %shown_mode,
            "the spool directory is open to other users and shared (sticky, or holding more than the spool): left as it is (segment files are 0600); give ingest a directory of its own"
        );
        return;
    }
    let private = std::fs::Permissions::from_mode(mode & !0o077);
    match std::fs::set_permissions(dir, private) {
        Ok(()) => tracing::info!(
            dir = %dir.display(),
            was = %shown_mode,
            "made the spool directory private (0700): it holds phone numbers"
        ),
        // Not its owner (a volume's root under fsGroup, say): the files
        // inside are 0600 all the same.
        Err(error) => tracing::info!(
            dir = %dir.display(),
            mode = %shown_mode,
            %error,
            "cannot make the spool directory private; its files are 0600"
        ),
    }
}

/// Whether a directory entry is one the spool itself makes.
fn is_spool_entry(name: &str) -> bool {
    name == ".lock"
        || name == writer::PROBE_FILE
        || name == "lost+found"
        || segment::sequence_of(name).is_some()
        || name
            .strip_suffix(DAMAGED_SUFFIX)
            .and_then(segment::sequence_of)
            .is_some()
        || slot_number(name).is_some()
}

/// What a damaged segment's name gets: it no longer looks like a segment.
const DAMAGED_SUFFIX: &str = ".damaged";

fn damaged_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(DAMAGED_SUFFIX);
    PathBuf::from(name)
}

/// The directory's lock, if no other process holds it. Held through a file
/// opened read-only, so the filesystem can still be remounted read-only.
fn try_lock(dir: &Path) -> std::io::Result<Option<File>> {
    let lock_path = dir.join(".lock");
    if !lock_path.exists() {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(segment::FILE_MODE)
            .open(&lock_path)?;
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
/// counted (damage is reported by the drainer, once, when it is done with
/// the segment).
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

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    fn config(dir: PathBuf) -> SpoolConfig {
        SpoolConfig {
            dir,
            max_bytes: 1 << 20,
            segment_bytes: 64 * 1024,
        }
    }

    #[test]
    fn directories_it_creates_are_private_and_so_is_its_lock() {
        let base = tempfile::tempdir().unwrap();
        std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let root = base.path().join("missing").join("spool");
        let (first, _) = Spool::open(config(root.clone())).unwrap();
        let (second, _) = Spool::open(config(root.clone())).unwrap();
        assert_eq!(second.dir(), root.join("ingest-1"));
        for dir in [&root, &root.join("ingest-1"), &base.path().join("missing")] {
            assert_eq!(mode(dir), DIR_MODE, "{}", dir.display());
        }
        assert_eq!(mode(&root.join(".lock")), segment::FILE_MODE);
        assert_eq!(mode(base.path()), 0o755, "a directory it did not create");
        drop((first, second));
    }

    #[test]
    fn an_existing_spool_directory_is_made_private_but_a_shared_one_is_left() {
        let base = tempfile::tempdir().unwrap();
        let open = std::fs::Permissions::from_mode(0o755);
        // What an earlier release left: the spool's files only.
        let ours = base.path().join("ours");
        std::fs::create_dir(&ours).unwrap();
        std::fs::write(ours.join(".lock"), b"").unwrap();
        std::fs::create_dir(ours.join("ingest-1")).unwrap();
        std::fs::set_permissions(&ours, open.clone()).unwrap();
        let (spool, _) = Spool::open(config(ours.clone())).unwrap();
        assert_eq!(spool.dir(), ours);
        assert_eq!(mode(&ours), DIR_MODE);
        // A directory that also holds other things is not ingest's to change.
        let shared = base.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::write(shared.join("notes.txt"), b"someone else's").unwrap();
        std::fs::set_permissions(&shared, open).unwrap();
        let (spool, _) = Spool::open(config(shared.clone())).unwrap();
        assert_eq!(spool.dir(), shared);
        assert_eq!(mode(&shared), 0o755);
    }
}
