//! containerd's leftovers of our checkpoints and restores.
//!
//! containerd 1.6 (Debian bookworm) unpacks a checkpoint it restores, and stages one it takes, in a
//! `ctrd-checkpoint*` directory of its temporary directory and does not always remove it
//! (containerd/containerd#10166): with the runtime wrapper's redirect, each one holds only our
//! pointer file, but a node that restores thousands of ranks collects thousands of directories.
//! A rank removes the ones that point at its own images once its dump or restore is over: a
//! directory that names another place may still be in use by another rank's restore.
//!
//! Safe in a world-writable /tmp: only root-owned directories (not links) that hold nothing but a
//! root-owned pointer are removed; the sticky bit keeps other users from swapping such an entry.
use crate::redirect::{self, POINTER};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Where containerd makes them (its `XDG_RUNTIME_DIR`, unset for the system daemon, else /tmp).
pub const DEFAULT_DIR: &str = "/tmp";
/// The prefixes containerd gives them.
const PREFIXES: [&str; 2] = ["ctrd-checkpoint", "ctd-checkpoint"];

/// Remove, in `tmp`, every containerd checkpoint directory whose only content is a pointer naming
/// `target`; returns how many were removed. Errors are not the job's: they are skipped.
pub fn remove_pointing_at(tmp: &Path, target: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if !PREFIXES.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        let dir = e.path();
        if points_only_at(&dir, target) && remove(&dir) {
            removed += 1;
        }
    }
    removed
}

/// Whether `dir` is a root-owned directory holding exactly one file, a root-owned pointer to `target`.
fn points_only_at(dir: &Path, target: &Path) -> bool {
    let Ok(md) = std::fs::symlink_metadata(dir) else {
        return false;
    };
    if !md.is_dir() || md.uid() != 0 {
        return false;
    }
    let Ok(mut entries) = std::fs::read_dir(dir) else {
        return false;
    };
    let only_pointer = matches!(entries.next(), Some(Ok(e)) if e.file_name() == POINTER)
        && entries.next().is_none();
    if !only_pointer {
        return false;
    }
    match redirect::read(&redirect::pointer_file(dir)) {
        Ok(Some(text)) => redirect::parse(&text).is_some_and(|p| p == target),
        _ => false,
    }
}

fn remove(dir: &Path) -> bool {
    std::fs::remove_file(redirect::pointer_file(dir)).is_ok() && std::fs::remove_dir(dir).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leftover(tmp: &Path, name: &str, target: &Path) -> std::path::PathBuf {
        let d = tmp.join(name);
        redirect::write_pointer(&d, target).unwrap();
        d
    }

    #[test]
    fn removes_only_pointer_dirs_naming_the_target() {
        if !nix::unistd::geteuid().is_root() {
            return; // the trust check wants root-owned pointers
        }
        let tmp = tempfile::tempdir().unwrap();
        let mine = Path::new("/ckpt/u/1/g0001/rank-0");
        let other = Path::new("/ckpt/u/1/g0001/rank-1");
        let a = leftover(tmp.path(), "ctrd-checkpoint1", mine);
        let b = leftover(tmp.path(), "ctd-checkpoint2", mine);
        let c = leftover(tmp.path(), "ctrd-checkpoint3", other);
        let d = leftover(tmp.path(), "ctrd-checkpoint4", mine);
        std::fs::write(d.join("inventory.img"), b"x").unwrap();
        let e = leftover(tmp.path(), "unrelated", mine);
        assert_eq!(remove_pointing_at(tmp.path(), mine), 2);
        assert!(!a.exists() && !b.exists());
        assert!(c.exists(), "another rank's may still be in use");
        assert!(d.exists(), "holds more than the pointer");
        assert!(e.exists(), "not containerd's");
    }

    #[test]
    fn a_missing_tmp_is_nothing_to_do() {
        assert_eq!(
            remove_pointing_at(Path::new("/nonexistent/x"), Path::new("/a")),
            0
        );
    }
}
