//! A network file system's passing refusals, tried again.
//!
//! A client of a network file system sometimes answers for a moment what it would not answer a
//! little later: ESTALE for a name another node just replaced by rename (the client still held the
//! old file's handle), EEXIST for a directory another node just made but this client cannot look
//! up yet (GlusterFS). Each call site says which answers are passing for it and how long it may
//! wait ([`Retry`]); everything else is returned at once. Bounded: a few calls, short pauses.
use std::path::Path;
use std::time::Duration;

/// Which errors to try again, how often and how patiently: after the n-th failed call the pause is
/// n × `pause`.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// The errnos that mean "not yet" here.
    pub errnos: &'static [i32],
    /// Calls at most, the first included.
    pub calls: u32,
    pub pause: Duration,
}

/// A record read whose handle went stale: the new file is there, a new lookup finds it.
pub const STALE_READ: Retry = Retry {
    errnos: &[nix::libc::ESTALE],
    calls: 5,
    pause: Duration::from_millis(20),
};

/// An image file whose create or write met a stale directory handle: written again from the start.
pub const STALE_WRITE: Retry = Retry {
    errnos: &[nix::libc::ESTALE],
    calls: 3,
    pause: Duration::from_millis(200),
};

/// A directory whose parent another node is making at the same moment: EEXIST for a directory this
/// client cannot show yet, ENOENT for a parent that exists but cannot take entries yet, or ESTALE.
/// Seen on GlusterFS as "…/.g0001.tmp/rank-1: File exists" and "…/.g0001.tmp/rank-2: No such file
/// or directory" (`create_dir_all` had made or found the parent just before).
pub const DIR_RACE: Retry = Retry {
    errnos: &[nix::libc::EEXIST, nix::libc::ENOENT, nix::libc::ESTALE],
    calls: 4,
    pause: Duration::from_millis(200),
};

/// A failure whose cause is an I/O error.
pub trait IoFailure {
    fn io_error(&self) -> &std::io::Error;
}

impl IoFailure for std::io::Error {
    fn io_error(&self) -> &std::io::Error {
        self
    }
}

/// An I/O error with the path it came from (a copy has two).
impl IoFailure for (std::path::PathBuf, std::io::Error) {
    fn io_error(&self) -> &std::io::Error {
        &self.1
    }
}

impl Retry {
    /// `op`, called again while it fails with one of `errnos`, `calls` times at most. `path` names
    /// what the log line is about: info, not a warning (a passing answer that went away is not the
    /// user's concern; the last error, if it stays, is returned).
    pub fn run<T, E: IoFailure>(
        &self,
        path: &Path,
        mut op: impl FnMut() -> Result<T, E>,
    ) -> Result<T, E> {
        let mut call = 1;
        loop {
            match op() {
                Err(e)
                    if call < self.calls
                        && e.io_error()
                            .raw_os_error()
                            .is_some_and(|n| self.errnos.contains(&n)) =>
                {
                    let err = e.io_error();
                    tracing::info!(path = %path.display(), call, "{err}: trying again");
                    std::thread::sleep(self.pause * call);
                    call += 1;
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUICK: Retry = Retry {
        errnos: &[nix::libc::ESTALE],
        calls: 4,
        pause: Duration::from_millis(0),
    };

    fn os(n: i32) -> std::io::Error {
        std::io::Error::from_raw_os_error(n)
    }

    #[test]
    fn a_passing_refusal_is_tried_again_and_its_success_returned() {
        let mut calls = 0;
        let v = QUICK.run(Path::new("x"), || {
            calls += 1;
            if calls < 3 {
                Err(os(nix::libc::ESTALE))
            } else {
                Ok(7)
            }
        });
        assert_eq!((v.unwrap(), calls), (7, 3));
    }

    #[test]
    fn tries_are_bounded_and_the_last_error_returned() {
        let mut calls = 0;
        let e = QUICK.run::<(), _>(Path::new("x"), || {
            calls += 1;
            Err((Path::new("y").to_path_buf(), os(nix::libc::ESTALE)))
        });
        let (p, err) = e.unwrap_err();
        assert_eq!(
            (p, err.raw_os_error(), calls),
            (
                Path::new("y").to_path_buf(),
                Some(nix::libc::ESTALE),
                QUICK.calls
            )
        );
    }

    #[test]
    fn other_errors_are_returned_at_once() {
        for n in [nix::libc::EIO, nix::libc::EEXIST, nix::libc::ENOSPC] {
            let mut calls = 0;
            let e = QUICK.run::<(), _>(Path::new("x"), || {
                calls += 1;
                Err(os(n))
            });
            assert_eq!((e.unwrap_err().raw_os_error(), calls), (Some(n), 1));
        }
    }

    #[test]
    fn the_directory_race_takes_eexist_and_enoent_as_passing() {
        assert!(DIR_RACE.errnos.contains(&nix::libc::EEXIST));
        assert!(DIR_RACE.errnos.contains(&nix::libc::ENOENT));
        assert!(!STALE_WRITE.errnos.contains(&nix::libc::EEXIST));
    }
}
