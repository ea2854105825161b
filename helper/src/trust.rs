//! Trust checks for files a root process acts on (the runtime wrapper's redirect and pointer files,
//! plugstack.conf, the runc it execs): a file is trusted only if nobody but root can have written
//! it or swapped it, so the file and every directory above it up to `/` must be root-owned and not
//! writable by group or others, and no component may be a symbolic link (never followed).
//!
//! One exception, as in the usual secure-path checks: a root-owned sticky directory (`/tmp`, where
//! containerd unpacks checkpoints) may be world-writable, because there only root can remove or
//! rename the root-owned entry below it.
use nix::fcntl::OFlag;
use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

/// Why a path is not trusted.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("{path}: not an absolute path free of '.' and '..'")]
    NotPlain { path: PathBuf },
    #[error("{path}: is a symbolic link (links are not followed here)")]
    Symlink { path: PathBuf },
    #[error("{path}: owned by uid {uid}, not root")]
    NotRootOwned { path: PathBuf, uid: u32 },
    #[error("{path}: writable by group or others (mode {mode:04o})")]
    Writable { path: PathBuf, mode: u32 },
    #[error("{path}: not a directory")]
    NotDirectory { path: PathBuf },
    #[error("{path}: not a regular file")]
    NotRegular { path: PathBuf },
    #[error("{path}: larger than {max} bytes")]
    TooLarge { path: PathBuf, max: u64 },
    #[error("{path}: not UTF-8 text")]
    NotText { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrustError + '_ {
    move |source| TrustError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Absolute, and no `.`/`..` components: what the path says is where it leads.
pub fn is_plain(path: &Path) -> bool {
    path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

/// Owner root and not writable by group/others (`sticky_ok`: unless a root-owned sticky dir).
fn check_owner_mode(path: &Path, md: &Metadata, sticky_ok: bool) -> Result<(), TrustError> {
    if md.uid() != 0 {
        return Err(TrustError::NotRootOwned {
            path: path.to_path_buf(),
            uid: md.uid(),
        });
    }
    let mode = md.mode() & 0o7777;
    let sticky = sticky_ok && mode & 0o1000 != 0;
    if mode & 0o022 != 0 && !sticky {
        return Err(TrustError::Writable {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// One directory of a trusted chain, looked at without following a link.
fn check_dir(path: &Path) -> Result<(), TrustError> {
    let md = std::fs::symlink_metadata(path).map_err(io(path))?;
    if md.file_type().is_symlink() {
        return Err(TrustError::Symlink {
            path: path.to_path_buf(),
        });
    }
    if !md.is_dir() {
        return Err(TrustError::NotDirectory {
            path: path.to_path_buf(),
        });
    }
    check_owner_mode(path, &md, true)
}

/// `dir` and every directory above it, up to the root-owned anchor `/`.
pub fn check_dir_chain(dir: &Path) -> Result<(), TrustError> {
    if !is_plain(dir) {
        return Err(TrustError::NotPlain {
            path: dir.to_path_buf(),
        });
    }
    dir.ancestors().try_for_each(check_dir)
}

/// The parent directory of a plain file path (`/` for `/x`).
fn parent_of(path: &Path) -> Result<&Path, TrustError> {
    match path.parent() {
        Some(p) if is_plain(path) => Ok(p),
        _ => Err(TrustError::NotPlain {
            path: path.to_path_buf(),
        }),
    }
}

/// Open a file whose whole path is trusted, without following a link at its last component; the
/// checks on the open file (fstat) cannot be raced by a swap.
pub fn open_trusted(path: &Path) -> Result<File, TrustError> {
    check_dir_chain(parent_of(path)?)?;
    // O_NONBLOCK: a FIFO put in place must not hang a root process (it fails the file check).
    let flags = OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits())
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(code) if code == nix::libc::ELOOP => TrustError::Symlink {
                path: path.to_path_buf(),
            },
            _ => TrustError::Io {
                path: path.to_path_buf(),
                source: e,
            },
        })?;
    let md = file.metadata().map_err(io(path))?;
    if !md.is_file() {
        return Err(TrustError::NotRegular {
            path: path.to_path_buf(),
        });
    }
    check_owner_mode(path, &md, false)?;
    Ok(file)
}

/// The text of a trusted file of at most `max` bytes.
pub fn read_trusted(path: &Path, max: u64) -> Result<String, TrustError> {
    let file = open_trusted(path)?;
    let mut buf = Vec::new();
    file.take(max + 1).read_to_end(&mut buf).map_err(io(path))?;
    if buf.len() as u64 > max {
        return Err(TrustError::TooLarge {
            path: path.to_path_buf(),
            max,
        });
    }
    String::from_utf8(buf).map_err(|_| TrustError::NotText {
        path: path.to_path_buf(),
    })
}

/// A file named by a fixed path whose last component may be a link (e.g. /usr/bin/runc →
/// ../sbin/runc): the directory holding the name and everything on the resolved path must be
/// trusted. The resolved path is returned, so that what root then opens or runs is what was checked.
pub fn resolve_trusted(path: &Path) -> Result<PathBuf, TrustError> {
    check_dir_chain(parent_of(path)?)?;
    let real = std::fs::canonicalize(path).map_err(io(path))?;
    open_trusted(&real)?;
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// A root-owned 0755 temp dir (the tests run as root; /tmp is a sticky root dir).
    fn root_dir() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        chmod(d.path(), 0o755);
        d
    }

    #[test]
    fn reads_a_root_owned_file_in_a_root_chain() {
        let d = root_dir();
        let f = d.path().join("f");
        std::fs::write(&f, "/ckpt/x\n").unwrap();
        chmod(&f, 0o644);
        assert_eq!(read_trusted(&f, 100).unwrap(), "/ckpt/x\n");
    }

    #[test]
    fn refuses_a_writable_parent() {
        let d = root_dir();
        let sub = d.path().join("open");
        std::fs::create_dir(&sub).unwrap();
        let f = sub.join("f");
        std::fs::write(&f, "x").unwrap();
        chmod(&f, 0o644);
        chmod(&sub, 0o777);
        assert!(matches!(
            read_trusted(&f, 100),
            Err(TrustError::Writable { path, .. }) if path == sub
        ));
        // Sticky and root-owned (like /tmp): fine.
        chmod(&sub, 0o1777);
        assert!(read_trusted(&f, 100).is_ok());
    }

    #[test]
    fn refuses_a_parent_not_owned_by_root() {
        let d = root_dir();
        let sub = d.path().join("user");
        std::fs::create_dir(&sub).unwrap();
        let f = sub.join("f");
        std::fs::write(&f, "x").unwrap();
        std::os::unix::fs::chown(&sub, Some(1000), None).unwrap();
        assert!(matches!(
            read_trusted(&f, 100),
            Err(TrustError::NotRootOwned { uid: 1000, .. })
        ));
    }

    #[test]
    fn refuses_writable_or_foreign_files() {
        let d = root_dir();
        let f = d.path().join("f");
        std::fs::write(&f, "x").unwrap();
        chmod(&f, 0o664);
        assert!(matches!(
            read_trusted(&f, 100),
            Err(TrustError::Writable { .. })
        ));
        chmod(&f, 0o644);
        std::os::unix::fs::chown(&f, Some(1000), None).unwrap();
        assert!(matches!(
            read_trusted(&f, 100),
            Err(TrustError::NotRootOwned { .. })
        ));
    }

    #[test]
    fn refuses_links_at_any_component() {
        let d = root_dir();
        let real = d.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::fs::write(real.join("f"), "x").unwrap();
        chmod(&real.join("f"), 0o644);
        std::os::unix::fs::symlink(&real, d.path().join("dirlink")).unwrap();
        std::os::unix::fs::symlink(real.join("f"), d.path().join("filelink")).unwrap();
        assert!(matches!(
            read_trusted(&d.path().join("dirlink/f"), 100),
            Err(TrustError::Symlink { .. })
        ));
        assert!(matches!(
            read_trusted(&d.path().join("filelink"), 100),
            Err(TrustError::Symlink { .. })
        ));
    }

    #[test]
    fn refuses_relative_dotdot_big_binary_and_special_files() {
        let d = root_dir();
        assert!(matches!(
            read_trusted(Path::new("rel/f"), 100),
            Err(TrustError::NotPlain { .. })
        ));
        let dotdot = d.path().join("x/../f");
        assert!(matches!(
            read_trusted(&dotdot, 100),
            Err(TrustError::NotPlain { .. })
        ));
        let f = d.path().join("f");
        std::fs::write(&f, vec![b'a'; 200]).unwrap();
        chmod(&f, 0o644);
        assert!(matches!(
            read_trusted(&f, 100),
            Err(TrustError::TooLarge { .. })
        ));
        std::fs::write(&f, [0xff, 0xfe]).unwrap();
        assert!(matches!(
            read_trusted(&f, 100),
            Err(TrustError::NotText { .. })
        ));
        let fifo = d.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        assert!(matches!(
            read_trusted(&fifo, 100),
            Err(TrustError::NotRegular { .. })
        ));
        assert!(matches!(
            read_trusted(&d.path().join("missing"), 100),
            Err(TrustError::Io { .. })
        ));
    }

    #[test]
    fn executables_resolve_links_in_trusted_dirs_only() {
        let d = root_dir();
        let bin = d.path().join("runc");
        std::fs::write(&bin, "#!/bin/true\n").unwrap();
        chmod(&bin, 0o755);
        let link = d.path().join("runc-link");
        std::os::unix::fs::symlink(&bin, &link).unwrap();
        let real = std::fs::canonicalize(&bin).unwrap();
        assert_eq!(resolve_trusted(&link).unwrap(), real);
        chmod(&bin, 0o775);
        assert!(matches!(
            resolve_trusted(&link),
            Err(TrustError::Writable { .. })
        ));
        chmod(&bin, 0o755);
        chmod(d.path(), 0o777);
        assert!(matches!(
            resolve_trusted(&bin),
            Err(TrustError::Writable { .. })
        ));
    }
}
