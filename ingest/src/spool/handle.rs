//! The spool's handle: what the publisher, the drainer and the readiness
//! probe do with a spool (append, take stock, drain, set aside).

use queue_wire::envelope::CallbackEnvelope;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

use super::accounting::{SegmentInfo, Shared, SpoolConfig};
use super::directory::{claim, create_private_dir, damaged_path, lock_orphans};
use super::error::{OpenError, SpoolError, SpoolHealth};
use super::record::Record;
use super::segment;
use super::writer::{Command, Writer};

/// A handle to the spool; cheap to clone.
#[derive(Clone)]
pub(crate) struct Spool {
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<Command>,
}

impl Spool {
    /// Opens and locks a directory of its own under `config.dir` (the
    /// directory itself, or, when another process holds that, the first
    /// free `ingest-N` inside it), and takes stock of what an earlier
    /// process left there. Returns the spool and the writer task to spawn.
    pub fn open(config: SpoolConfig) -> Result<(Self, Writer), OpenError> {
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
        let shared = Arc::new(Shared::new(config, dir, lock, false).map_err(io)?);
        let (commands, receiver) = mpsc::unbounded_channel();
        shared.publish_metrics();
        let writer = Writer::new(shared.clone(), receiver);
        Ok((Self { shared, commands }, writer))
    }

    /// The spools under the same root that no process holds and that hold
    /// segments (left by a process that died or was scaled away), locked
    /// for this one to drain. Nothing is ever appended to them.
    pub fn adopt_orphans(&self) -> Vec<Spool> {
        let config = &self.shared.config;
        lock_orphans(&config.dir, &self.shared.dir)
            .into_iter()
            .filter_map(|(dir, lock)| {
                let shared = match Shared::new(config.clone(), dir.clone(), lock, true) {
                    Ok(shared) => shared,
                    Err(error) => {
                        tracing::warn!(dir = %dir.display(), %error, "cannot read a spool left by another process");
                        return None;
                    }
                };
                tracing::warn!(
                    dir = %dir.display(),
                    callbacks = shared.state().callbacks(),
                    "adopted a spool no process holds; draining it"
                );
                // No writer: the channel's receiver is dropped at once.
                let (commands, _) = mpsc::unbounded_channel();
                Some(Self {
                    shared: Arc::new(shared),
                    commands,
                })
            })
            .collect()
    }

    /// The directory this spool holds (the configured one, or one inside it).
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Appends callbacks as one record and returns once it is on disk.
    pub async fn append(&self, envelopes: &[CallbackEnvelope]) -> Result<(), SpoolError> {
        let (reply, replied) = oneshot::channel();
        let record = Record::of_batch(envelopes);
        let payload = record.encode().map_err(|error| {
            SpoolError::Write(std::sync::Arc::new(std::io::Error::other(error)))
        })?;
        self.commands
            .send(Command::Append {
                payload,
                callbacks: record.callbacks,
                oldest: record.oldest,
                reply,
            })
            .map_err(|_| SpoolError::Stopped)?;
        replied.await.map_err(|_| SpoolError::Stopped)?
    }

    /// Whether an append now could be taken (`Shared::health`).
    pub fn health(&self) -> SpoolHealth {
        self.shared.health()
    }

    /// Callbacks in the spool, not yet drained.
    pub fn callbacks(&self) -> u64 {
        self.shared.state().callbacks()
    }

    /// Whether anything waits to be drained.
    pub fn is_empty(&self) -> bool {
        let state = self.shared.state();
        state.sealed.is_empty() && state.active.as_ref().is_none_or(|a| a.callbacks == 0)
    }

    /// The oldest sealed segment; if there is none, the active one is
    /// sealed first (asking the writer, so no append is split).
    pub async fn next_to_drain(&self) -> Option<SegmentInfo> {
        if let Some(oldest) = self.shared.state().sealed.front().cloned() {
            return Some(oldest);
        }
        let (reply, sealed) = oneshot::channel();
        self.commands.send(Command::Seal { reply }).ok()?;
        sealed.await.ok()?;
        self.shared.state().sealed.front().cloned()
    }

    /// Seals the segment being written, if any (removing it when it holds
    /// nothing): at shutdown, so that an empty file is not left behind.
    pub async fn seal_active(&self) {
        let (reply, sealed) = oneshot::channel();
        if self.commands.send(Command::Seal { reply }).is_ok() {
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
            let mut state = self.shared.state();
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

    /// Sets the spool gauges (keeps the oldest callback's age current).
    pub fn publish_metrics(&self) {
        self.shared.publish_metrics();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    use crate::spool::directory::DIR_MODE;

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
