//! The site secret (`key_file`, munge's key by default) that the job ssh keys and the checkpoint
//! signing/encryption keys derive from. It must be identical on every node and readable by root
//! only: whoever reads it can forge checkpoints that root restores. Sites on Slurm's `auth/slurm`
//! have no munge; any root-only file of random bytes works (e.g. /etc/slurm/slurm.key).
use crate::error::{Error, Result};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Fewest bytes a site secret may have (256 bits).
pub const MIN_LEN: usize = 32;
/// Most bytes read (munge's keys are at most 1 KiB; a larger file is not a key).
const MAX_LEN: u64 = 1 << 20;

/// Read the secret at `path`, refusing one that group or others may read or that is too short.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mode = f.metadata().map_err(|e| Error::io(path, e))?.mode();
    check_mode(path, mode)?;
    let mut secret = Vec::new();
    f.take(MAX_LEN)
        .read_to_end(&mut secret)
        .map_err(|e| Error::io(path, e))?;
    check_len(path, secret.len())?;
    Ok(secret)
}

fn check_mode(path: &Path, mode: u32) -> Result<()> {
    if mode & 0o077 != 0 {
        return Err(Error::KeyFileExposed {
            path: path.to_path_buf(),
            mode: mode & 0o7777,
        });
    }
    Ok(())
}

fn check_len(path: &Path, len: usize) -> Result<()> {
    if len < MIN_LEN {
        return Err(Error::KeyFileShort {
            path: path.to_path_buf(),
            len,
            min: MIN_LEN,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn key(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn a_root_only_key_of_enough_bytes_is_read() {
        let d = tempfile::tempdir().unwrap();
        let p = key(d.path(), "k", &[7u8; 128], 0o400);
        assert_eq!(read(&p).unwrap(), vec![7u8; 128]);
        let p = key(d.path(), "k6", &[1u8; 32], 0o600);
        assert_eq!(read(&p).unwrap().len(), 32);
    }

    #[test]
    fn a_key_others_may_read_is_refused_with_the_fix() {
        let d = tempfile::tempdir().unwrap();
        for mode in [0o640, 0o604, 0o644, 0o610] {
            let p = key(d.path(), "k", &[7u8; 64], mode);
            let e = read(&p).unwrap_err();
            assert!(matches!(e, Error::KeyFileExposed { .. }), "{mode:o}: {e}");
            let msg = e.to_string();
            assert!(msg.contains(&p.display().to_string()), "{msg}");
            assert!(msg.contains("chmod 0400"), "{msg}");
        }
    }

    #[test]
    fn a_short_key_is_refused_with_the_fix() {
        let d = tempfile::tempdir().unwrap();
        let p = key(d.path(), "k", b"short", 0o400);
        let e = read(&p).unwrap_err();
        assert!(
            matches!(
                e,
                Error::KeyFileShort {
                    len: 5,
                    min: 32,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("key_file"), "{e}");
    }

    #[test]
    fn a_missing_key_names_the_file() {
        let e = read(Path::new("/nonexistent/site.key")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/site.key"), "{e}");
    }
}
