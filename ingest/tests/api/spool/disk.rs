//! Disks that fill up or turn read-only: 503, never a 200 not written.

use super::*;

/// A small tmpfs of its own, unmounted on drop: a filesystem to fill up or
/// make read-only without touching the machine's.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "mounting a tmpfs needs root (CI runs as root here)"
        );
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remount(&self, mode: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(self.dir.path())
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: the app under test may still hold its lock file open.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills the filesystem of `dir` to the last byte with a file of its own.
fn fill_disk(dir: &Path) -> PathBuf {
    let filler = dir.join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    let block = vec![0u8; 4096];
    while file.write_all(&block).is_ok() {}
    while file.write_all(&[0]).is_ok() {}
    filler
}

#[tokio::test]
async fn a_full_disk_gives_503_and_every_200_is_on_it() {
    let disk = Tmpfs::mount("96k");
    let app = TestApp::spawn_with(Options {
        amqp_url: Some("amqp://guest:guest@127.0.0.1:1/%2f".to_owned()),
        spool_dir: Some(disk.path().join("spool")),
        ..Options::default()
    })
    .await;
    let mut statuses = Vec::new();
    for n in 1..=400 {
        statuses.extend(send(&app.address, n, 1).await);
    }
    let accepted = statuses.iter().filter(|s| **s == 200).count();
    assert!(
        statuses.contains(&503),
        "the disk filled up: {accepted} accepted"
    );
    assert!(accepted > 0);
    assert_eq!(spooled_sids(&disk.path().join("spool")).len(), accepted);
}

#[tokio::test]
async fn a_read_only_disk_gives_503_until_it_is_writable_again() {
    let disk = Tmpfs::mount("4m");
    let dir = disk.path().join("spool");
    let app = TestApp::spawn_with(Options {
        amqp_url: Some("amqp://guest:guest@127.0.0.1:1/%2f".to_owned()),
        spool_dir: Some(dir.clone()),
        ..Options::default()
    })
    .await;
    assert_eq!(send(&app.address, 1, 1).await, [200]);
    disk.remount("ro");
    assert_eq!(send(&app.address, 2, 1).await, [503]);
    disk.remount("rw");
    // It tries again after a while, and then takes callbacks again.
    wait_for(
        "the spool to take callbacks again",
        Duration::from_secs(30),
        || async { (send(&app.address, 3, 1).await == [200]).then_some(()) },
    )
    .await;
    let sids = spooled_sids(&dir);
    assert!(sids.contains(&message_sid(1)) && sids.contains(&message_sid(3)));
    assert!(!sids.contains(&message_sid(2)), "the 503 was not written");
}

#[tokio::test]
async fn a_full_disk_makes_readiness_say_why_and_the_spool_recovers_when_space_is_back() {
    let disk = Tmpfs::mount("512k");
    let dir = disk.path().join("spool");
    let (proxy, app) = cut_off_from_the_broker(Options {
        spool_dir: Some(dir.clone()),
        ..Options::default()
    })
    .await;

    // No segment yet: the next spool write must create one, on a full disk.
    let filler = fill_disk(disk.path());
    let refused = send(&app.address, 1, 5).await;
    assert_eq!(refused, [503; 5], "the disk is full");
    assert_eq!(app.readyz().await, 503);
    let why = app.readyz_text().await;
    assert!(
        why.contains("spool cannot write") && why.contains("No space left"),
        "{why}"
    );

    // Space comes back: readiness returns without a callback to try it,
    // and the spool takes callbacks again (no half-made segment in the way).
    std::fs::remove_file(&filler).unwrap();
    wait_for(
        "readiness to come back with the disk",
        Duration::from_secs(30),
        || async { (app.readyz().await == 200).then_some(()) },
    )
    .await;
    assert!(app.readyz_text().await.contains("spooling"));
    assert_eq!(send(&app.address, 6, 10).await, [200; 10]);
    let spooled: BTreeSet<String> = spooled_sids(&dir).into_iter().collect();
    let expected: BTreeSet<String> = (6..16).map(message_sid).collect();
    assert_eq!(spooled, expected, "every 200 on disk, none of the 503s");

    proxy.restore();
    let sids = wait_for_queued_sids(&app.broker, 10).await;
    assert_each_once(&sids, 6, 10);
    wait_for(
        "the drained segments to go",
        Duration::from_secs(30),
        || async { (files_ending(&dir, ".spool") == 0).then_some(()) },
    )
    .await;
}
