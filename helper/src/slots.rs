//! A node-wide limit on concurrent rank dumps (site setting `dump_parallel`): N lock files in the
//! node's runtime directory, a dump holds an exclusive flock on one of them. The kernel drops the
//! lock with the holder, so a killed supervisor never leaks its slot.
use crate::error::{Error, Result};
use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::path::Path;
use std::time::Duration;

pub struct Slot(#[allow(dead_code)] Flock<File>);

/// Take one of `limit` slots under `dir`, waiting up to `timeout`; `None` when `limit` is 0.
pub async fn acquire(dir: &Path, limit: u32, timeout: Duration) -> Result<Option<Slot>> {
    if limit == 0 {
        return Ok(None);
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let end = tokio::time::Instant::now() + timeout;
    loop {
        for i in 0..limit {
            let p = dir.join(format!("slot-{i}"));
            let f = File::create(&p).map_err(|e| Error::io(&p, e))?;
            match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
                Ok(l) => return Ok(Some(Slot(l))),
                Err((_, nix::errno::Errno::EWOULDBLOCK)) => {}
                Err((_, e)) => return Err(Error::io(&p, e.into())),
            }
        }
        if tokio::time::Instant::now() >= end {
            return Err(Error::Timeout {
                what: format!("one of {limit} dump slots on this node"),
                secs: timeout.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slots_limit_holders_and_free_on_drop() {
        let dir = std::env::temp_dir().join(format!("slurm-ckpt-slots-{}", std::process::id()));
        assert!(acquire(&dir, 0, Duration::ZERO).await.unwrap().is_none());
        let a = acquire(&dir, 1, Duration::ZERO).await.unwrap();
        assert!(a.is_some());
        let err = acquire(&dir, 1, Duration::from_millis(120))
            .await
            .err()
            .unwrap();
        assert!(err.to_string().contains("dump slots"), "{err}");
        drop(a);
        assert!(acquire(&dir, 1, Duration::ZERO).await.unwrap().is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
