//! What a spool holds and how much room it takes: the segments waiting to
//! be drained, the one being written, what the last write said, and the
//! stock-taking of what an earlier process left in a directory.

use chrono::{DateTime, Utc};
use service_kit::sync::lock;
use std::collections::VecDeque;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use super::error::SpoolHealth;
use super::{record, segment};

/// Where a segment is sealed and a new one started. The drainer reads a
/// segment whole into memory, and a drained segment is removed whole: 16 MiB
/// is some thousands of batches, few files, little memory.
pub(crate) const SEGMENT_BYTES: u64 = 16 << 20;

/// Where the spool lives and how big it may grow.
#[derive(Clone, Debug)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    pub max_bytes: u64,
    /// `SEGMENT_BYTES`; a field so that tests can change it.
    pub segment_bytes: u64,
}

impl SpoolConfig {
    pub(crate) fn new(dir: PathBuf, max_bytes: u64) -> Self {
        Self {
            dir,
            max_bytes,
            segment_bytes: SEGMENT_BYTES,
        }
    }
}

/// A segment waiting to be drained (or being written), oldest first.
#[derive(Clone, Debug)]
pub(crate) struct SegmentInfo {
    pub sequence: u64,
    pub bytes: u64,
    pub callbacks: u64,
    /// When its oldest callback was received (for the age metric).
    pub oldest: DateTime<Utc>,
}

#[derive(Debug, Default)]
pub(super) struct State {
    pub sealed: VecDeque<SegmentInfo>,
    /// The segment the writer appends to, if any.
    pub active: Option<SegmentInfo>,
    pub next_sequence: u64,
    /// An append was refused for want of room, and nothing was drained since.
    pub full: bool,
}

impl State {
    pub fn bytes(&self) -> u64 {
        self.segments().map(|s| s.bytes).sum()
    }

    pub fn callbacks(&self) -> u64 {
        self.segments().map(|s| s.callbacks).sum()
    }

    fn oldest(&self) -> Option<DateTime<Utc>> {
        self.segments().map(|s| s.oldest).min()
    }

    fn segments(&self) -> impl Iterator<Item = &SegmentInfo> {
        self.sealed.iter().chain(&self.active)
    }
}

/// One spool directory and what it holds, shared by its handles and its
/// writer.
pub(super) struct Shared {
    pub config: SpoolConfig,
    /// The directory this process holds: `config.dir` or an `ingest-N` in it.
    pub dir: PathBuf,
    /// Left by another process and taken over for draining only: it does
    /// not report the spool metrics, which are this process's own.
    pub adopted: bool,
    state: Mutex<State>,
    /// Why the last write failed, until one succeeds again.
    failure: Mutex<Option<String>>,
    /// Held for the process's life: the directory's lock.
    _lock: File,
}

impl Shared {
    pub fn new(
        config: SpoolConfig,
        dir: PathBuf,
        lock: File,
        adopted: bool,
    ) -> std::io::Result<Self> {
        let state = take_stock(&dir)?;
        Ok(Self {
            config,
            dir,
            adopted,
            state: Mutex::new(state),
            failure: Mutex::new(None),
            _lock: lock,
        })
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    pub fn failure(&self) -> MutexGuard<'_, Option<String>> {
        lock(&self.failure)
    }

    /// Whether an append now could be taken: not full, and the last write
    /// worked (after a failure, until a write or the writer's probe works).
    pub fn health(&self) -> SpoolHealth {
        if let Some(error) = self.failure().clone() {
            return SpoolHealth::Failing { error };
        }
        let max_bytes = self.config.max_bytes;
        let state = self.state();
        if state.full || state.bytes() >= max_bytes {
            return SpoolHealth::Full { max_bytes };
        }
        SpoolHealth::Accepting
    }

    /// Sets the spool gauges from the state (this process's own spool only).
    pub fn publish_metrics(&self) {
        if self.adopted {
            return;
        }
        let (bytes, callbacks, oldest) = {
            let state = self.state();
            (state.bytes(), state.callbacks(), state.oldest())
        };
        crate::metrics::record_spool_stock(bytes, callbacks, oldest);
    }
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
        for payload in contents.payloads {
            if let Ok(record) = record::Record::decode(contents.format, payload) {
                callbacks += record.callbacks;
                oldest = Some(oldest.map_or(record.oldest, |o| o.min(record.oldest)));
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
