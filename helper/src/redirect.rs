//! The files through which the supervisor tells the runtime wrapper (`slurm-ckpt-runc`) where CRIU's
//! images are: both sides use only this module for their names, places and format.
//!
//! - Redirect: `<runtime_dir>/redirect/<container id>`, written by the supervisor just before a dump
//!   and removed after it; the wrapper hands CRIU the path it names as `--image-path`.
//! - Pointer: [`POINTER`] in the image directory Docker gives runc (its checkpoint directory of the
//!   container, see [`docker_checkpoint_dir`]). The wrapper leaves one there at a dump, so Docker
//!   stores only the pointer; the supervisor puts one there before a restore; the wrapper then hands
//!   CRIU the path it names.
//!
//! Format of both: one absolute path, nothing else (a surrounding newline or blanks are tolerated).
//! The wrapper runs as root and reads them only through the trust check (`crate::trust`), and
//! decides itself whether the path they name is an allowed place.
use crate::error::{Error, Result};
use crate::trust::{read_trusted, TrustError};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// The pointer's file name in an image directory.
pub const POINTER: &str = "slurm-ckpt-pointer";
/// Largest redirect or pointer file: one path.
pub const MAX_LEN: u64 = 4096;

/// The directory of redirect files; root-only (0700).
pub fn redirect_dir(runtime_dir: &Path) -> PathBuf {
    runtime_dir.join("redirect")
}

/// The redirect file of container `id`.
pub fn redirect_file(runtime_dir: &Path, id: &str) -> PathBuf {
    redirect_dir(runtime_dir).join(id)
}

/// The pointer file in image directory `image_dir`.
pub fn pointer_file(image_dir: &Path) -> PathBuf {
    image_dir.join(POINTER)
}

/// Docker's directory for checkpoint `name` of container `id` (`daemon_root`: the daemon's root dir,
/// userns suffix included): what it passes to runc as `--image-path` and restores from.
pub fn docker_checkpoint_dir(daemon_root: &Path, id: &str, name: &str) -> PathBuf {
    daemon_root
        .join("containers")
        .join(id)
        .join("checkpoints")
        .join(name)
}

/// Ask the wrapper to send container `id`'s next dump to `dest`; returns the file to remove after.
pub fn write_redirect(runtime_dir: &Path, id: &str, dest: &Path) -> Result<PathBuf> {
    let dir = redirect_dir(runtime_dir);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io(&dir, e))?;
    let file = redirect_file(runtime_dir, id);
    std::fs::write(&file, dest.as_os_str().as_encoded_bytes()).map_err(|e| Error::io(&file, e))?;
    Ok(file)
}

/// Leave a pointer to `dest` in `image_dir` (created if needed). 0644 and never through a link: the
/// wrapper trusts only a root-owned file nobody else may write.
pub fn write_pointer(image_dir: &Path, dest: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(image_dir)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(pointer_file(image_dir))?;
    f.write_all(dest.as_os_str().as_encoded_bytes())
}

/// The text of a redirect or pointer file, read through the trust check; None when there is none
/// (Docker's own path). Anything else that is wrong with it is the trust check's to report.
pub fn read(file: &Path) -> std::result::Result<Option<String>, TrustError> {
    match std::fs::symlink_metadata(file) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        _ => read_trusted(file, MAX_LEN).map(Some),
    }
}

/// The path a file's text names, if it is one this format allows: absolute, one line, no `..`.
pub fn parse(text: &str) -> Option<&Path> {
    let dest = text.trim();
    let path = Path::new(dest);
    let plain = path.is_absolute()
        && !dest.contains('\n')
        && !path.components().any(|c| c == Component::ParentDir);
    plain.then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places() {
        let rt = Path::new("/run/slurm-ckpt");
        assert_eq!(
            redirect_file(rt, "c1"),
            Path::new("/run/slurm-ckpt/redirect/c1")
        );
        let ck = docker_checkpoint_dir(Path::new("/var/lib/docker"), "c1", "g0001");
        assert_eq!(
            ck,
            Path::new("/var/lib/docker/containers/c1/checkpoints/g0001")
        );
        assert_eq!(pointer_file(&ck), ck.join("slurm-ckpt-pointer"));
    }

    #[test]
    fn what_one_side_writes_the_other_reads() {
        let t = tempfile::tempdir().unwrap();
        let dest = Path::new("/srv/ckpt/u/1/g0001/rank-0");
        let f = write_redirect(t.path(), "c1", dest).unwrap();
        assert_eq!(f, redirect_file(t.path(), "c1"));
        let mode = std::fs::metadata(redirect_dir(t.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        let text = std::fs::read_to_string(&f).unwrap();
        assert_eq!(parse(&text), Some(dest));

        let img = t.path().join("ctrd/g0001");
        write_pointer(&img, dest).unwrap();
        let p = pointer_file(&img);
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o644
        );
        assert_eq!(parse(&std::fs::read_to_string(&p).unwrap()), Some(dest));
        // Rewritten in place, never followed through a link.
        write_pointer(&img, Path::new("/x")).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "/x");
        std::fs::remove_file(&p).unwrap();
        std::os::unix::fs::symlink(t.path().join("elsewhere"), &p).unwrap();
        assert!(write_pointer(&img, dest).is_err());
        assert!(!t.path().join("elsewhere").exists());
    }

    #[test]
    fn absent_is_none_and_present_goes_through_the_trust_check() {
        let t = tempfile::tempdir().unwrap();
        std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(read(&t.path().join("none")).unwrap(), None);
        let f = t.path().join("f");
        std::fs::write(&f, "/a/b\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(read(&f).unwrap().as_deref(), Some("/a/b\n"));
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(matches!(read(&f), Err(TrustError::Writable { .. })));
    }

    #[test]
    fn only_plain_absolute_paths_parse() {
        assert_eq!(parse(" /a/b\n"), Some(Path::new("/a/b")));
        for bad in ["", "relative/dir", "/x/../etc", "/a\n/b"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
