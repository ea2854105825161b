//! Bounded waits on the checkpoint storage.
//!
//! A stat, open, read, fsync, rename or readdir on a network file system whose server is gone
//! (a FUSE client that gets no answer, an NFS hard mount) blocks in the kernel, uninterruptibly,
//! for as long as the client waits — possibly forever. A thread doing it cannot be cancelled, but
//! its caller can stop waiting for it: [`bounded`] runs the operation on a helper thread and
//! gives up after `after` with [`StorageError::Timeout`], naming the operation, the path and the
//! mount it lies on. The stuck thread is abandoned (detached): it finishes on its own if the
//! storage comes back, or stays blocked until the process exits; it holds only its own copies of
//! what the operation needs. Which operations go through here, and why the others need not:
//! docs/STORAGE.md.
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The operation did not finish in time: the storage (server, network, client) is hung.
    #[error("checkpoint storage {mount}: {what} {} did not finish within {}s: the file system does not answer (storage server down, network or client hung?)", path.display(), after.as_secs_f64())]
    Timeout {
        what: &'static str,
        path: PathBuf,
        /// The mount the path lies on, as `/mnt/ckpt (fuse.glusterfs server:/vol)`.
        mount: String,
        after: Duration,
    },
    /// Root may not write there: the storage maps the compute nodes' root to an unprivileged user
    /// that does not own the checkpoint root.
    #[error("checkpoint storage {}: root on this node cannot write it ({err}): is it exported with root squash? Then map root to a dedicated account (NFS anonuid, GlusterFS server.anonuid), make that account own the checkpoint root and set the site's storage_root_uid to it (docs/STORAGE.md); or export it without root squash for the compute nodes", root.display())]
    RootCannotWrite { root: PathBuf, err: std::io::Error },
    /// Root's new files do not belong to who the site says root is there: the storage maps root to
    /// another account than `storage_root_uid` (or does so only now), and files of that owner are
    /// not trusted as root's.
    #[error("checkpoint storage {}: a file root creates there belongs to uid {found}, but the site's storage_root_uid is {expected}: {}; set storage_root_uid to the account the storage maps root to, or change the export (docs/STORAGE.md)", root.display(), owner_hint(*found))]
    RootIsSomeoneElse {
        root: PathBuf,
        found: u32,
        expected: u32,
    },
    /// The checkpoint root's path no longer lies on the mount it lay on when the job started: the
    /// storage was unmounted (or is being remounted), and what is written there now would land on
    /// the node's own disk, where no other node would ever find it.
    #[error("checkpoint storage {} is not mounted: it lies on {now} now, on {was} when the job started (unmounted, or being remounted?); nothing is written there until the storage is back", root.display())]
    NotMounted {
        root: PathBuf,
        was: String,
        now: String,
    },
    /// The checkpoint root lies on another file system type than the site's `storage_fstype`.
    #[error("checkpoint storage {} lies on {found}, not on a file system of type {expected} (site storage_fstype): is the storage mounted on this node?", root.display())]
    NotOnStorage {
        root: PathBuf,
        found: String,
        expected: String,
    },
    #[error("{what} {}: no thread to run it on: {err}", path.display())]
    Spawn {
        what: &'static str,
        path: PathBuf,
        err: std::io::Error,
    },
}

/// Run the blocking file-system operation `op` on `path` on a helper thread and wait at most
/// `after` for it. Blocks the calling thread (at most `after`); see [`bounded_async`] in async
/// code that must stay responsive meanwhile.
pub fn bounded<T, F>(after: Duration, what: &'static str, path: &Path, op: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    spawn(what, path, move || {
        // The receiver is gone when the caller gave up: nothing to report to.
        let _ = tx.send(op());
    })?;
    match rx.recv_timeout(after) {
        Ok(res) => res,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(timeout(what, path, after)),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(Error::ThreadPanicked { what }),
    }
}

/// [`bounded`] for async code: the runtime's thread goes on with other work while it waits.
pub async fn bounded_async<T, F>(
    after: Duration,
    what: &'static str,
    path: &Path,
    op: F,
) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    spawn(what, path, move || {
        let _ = tx.send(op());
    })?;
    match tokio::time::timeout(after, rx).await {
        Ok(Ok(res)) => res,
        Ok(Err(_)) => Err(Error::ThreadPanicked { what }),
        Err(_) => Err(timeout(what, path, after)),
    }
}

fn owner_hint(found: u32) -> &'static str {
    match found {
        0 => "the storage does not squash root",
        65534 => "the storage squashes root to nobody, whom other processes share: checkpoints would not be private",
        _ => "the storage squashes root to that account",
    }
}

/// Whether root can create and remove a file in `<ckpt_root>/.state` (made here if missing), and
/// the file belongs to `root_uid` (site `storage_root_uid`: 0, or the account a root-squashing
/// export maps root to). Every record the product keeps there and in the users' areas is written
/// as root, so storage where root is someone else fails every checkpoint; refuse the job at its
/// start instead, saying why. Bounded by `after` like every storage access.
pub async fn check_root_writable(
    ckpt_root: &Path,
    root_uid: u32,
    node: &str,
    after: Duration,
) -> Result<()> {
    let dir = ckpt_root.join(".state");
    let probe = dir.join(format!(".root-probe-{node}-{}", std::process::id()));
    let (root, d) = (ckpt_root.to_path_buf(), dir.clone());
    bounded_async(after, "checking that root may write", &d, move || {
        let denied = |err: std::io::Error| match err.raw_os_error() {
            Some(nix::libc::EACCES | nix::libc::EPERM) => {
                Error::Storage(StorageError::RootCannotWrite {
                    root: root.clone(),
                    err,
                })
            }
            _ => Error::io(&probe, err),
        };
        use std::os::unix::fs::MetadataExt;
        std::fs::create_dir_all(&dir).map_err(denied)?;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&probe)
            .map_err(denied)?;
        let found = f.metadata().map_err(|e| Error::io(&probe, e))?.uid();
        std::fs::remove_file(&probe).map_err(|e| Error::io(&probe, e))?;
        if found != root_uid {
            return Err(Error::Storage(StorageError::RootIsSomeoneElse {
                root,
                found,
                expected: root_uid,
            }));
        }
        Ok(())
    })
    .await
}

/// A detached thread: never joined, so a hung operation cannot hold its caller (or exit) up.
fn spawn(what: &'static str, path: &Path, f: impl FnOnce() + Send + 'static) -> Result<()> {
    std::thread::Builder::new()
        .name("storage-op".into())
        .spawn(f)
        .map(drop)
        .map_err(|err| {
            Error::Storage(StorageError::Spawn {
                what,
                path: path.to_path_buf(),
                err,
            })
        })
}

fn timeout(what: &'static str, path: &Path, after: Duration) -> Error {
    let mount = mount_of_path(path);
    tracing::error!(what, path = %path.display(), %mount, ?after, "storage operation abandoned");
    Error::Storage(StorageError::Timeout {
        what,
        path: path.to_path_buf(),
        mount,
        after,
    })
}

/// The checkpoint root (resolved once) and the mount it lay on when the supervisor checked it at
/// the job's start: see [`check_mounted`].
static PINNED: std::sync::OnceLock<(PathBuf, String)> = std::sync::OnceLock::new();

/// Remember which mount the checkpoint root lies on now, after it was checked (supervisor start).
pub fn pin_mount(root: &Path, after: Duration) {
    let owned = root.to_path_buf();
    let resolved = bounded(after, "resolving", root, move || {
        owned.canonicalize().map_err(|e| Error::io(&owned, e))
    });
    let root = resolved.unwrap_or_else(|_| root.to_path_buf());
    let mount = mount_of_path(&root);
    if PINNED.set((root, mount)).is_err() {
        tracing::debug!("checkpoint root's mount already pinned");
    }
}

/// Refuse to write under the checkpoint root when it lies on none of the site's `storage_fstype`
/// types (once [`check_fstype`] was called) or no longer on the mount it did at the job's start
/// (once pinned; neither: no check). A directory made during a remount's gap, or on a node whose
/// mount is gone, would land on the node's own disk: the state records, a generation's
/// directory, the index (also written after a failed start). Reads `/proc/self/mountinfo` only,
/// never the storage, so it cannot hang.
pub fn check_mounted() -> Result<()> {
    let (fstypes, pinned) = (SITE_FSTYPES.get(), PINNED.get());
    if fstypes.is_none() && pinned.is_none() {
        return Ok(());
    }
    // One read serves both checks (this runs before every state record write).
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    if let Some((root, allowed)) = fstypes.filter(|(_, allowed)| !allowed.is_empty()) {
        judge_fstype(&info, root, allowed)?;
    }
    let Some((root, was)) = pinned else {
        return Ok(());
    };
    match mount_of(&info, root).unwrap_or_else(|| "(mount unknown)".into()) {
        now if now == *was => Ok(()),
        now => Err(Error::Storage(StorageError::NotMounted {
            root: root.clone(),
            was: was.clone(),
            now,
        })),
    }
}

/// [`mount_of`] for this process's mounts, or "(mount unknown)".
pub fn mount_of_path(path: &Path) -> String {
    std::fs::read_to_string("/proc/self/mountinfo")
        .ok()
        .and_then(|info| mount_of(&info, path))
        .unwrap_or_else(|| "(mount unknown)".into())
}

/// The mount `path` lies on, from the text of `/proc/self/mountinfo` (read there, never from the
/// storage itself, which may be the thing that hangs): the longest mount point that is a prefix of
/// the path, as `<mount point> (<fs type> <source>)`. The path is not resolved (resolving it would
/// touch the storage), so a symbolic link on it can name the wrong mount.
pub fn mount_of(mountinfo: &str, path: &Path) -> Option<String> {
    mount_entry(mountinfo, path)
        .map(|m| format!("{} ({} {})", m.point.display(), m.fstype, m.source))
}

/// One line of mountinfo: where, what type, from where.
struct MountEntry {
    point: PathBuf,
    fstype: String,
    source: String,
}

/// [`mount_of`], as its parts.
fn mount_entry(mountinfo: &str, path: &Path) -> Option<MountEntry> {
    mountinfo
        .lines()
        .filter_map(|line| {
            // id parent maj:min root mount-point options [optional...] - fstype source super-options
            let mut f = line.split(' ');
            let point = unescape(f.nth(4)?);
            let mut rest = f.skip_while(|x| *x != "-").skip(1);
            let (fstype, source) = (rest.next()?, rest.next().unwrap_or(""));
            path.starts_with(&point).then(|| MountEntry {
                point,
                fstype: fstype.to_string(),
                source: source.to_string(),
            })
        })
        .max_by_key(|m| m.point.components().count())
}

/// The checkpoint root and the site's `storage_fstype`, from the job's start: see
/// [`check_mounted`].
static SITE_FSTYPES: std::sync::OnceLock<(PathBuf, Vec<String>)> = std::sync::OnceLock::new();

/// Refuse a checkpoint root that lies on none of the site's `storage_fstype` types (empty: any):
/// on a node whose storage is not mounted, the path is the mount point's directory on the node's
/// own disk. Reads `/proc/self/mountinfo` only. Remembered: [`check_mounted`] checks it again
/// before every directory it makes.
pub fn check_fstype(root: &Path, allowed: &[String]) -> Result<()> {
    if SITE_FSTYPES
        .set((root.to_path_buf(), allowed.to_vec()))
        .is_err()
    {
        tracing::debug!("the site's storage types were already set");
    }
    check_fstype_now(root, allowed)
}

fn check_fstype_now(root: &Path, allowed: &[String]) -> Result<()> {
    if allowed.is_empty() {
        return Ok(());
    }
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    judge_fstype(&info, root, allowed)
}

fn judge_fstype(mountinfo: &str, root: &Path, allowed: &[String]) -> Result<()> {
    match mount_entry(mountinfo, root) {
        Some(m) if allowed.contains(&m.fstype) => Ok(()),
        found => Err(Error::Storage(StorageError::NotOnStorage {
            root: root.to_path_buf(),
            found: found.map_or_else(
                || "(mount unknown)".into(),
                |m| format!("{} ({} {})", m.point.display(), m.fstype, m.source),
            ),
            expected: allowed.join(", "),
        })),
    }
}

/// Whether `path` lies on a network (or cluster) file system, by the type of its mount in
/// `/proc/self/mountinfo` (never the storage itself): such storage has its own caches and faults,
/// so CRIU dumps to the node first (site `stage_dumps=auto`). Unknown mounts count as local.
pub fn on_network_fs(path: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mount_entry(&info, path).is_some_and(|m| is_network_fstype(&m.fstype))
}

fn is_network_fstype(fstype: &str) -> bool {
    const NETWORK: [&str; 16] = [
        "nfs",
        "nfs4",
        "lustre",
        "gpfs",
        "ceph",
        "beegfs",
        "cifs",
        "smb3",
        "9p",
        "glusterfs",
        "orangefs",
        "pvfs2",
        "afs",
        "gfs2",
        "ocfs2",
        "virtiofs",
    ];
    // FUSE: GlusterFS, CephFS, sshfs, ... (`fuseblk` is a local block device).
    NETWORK.contains(&fstype) || (fstype.starts_with("fuse") && fstype != "fuseblk")
}

/// mountinfo writes space, tab, newline and backslash as `\040`-style octal escapes.
fn unescape(s: &str) -> PathBuf {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match oct.and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok()) {
            Some(c) => {
                out.push(c);
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_file_systems_are_told_from_local_ones() {
        for n in [
            "fuse.glusterfs",
            "fuse",
            "nfs4",
            "lustre",
            "gpfs",
            "ceph",
            "beegfs",
        ] {
            assert!(is_network_fstype(n), "{n}");
        }
        for l in ["ext4", "xfs", "btrfs", "tmpfs", "overlay", "zfs", "fuseblk"] {
            assert!(!is_network_fstype(l), "{l}");
        }
    }

    #[tokio::test]
    async fn root_may_write_a_plain_directory() {
        let t = tempfile::tempdir().unwrap();
        let me = nix::unistd::geteuid().as_raw();
        check_root_writable(t.path(), me, "n1", Duration::from_secs(5))
            .await
            .unwrap();
        let left: Vec<_> = std::fs::read_dir(t.path().join(".state"))
            .unwrap()
            .collect();
        assert!(left.is_empty(), "the probe is removed");
    }

    #[tokio::test]
    async fn root_that_is_someone_else_there_is_refused_naming_both_uids() {
        let t = tempfile::tempdir().unwrap();
        let me = nix::unistd::geteuid().as_raw();
        let e = check_root_writable(t.path(), me + 1, "n1", Duration::from_secs(5))
            .await
            .unwrap_err();
        let text = e.to_string();
        assert!(
            matches!(e, Error::Storage(StorageError::RootIsSomeoneElse { .. })),
            "{text}"
        );
        assert!(
            text.contains(&format!("uid {me}")) && text.contains("storage_root_uid is"),
            "{text}"
        );
        let left: Vec<_> = std::fs::read_dir(t.path().join(".state"))
            .unwrap()
            .collect();
        assert!(left.is_empty(), "the probe is removed");
    }

    #[tokio::test]
    async fn the_refusal_names_root_squash() {
        let t = tempfile::tempdir().unwrap();
        let e = Error::Storage(StorageError::RootCannotWrite {
            root: t.path().to_path_buf(),
            err: std::io::Error::from_raw_os_error(nix::libc::EACCES),
        });
        assert!(e.to_string().contains("root squash"), "{e}");
    }
    use std::time::Instant;

    #[test]
    fn a_fast_operation_passes_its_result_through() {
        let v = bounded(Duration::from_secs(5), "read", Path::new("/x"), || Ok(42)).unwrap();
        assert_eq!(v, 42);
        let e = bounded::<(), _>(Duration::from_secs(5), "read", Path::new("/x"), || {
            Err(Error::io(
                "/x",
                std::io::Error::from(std::io::ErrorKind::NotFound),
            ))
        })
        .unwrap_err();
        assert!(matches!(e, Error::Io { .. }), "{e}");
    }

    #[test]
    fn a_hung_operation_times_out_quickly_naming_what_and_where() {
        let t0 = Instant::now();
        let e = bounded(
            Duration::from_millis(100),
            "rename",
            Path::new("/ckpt/u/7/.g0003.tmp"),
            || {
                std::thread::sleep(Duration::from_secs(5));
                Ok(())
            },
        )
        .unwrap_err();
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
        match &e {
            Error::Storage(StorageError::Timeout {
                what, path, after, ..
            }) => {
                assert_eq!(
                    (*what, path.as_path()),
                    ("rename", Path::new("/ckpt/u/7/.g0003.tmp"))
                );
                assert_eq!(*after, Duration::from_millis(100));
            }
            other => panic!("{other}"),
        }
        let msg = e.to_string();
        assert!(
            msg.starts_with("checkpoint storage ") && msg.contains("within 0.1s"),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn the_async_form_does_the_same() {
        let v = bounded_async(Duration::from_secs(5), "stat", Path::new("/x"), || Ok("ok"))
            .await
            .unwrap();
        assert_eq!(v, "ok");
        let t0 = Instant::now();
        let e = bounded_async(Duration::from_millis(100), "stat", Path::new("/x"), || {
            std::thread::sleep(Duration::from_secs(5));
            Ok(())
        })
        .await
        .unwrap_err();
        assert!(t0.elapsed() < Duration::from_secs(2));
        assert!(
            matches!(e, Error::Storage(StorageError::Timeout { .. })),
            "{e}"
        );
    }

    #[test]
    fn a_panicking_operation_is_an_error_not_a_hang() {
        let e = bounded::<(), _>(Duration::from_secs(5), "read", Path::new("/x"), || {
            panic!("boom")
        })
        .unwrap_err();
        assert!(matches!(e, Error::ThreadPanicked { what: "read" }), "{e}");
    }

    const INFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda rw
40 22 0:35 / /mnt/ckpt rw,relatime shared:20 - fuse.glusterfs storage:/ckpt rw,user_id=0
41 22 0:36 / /mnt/ckpt\\040old rw - tmpfs none rw
";

    #[test]
    fn a_root_on_another_file_system_type_than_the_sites_is_refused() {
        let gluster = vec!["nfs4".to_string(), "fuse.glusterfs".to_string()];
        judge_fstype(INFO, Path::new("/mnt/ckpt"), &gluster).unwrap();
        // Not mounted: the mount point's directory on the node's own disk.
        let unmounted = INFO
            .replace("fuse.glusterfs", "x")
            .replace(" /mnt/ckpt rw", " /other rw");
        let e = judge_fstype(&unmounted, Path::new("/mnt/ckpt"), &gluster).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("lies on / (ext4 /dev/vda)") && text.contains("nfs4, fuse.glusterfs"),
            "{text}"
        );
        assert!(check_fstype(Path::new("/mnt/ckpt"), &[]).is_ok());
    }

    #[test]
    fn the_mount_is_the_longest_prefix_by_component() {
        assert_eq!(
            mount_of(INFO, Path::new("/mnt/ckpt/alice/7/.g0001.tmp")).as_deref(),
            Some("/mnt/ckpt (fuse.glusterfs storage:/ckpt)")
        );
        // Not a string prefix: /mnt/ckptx is on /.
        assert_eq!(
            mount_of(INFO, Path::new("/mnt/ckptx/a")).as_deref(),
            Some("/ (ext4 /dev/vda)")
        );
        assert_eq!(
            mount_of(INFO, Path::new("/mnt/ckpt old/a")).as_deref(),
            Some("/mnt/ckpt old (tmpfs none)")
        );
    }
}
