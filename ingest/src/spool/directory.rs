//! Where a spool lives on disk: claiming a directory of its own under the
//! configured one (locked for the process's life), finding and locking the
//! directories other processes left behind, and keeping them private.

use std::fs::{DirBuilder, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::error::OpenError;
use super::{segment, writer};

/// Owner only: spool directories hold phone numbers.
pub(super) const DIR_MODE: u32 = 0o700;

/// Most processes one spool directory serves (the directory itself and
/// `ingest-1` .. `ingest-63` inside it).
const MAX_SLOTS: usize = 64;

fn slot_number(name: &str) -> Option<usize> {
    name.strip_prefix("ingest-")?.parse().ok()
}

/// The first directory under `root` no other process holds, locked.
pub(super) fn claim(root: &Path) -> Result<(PathBuf, File), OpenError> {
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
pub(super) fn create_private_dir(dir: &Path) -> std::io::Result<bool> {
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

pub(super) fn damaged_path(path: &Path) -> PathBuf {
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

/// The directories under `root` other than `own` that no process holds
/// and that hold segments, each with its lock, now held by this process.
pub(super) fn lock_orphans(root: &Path, own: &Path) -> Vec<(PathBuf, File)> {
    let mut candidates = vec![root.to_path_buf()];
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
        .filter(|dir| dir != own && holds_segments(dir))
        .filter_map(|dir| {
            let lock = try_lock(&dir).ok().flatten()?;
            Some((dir, lock))
        })
        .collect()
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
