//! Paths a user names (mount sources, the working directory) before root's Docker daemon sees
//! them. dockerd performs bind mounts as root, so a path below a directory the user cannot enter
//! (another user's checkpoints, root-only state) would otherwise be readable through the
//! container. The rules, shared by the plugin (at submit, as the user) and the helper
//! (authoritative, in a child that has dropped to the job's uid and groups):
//!
//! 1. the path is resolved once (symlinks, `..`) *with the user's own credentials* and must exist;
//! 2. the user must be able to read it (and search it, for a directory), and write it for a
//!    read-write mount;
//! 3. the resolved path must not be inside a directory the service itself owns (checkpoint root,
//!    runtime and stage dirs, the site key's directory, Docker's, containerd's, Slurm's, munge's,
//!    /proc, /sys, /dev).
//!
//! The resolved path is what goes to Docker.

use crate::SiteConfig;
use std::io;
use std::path::{Path, PathBuf};

/// What the container will do with a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    ReadWrite,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Read => "ro",
            Access::ReadWrite => "rw",
        }
    }
    pub fn parse(s: &str) -> Option<Access> {
        match s {
            "ro" => Some(Access::Read),
            "rw" => Some(Access::ReadWrite),
            _ => None,
        }
    }
}

/// Why a path a user named is refused.
#[derive(Debug, thiserror::Error)]
pub enum PathRefusal {
    #[error("{path} does not exist (it is not created for you: create it first, or fix the path)")]
    Missing { path: String },
    #[error("{path}: you cannot reach it with your own permissions ({source}); a container may only mount what you can open yourself")]
    Unreachable { path: String, source: io::Error },
    #[error("{path}: you may not {what} it with your own permissions; mount it {hint}")]
    NoAccess {
        path: String,
        what: &'static str,
        hint: &'static str,
    },
    #[error("{path} (resolved to {resolved}) is inside {root}, the {why}, which containers may not mount; choose another directory")]
    Reserved {
        path: String,
        resolved: String,
        root: String,
        why: &'static str,
    },
}

/// Directories of the service and of the daemons it relies on, with what they are (for the
/// message). Checked against the *resolved* path, also in their own resolved form.
pub fn reserved_roots(site: &SiteConfig) -> Vec<(PathBuf, &'static str)> {
    let mut roots: Vec<(PathBuf, &'static str)> = vec![
        (site.ckpt_root.clone(), "site's checkpoint root"),
        (
            site.runtime_dir.clone(),
            "container service's runtime directory",
        ),
        (site.stage_dir.clone(), "checkpoint staging directory"),
    ];
    for (p, why) in [
        ("/var/lib/docker", "Docker daemon's directory"),
        ("/var/lib/containerd", "containerd's directory"),
        ("/run/docker", "Docker daemon's runtime directory"),
        ("/run/docker.sock", "Docker daemon's socket"),
        ("/run/containerd", "containerd's runtime directory"),
        ("/etc/docker", "Docker daemon's configuration"),
        ("/etc/slurm", "Slurm configuration"),
        ("/var/spool/slurm", "Slurm state directory"),
        ("/var/spool/slurmd", "Slurm state directory"),
        ("/var/spool/slurmctld", "Slurm state directory"),
        ("/var/lib/slurm", "Slurm state directory"),
        ("/var/log/slurm", "Slurm log directory"),
        ("/run/slurm", "Slurm runtime directory"),
        ("/etc/munge", "munge key directory"),
        ("/var/lib/munge", "munge state directory"),
        ("/run/munge", "munge socket directory"),
        ("/var/log/slurm-ckpt", "container service's log directory"),
        ("/etc/criu", "CRIU configuration"),
        ("/proc", "kernel's process file system"),
        ("/sys", "kernel's sysfs"),
        ("/dev", "device directory"),
    ] {
        roots.push((PathBuf::from(p), why));
    }
    // The site key's directory (/etc/munge by default, named above; a key directly below / reserves
    // only the file).
    roots.push((key_dir(&site.key_file), "site key's directory"));
    // Also each root's resolved form (/var/run -> /run, a checkpoint root behind a symlink).
    let resolved: Vec<(PathBuf, &'static str)> = roots
        .iter()
        .filter_map(|(p, why)| {
            std::fs::canonicalize(p)
                .ok()
                .filter(|r| r != p)
                .map(|r| (r, *why))
        })
        .collect();
    roots.extend(resolved);
    roots
}

/// The directory holding `key_file`, or the file itself when that directory is `/`.
fn key_dir(key_file: &Path) -> PathBuf {
    match key_file.parent() {
        Some(d) if d != Path::new("/") => d.to_path_buf(),
        _ => key_file.to_path_buf(),
    }
}

/// Refuse a resolved path equal to or below a reserved root.
pub fn check_not_reserved(
    named: &str,
    resolved: &Path,
    roots: &[(PathBuf, &'static str)],
) -> Result<(), PathRefusal> {
    match roots.iter().find(|(r, _)| resolved.starts_with(r)) {
        Some((root, why)) => Err(PathRefusal::Reserved {
            path: named.to_string(),
            resolved: resolved.display().to_string(),
            root: root.display().to_string(),
            why,
        }),
        None => Ok(()),
    }
}

/// Resolve `named` with the calling process's credentials and check it may be used with
/// `access`. Call it as the user: in the plugin's submit context, or in a child of the helper
/// that has dropped to the job's uid and groups.
pub fn resolve_as_caller(named: &str, access: Access) -> Result<PathBuf, PathRefusal> {
    let resolved = std::fs::canonicalize(named).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => PathRefusal::Missing {
            path: named.to_string(),
        },
        _ => PathRefusal::Unreachable {
            path: named.to_string(),
            source: e,
        },
    })?;
    // access(2) checks with the real uid and groups: the caller's, which is the user's here.
    let read = nix::unistd::AccessFlags::R_OK
        | if resolved.is_dir() {
            nix::unistd::AccessFlags::X_OK
        } else {
            nix::unistd::AccessFlags::empty()
        };
    if nix::unistd::access(&resolved, read).is_err() {
        return Err(PathRefusal::NoAccess {
            path: named.to_string(),
            what: "read",
            hint: "from a directory you can read",
        });
    }
    if access == Access::ReadWrite
        && nix::unistd::access(&resolved, nix::unistd::AccessFlags::W_OK).is_err()
    {
        return Err(PathRefusal::NoAccess {
            path: named.to_string(),
            what: "write",
            hint: "read-only (SRC:DST:ro)",
        });
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roots() -> Vec<(PathBuf, &'static str)> {
        reserved_roots(&SiteConfig {
            ckpt_root: "/ckpt".into(),
            ..SiteConfig::default()
        })
    }

    #[test]
    fn reserved_roots_cover_service_and_daemon_dirs() {
        let r = roots();
        for bad in [
            "/ckpt",
            "/ckpt/alice/1/g0001",
            "/run/slurm-ckpt/5/node1",
            "/var/tmp/slurm-ckpt-stage/x",
            "/var/lib/docker/containers",
            "/etc/munge/munge.key",
            "/proc/1/root",
        ] {
            let e = check_not_reserved(bad, Path::new(bad), &r).unwrap_err();
            assert!(e.to_string().contains("may not mount"), "{e}");
        }
        for ok in ["/home/alice", "/ckptx", "/scratch/run", "/etc/hosts"] {
            assert!(check_not_reserved(ok, Path::new(ok), &r).is_ok(), "{ok}");
        }
    }

    #[test]
    fn the_configured_key_files_directory_is_reserved() {
        let r = reserved_roots(&SiteConfig {
            key_file: "/srv/keys/site.key".into(),
            ..SiteConfig::default()
        });
        for bad in ["/srv/keys", "/srv/keys/site.key", "/etc/munge"] {
            assert!(
                check_not_reserved(bad, Path::new(bad), &r).is_err(),
                "{bad}"
            );
        }
        assert!(check_not_reserved("/srv/data", Path::new("/srv/data"), &r).is_ok());
        // A key directly below / reserves the file, not the whole tree.
        let r = reserved_roots(&SiteConfig {
            key_file: "/site.key".into(),
            ..SiteConfig::default()
        });
        assert!(check_not_reserved("/site.key", Path::new("/site.key"), &r).is_err());
        assert!(check_not_reserved("/home/a", Path::new("/home/a"), &r).is_ok());
    }

    #[test]
    fn missing_paths_are_refused_not_created() {
        let d = std::env::temp_dir().join(format!("user-paths-test-{}", std::process::id()));
        let p = d.join("a/b");
        let e = resolve_as_caller(p.to_str().unwrap(), Access::Read).unwrap_err();
        assert!(matches!(e, PathRefusal::Missing { .. }), "{e}");
        assert!(!d.exists());
    }

    #[test]
    fn symlinks_resolve_to_their_target() {
        let d = std::env::temp_dir().join(format!("user-paths-link-{}", std::process::id()));
        std::fs::create_dir_all(d.join("real")).unwrap();
        let link = d.join("link");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(d.join("real"), &link).unwrap();
        let r = resolve_as_caller(link.to_str().unwrap(), Access::ReadWrite).unwrap();
        assert_eq!(r, std::fs::canonicalize(d.join("real")).unwrap());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
