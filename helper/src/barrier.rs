//! Cross-rank waits on shared storage: marker files (`.dumped-r3`), failure markers
//! (`.failed-r3`) and per-rank heartbeats (`.alive-r3`).
//!
//! Ranks run on different nodes and talk only through the checkpoint directory, so a rank whose
//! supervisor (or node) dies cannot say so. Every rank therefore bumps a counter in its heartbeat
//! file while it takes part in a checkpoint or restore, and a waiting rank gives up on a peer whose
//! counter has stood still for [`STALE`]. Staleness is judged by the watcher's own clock (when the
//! content last changed), never by file times, so clock skew between nodes does not matter.
use crate::error::{Error, Result};
use crate::storage::{bounded, bounded_async};
use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a heartbeat may stand still before its rank counts as gone. Generous against a
/// loaded node or a slow shared file system; still far below the site's barrier timeout.
pub const STALE: Duration = Duration::from_secs(15);
const BEAT: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(50);
/// The least time one look at the storage gets, even at the very end of a wait.
const MIN_LOOK: Duration = Duration::from_secs(2);

/// First line of a failure marker whose rank failed because the storage refused it (full, over
/// quota, read-only, cut off): the reason follows on the next line. Rank 0 then does not blame the
/// generation it was restoring (supervise/restore_failure.rs).
const STORAGE_REFUSED: &str = "storage-refused";

/// A failure marker's text: the reason, tagged when the storage refused the rank.
pub fn failure_text(why: &str, storage_refused: bool) -> String {
    match storage_refused {
        true => format!("{STORAGE_REFUSED}\n{why}"),
        false => why.to_string(),
    }
}

/// [`failure_text`] read back: whether the storage refused the rank, and its reason.
fn read_failure_text(text: &str) -> (bool, &str) {
    match text.split_once('\n') {
        Some((STORAGE_REFUSED, why)) => (true, why.trim()),
        _ => (false, text.trim()),
    }
}

pub fn marker(dir: &Path, what: &str, rank: u32) -> PathBuf {
    dir.join(format!(".{what}-r{rank}"))
}

pub fn touch(p: &Path) -> Result<()> {
    fs::write(p, b"").map_err(|e| Error::io(p, e))
}

/// [`touch`], giving up after `within` if the storage does not answer (storage.rs).
pub fn touch_within(p: &Path, within: Duration) -> Result<()> {
    say_within(p, "", within)
}

/// Write a marker that says why (a failure marker: the ranks that wait pass it on), giving up
/// after `within` like [`touch_within`].
pub fn say_within(p: &Path, why: &str, within: Duration) -> Result<()> {
    let (owned, why) = (p.to_path_buf(), why.to_string());
    bounded(within, "writing marker", p, move || say(&owned, &why))
}

/// Write a marker whole: a rank polling for it must never read it between its creation and its
/// contents (it would pass on an empty reason). A reason goes to `<marker>.part` first and is
/// renamed into place; the marker listing ignores that name. An empty marker is whole at once.
pub fn say(p: &Path, why: &str) -> Result<()> {
    if why.is_empty() {
        return touch(p);
    }
    let mut part = p.as_os_str().to_owned();
    part.push(".part");
    let part = PathBuf::from(part);
    fs::write(&part, why.as_bytes()).map_err(|e| Error::io(&part, e))?;
    fs::rename(&part, p).map_err(|e| Error::io(p, e))
}

/// Bumps `<dir>/.alive-r<rank>` every second on its own thread (a blocking step of the supervisor,
/// such as hashing images, must not look like death) until dropped.
pub struct Heartbeat {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Heartbeat {
    pub fn start(dir: &Path, rank: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let path = marker(dir, "alive", rank);
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("heartbeat-r{rank}"))
            .spawn(move || {
                let mut n: u64 = 0;
                while !flag.load(Ordering::Relaxed) {
                    n += 1;
                    // The directory is renamed when the generation commits: errors are expected.
                    let _ = fs::write(&path, n.to_string());
                    std::thread::park_timeout(BEAT);
                }
            })
            .ok();
        Heartbeat { stop, thread }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            // A write stuck on a hung mount never returns: wait for the thread a little, then
            // leave it behind rather than hang the supervisor (it stops once the write returns).
            let end = Instant::now() + 2 * BEAT;
            while !t.is_finished() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(10));
            }
            if t.is_finished() {
                let _ = t.join();
            } else {
                tracing::warn!("heartbeat writer stuck on the checkpoint storage: left behind");
            }
        }
    }
}

/// Tracks the heartbeats of the ranks a waiter depends on.
struct Liveness<'a> {
    dir: &'a Path,
    since: Instant,
    seen: HashMap<u32, (Vec<u8>, Instant)>,
    /// Give up on a rank that has not started beating this long after the wait began (`None`:
    /// only the barrier's timeout applies, e.g. when ranks may start minutes apart).
    absent: Option<Duration>,
}

impl Liveness<'_> {
    /// Why rank `r` counts as gone, if it does. The read is bounded by `look`: a storage that
    /// does not answer is an error, not a peer gone.
    fn gone(&mut self, r: u32, look: Duration) -> Result<Option<String>> {
        let p = marker(self.dir, "alive", r);
        let owned = p.clone();
        // Absent or unreadable (renamed away at the commit, not written yet): no news.
        let beat = bounded(look, "reading heartbeat", &p, move || {
            Ok(fs::read(owned).ok())
        })?;
        Ok(self.judge(r, beat))
    }

    fn judge(&mut self, r: u32, beat: Option<Vec<u8>>) -> Option<String> {
        let now = Instant::now();
        if let Some(beat) = beat {
            match self.seen.get_mut(&r) {
                Some((last, at)) if *last != beat => (*last, *at) = (beat, now),
                Some(_) => {}
                None => {
                    self.seen.insert(r, (beat, now));
                }
            }
        }
        match (self.seen.get(&r), self.absent) {
            (Some((_, at)), _) if now.duration_since(*at) > STALE => Some(format!(
                "its heartbeat stopped {}s ago: its supervisor or node is gone",
                now.duration_since(*at).as_secs()
            )),
            (None, Some(grace)) if now.duration_since(self.since) > grace => Some(format!(
                "it did not join within {}s: its supervisor or node is gone",
                grace.as_secs()
            )),
            _ => None,
        }
    }
}

/// Wait until `done(r, look)` holds for every rank in `ranks`, polling every 50 ms, up to
/// `timeout`. Gives up at once when any rank has left a `failed` marker in `dir`, or when a rank
/// not yet done stops beating (see [`Liveness`]): nobody waits out the timeout for a rank that is
/// gone. Every look at the storage is bounded (`look`: the time left, at least [`MIN_LOOK`]), so a
/// hung mount ends the wait with `StorageError::Timeout` instead of blocking it forever.
pub async fn wait_ranks(
    dir: &Path,
    what: &str,
    ranks: impl Iterator<Item = u32> + Clone,
    timeout: Duration,
    absent: Option<Duration>,
    mut done: impl FnMut(u32, Duration) -> Result<bool>,
) -> Result<()> {
    let end = tokio::time::Instant::now() + timeout;
    let mut live = Liveness {
        dir,
        since: Instant::now(),
        seen: HashMap::new(),
        absent,
    };
    // None: a rank whose heartbeat is already stale is caught at the first poll.
    let mut last_live: Option<Instant> = None;
    loop {
        let look = end
            .saturating_duration_since(tokio::time::Instant::now())
            .max(MIN_LOOK);
        let owned = dir.to_path_buf();
        let failed = bounded_async(look, "looking for failure markers in", dir, move || {
            // A rank may say why in its marker (a restore's refusal, say): pass it on.
            Ok(listed_failed_rank(&owned)?.map(|r| {
                let why = fs::read_to_string(marker(&owned, "failed", r)).unwrap_or_default();
                (r, why)
            }))
        })
        .await?;
        if let Some((r, text)) = failed {
            let (storage_refused, why) = read_failure_text(&text);
            return Err(Error::Peer {
                rank: r,
                gone: false,
                storage_refused,
                why: if why.is_empty() {
                    format!("rank {r} failed (waiting for {what})")
                } else {
                    format!("rank {r} failed (waiting for {what}): {why}")
                },
            });
        }
        let mut pending = Vec::new();
        for r in ranks.clone() {
            if !done(r, look)? {
                pending.push(r);
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
        // Heartbeats change once a second: reading every pending rank's at every poll would cost
        // ranks² reads per poll across a large job on the shared storage, and tell nothing more.
        if last_live.is_some_and(|t| t.elapsed() < BEAT) {
            tokio::time::sleep(POLL).await;
            continue;
        }
        last_live = Some(Instant::now());
        for r in pending {
            if let Some(why) = live.gone(r, look)? {
                return Err(Error::Peer {
                    rank: r,
                    gone: true,
                    storage_refused: false,
                    why: format!("rank {r} stopped responding while waiting for {what}: {why}"),
                });
            }
        }
        if tokio::time::Instant::now() >= end {
            return Err(Error::Timeout {
                what: what.to_string(),
                secs: timeout.as_secs(),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Wait until every rank in `ranks` has left marker `what` in `dir` (see [`wait_ranks`]).
pub async fn barrier(
    dir: &Path,
    what: &str,
    ranks: impl Iterator<Item = u32> + Clone,
    timeout: Duration,
    absent: Option<Duration>,
) -> Result<()> {
    wait_ranks(
        dir,
        &format!("every rank to be {what}"),
        ranks,
        timeout,
        absent,
        markers_seen(dir, what),
    )
    .await
}

/// Whether rank r has left marker `what` in `dir`, from one directory listing per poll instead of a
/// lookup per rank (one read of the directory however many ranks a large job has).
fn markers_seen(dir: &Path, what: &str) -> impl FnMut(u32, Duration) -> Result<bool> {
    let dir = dir.to_path_buf();
    let prefix = format!(".{what}-r");
    let mut listed: Option<(Instant, HashSet<u32>)> = None;
    move |r, look| {
        let fresh = listed
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < POLL / 2);
        if !fresh {
            let (d, p) = (dir.clone(), prefix.clone());
            let ranks = bounded(look, "listing markers in", &dir, move || {
                Ok(fs::read_dir(&d)
                    .map(|rd| {
                        rd.flatten()
                            .filter_map(|e| {
                                e.file_name()
                                    .to_str()?
                                    .strip_prefix(p.as_str())?
                                    .parse()
                                    .ok()
                            })
                            .collect()
                    })
                    .unwrap_or_default())
            })?;
            listed = Some((Instant::now(), ranks));
        }
        Ok(listed.as_ref().is_some_and(|(_, seen)| seen.contains(&r)))
    }
}

/// Whether `p` exists, looking for at most `look`.
pub fn exists_within(p: &Path, look: Duration) -> Result<bool> {
    let owned = p.to_path_buf();
    bounded(look, "looking up", p, move || Ok(owned.exists()))
}

/// The lowest rank that left a `failed` marker in `dir`, if any. A directory the storage cannot
/// list is an error naming it (a
/// storage that fails fast, as a FUSE client whose server is gone does: ENOTCONN), not silence
/// until the wait's timeout or a peer taken for dead. Gone (renamed at the commit) or stale (the
/// same, seen by another client) is no marker.
fn listed_failed_rank(dir: &Path) -> Result<Option<u32>> {
    let entries = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                || e.raw_os_error() == Some(nix::libc::ESTALE) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(Error::io(dir, e)),
    };
    Ok(entries
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix(".failed-r")?
                .parse()
                .ok()
        })
        .min())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("slurm-ckpt-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[tokio::test]
    async fn a_failed_rank_ends_the_barrier_early() {
        let dir = scratch("barrier");
        touch(&marker(&dir, "dumped", 0)).unwrap();
        assert!(barrier(&dir, "dumped", 0..1, Duration::from_secs(5), None)
            .await
            .is_ok());
        touch(&marker(&dir, "failed", 3)).unwrap();
        let err = barrier(&dir, "dumped", 0..2, Duration::from_secs(60), None)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("rank 3 failed"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_failure_marker_is_never_seen_without_its_reason() {
        // The CI once saw "rank 2 failed" with no reason: the waiter read the marker between
        // its creation and its contents. Reasons are written aside and renamed into place.
        let dir = scratch("whole");
        // Long enough that writing it takes a while.
        let why = format!("{} checksum mismatch", "x".repeat(1 << 20));
        let p = marker(&dir, "failed", 2);
        for _ in 0..50 {
            let _ = fs::remove_file(&p);
            let writer = {
                let (p, why) = (p.clone(), why.clone());
                std::thread::spawn(move || say(&p, &why))
            };
            while !writer.is_finished() {
                if let Ok(Some(2)) = listed_failed_rank(&dir) {
                    if let Ok(seen) = fs::read_to_string(&p) {
                        assert!(
                            seen == why,
                            "a listed marker is whole: {} bytes",
                            seen.len()
                        );
                    }
                }
            }
            writer.join().unwrap().unwrap();
        }
        let err = barrier(&dir, "dumped", 0..3, Duration::from_secs(60), None)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1, "no .part left");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_rank_refused_by_the_storage_says_so_in_its_marker() {
        let dir = scratch("refused");
        let why = "…/.restore-g0001-j7-1/.failed-r1.part: Disk quota exceeded (os error 122)";
        say(&marker(&dir, "failed", 1), &failure_text(why, true)).unwrap();
        match barrier(&dir, "restored", 0..2, Duration::from_secs(60), None).await {
            Err(Error::Peer {
                rank: 1,
                storage_refused: true,
                why: told,
                ..
            }) => assert!(
                told.ends_with(why) && !told.contains("storage-refused"),
                "{told}"
            ),
            other => panic!("{other:?}"),
        }
        // Any other reason, even one naming the quota, is the rank's own failure.
        say(&marker(&dir, "failed", 1), &failure_text(why, false)).unwrap();
        let err = barrier(&dir, "restored", 0..2, Duration::from_secs(60), None).await;
        assert!(
            matches!(
                err,
                Err(Error::Peer {
                    storage_refused: false,
                    ..
                })
            ),
            "{err:?}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_rank_that_never_joins_is_given_up_after_the_grace() {
        let dir = scratch("absent");
        let err = barrier(
            &dir,
            "dumped",
            0..1,
            Duration::from_secs(60),
            Some(Duration::from_millis(200)),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("did not join"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_beating_rank_is_alive_and_a_silent_one_is_not() {
        let dir = scratch("beat");
        let hb = Heartbeat::start(&dir, 2);
        let mut live = Liveness {
            dir: &dir,
            since: Instant::now(),
            seen: HashMap::new(),
            absent: Some(Duration::ZERO),
        };
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(live.gone(2, MIN_LOOK).unwrap(), None);
        drop(hb);
        // Pretend the last change was seen long ago: the counter no longer moves.
        let beat = fs::read(marker(&dir, "alive", 2)).unwrap();
        live.seen.insert(2, (beat, Instant::now() - STALE - BEAT));
        assert!(live
            .gone(2, MIN_LOOK)
            .unwrap()
            .unwrap()
            .contains("heartbeat stopped"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
