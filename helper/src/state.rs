//! Rank state records on shared storage (`<ckpt_root>/.state/<job>/rank-<r>.json`), written by the
//! root supervisors and read by `slurm-ckpt status` from any node. Root-owned, world-readable.
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    pub at: u64,
    pub what: String,
}

/// What a rank's container is doing, as recorded for `slurm-ckpt status` (lowercase in JSON).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ContainerState {
    Created,
    Running,
    /// Paused (cgroup freezer): suspended by Slurm, or held for a checkpoint.
    Frozen,
    Exited,
    Failed,
}

impl std::fmt::Display for ContainerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ContainerState::Created => "created",
            ContainerState::Running => "running",
            ContainerState::Frozen => "frozen",
            ContainerState::Exited => "exited",
            ContainerState::Failed => "failed",
        })
    }
}

/// The outcome of a rank's newest checkpoint: what `slurm-ckpt checkpoint` waits for (the events
/// say the same for humans).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CheckpointResult {
    pub generation: u32,
    /// When it ended, seconds since the epoch.
    pub at: u64,
    /// When this rank began it (None in records written before this was kept): an attempt begun
    /// before a request is not that request's answer, however late it ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub began: Option<u64>,
    #[serde(flatten)]
    pub outcome: CheckpointOutcome,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "outcome", rename_all = "lowercase")]
pub enum CheckpointOutcome {
    Complete,
    Failed { reason: String },
}

impl std::fmt::Display for CheckpointResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let g = crate::ckpt::gen_name(self.generation);
        match &self.outcome {
            CheckpointOutcome::Complete => write!(f, "checkpoint {g} complete"),
            CheckpointOutcome::Failed { reason } => write!(f, "checkpoint {g} failed: {reason}"),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RankState {
    pub job: u32,
    pub step: u32,
    pub rank: u32,
    pub user: String,
    pub node: String,
    pub container: String,
    pub container_id: String,
    pub hostname: String,
    pub ip: String,
    pub mac: String,
    pub image: String,
    pub state: ContainerState,
    #[serde(default)]
    pub events: Vec<Event>,
    /// None until the rank's first checkpoint ends (and in records of older helpers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checkpoint: Option<CheckpointResult>,
    /// Why this node could not restore the rank (compat.rs), and what was done about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_refused: Option<String>,
    /// Where the rank's newest complete checkpoint spent its time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checkpoint_phases: Option<crate::timing::CkptPhases>,
    /// Where the rank's restore (this run's) spent its time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_restore: Option<crate::timing::RestorePhases>,
    /// Why a checkpoint of this job is not expected to fit in its preemption or requeue window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_warning: Option<String>,
    /// The checkpoint this rank is dumping now, for `slurm-ckpt checkpoint`'s progress (None
    /// otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dumping: Option<Dumping>,
    /// The restore this rank is doing now and its phase, for `slurm-ckpt status` (None once the
    /// container runs; left in place by a restore that failed, to say where).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restoring: Option<Restoring>,
    /// Why the supervisor's last write of this record failed, if it did (storage away): it writes
    /// it again until one succeeds, so that `status` does not keep showing a checkpoint that has
    /// long ended.
    #[serde(skip)]
    pub unsaved: Option<String>,
}

/// A restore under way: which phase since when.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Restoring {
    pub generation: u32,
    /// What the rank does now: verifying, unpacking, waiting, restoring, releasing the network.
    pub phase: String,
    /// When this phase began, seconds since the epoch.
    pub since: u64,
    /// The rank's images in the generation.
    pub bytes: u64,
}

/// A dump under way: where its images grow and how large they are expected to be.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Dumping {
    pub generation: u32,
    /// When the dump began, seconds since the epoch.
    pub started: u64,
    /// The directory CRIU writes this rank's images to (on the shared storage, or the node's
    /// staging directory, which only that node sees).
    pub dir: PathBuf,
    pub shared: bool,
    /// The container's memory in use (without page cache) when the dump began: a dump's images
    /// are about that size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_bytes: Option<u64>,
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `secs` since the epoch as `YYYY-MM-DD HH:MM:SS UTC` (civil-from-days, proleptic Gregorian).
pub fn utc(secs: u64) -> String {
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let (era, doe) = (z.div_euclid(146_097), z.rem_euclid(146_097));
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let (h, mi, s) = (rem / 3600, rem / 60 % 60, rem % 60);
    format!("{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC")
}

pub fn state_root(ckpt_root: &Path) -> PathBuf {
    ckpt_root.join(".state")
}

pub fn job_state_dir(ckpt_root: &Path, job: u32) -> PathBuf {
    state_root(ckpt_root).join(job.to_string())
}

/// Bytes a rank's dump under way has written, as its supervisor measures them every second
/// (world-readable like the records: the images themselves are in the root-only user area).
pub fn dump_bytes_path(ckpt_root: &Path, job: u32, rank: u32) -> PathBuf {
    job_state_dir(ckpt_root, job).join(format!("rank-{rank}.dumped"))
}

/// Replace the bytes-written file atomically (a reader never sees half a number).
pub fn write_dump_bytes(path: &Path, bytes: u64) -> Result<()> {
    let tmp = path.with_extension(format!("dumped.{}", std::process::id()));
    fs::write(&tmp, bytes.to_string()).map_err(|e| Error::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

pub fn read_dump_bytes(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

impl RankState {
    pub fn event(&mut self, what: impl Into<String>) {
        self.events.push(Event {
            at: now(),
            what: what.into(),
        });
        // Bound the record: long jobs suspended many times keep the latest events.
        if self.events.len() > 200 {
            self.events.drain(..self.events.len() - 200);
        }
    }

    /// Record how checkpoint `generation` ended, and say so in the events.
    pub fn checkpoint_ended(&mut self, generation: u32, began: u64, outcome: CheckpointOutcome) {
        let res = CheckpointResult {
            generation,
            at: now(),
            began: Some(began),
            outcome,
        };
        self.event(res.to_string());
        self.last_checkpoint = Some(res);
        self.dumping = None;
    }

    /// Atomically replace this rank's record.
    pub fn save(&self, ckpt_root: &Path) -> Result<()> {
        let dir = job_state_dir(ckpt_root, self.job);
        crate::storage::check_mounted()?;
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let path = dir.join(format!("rank-{}.json", self.rank));
        let tmp = dir.join(format!(".rank-{}.json.{}", self.rank, std::process::id()));
        let body = serde_json::to_vec_pretty(self).map_err(|source| Error::Encode {
            what: path.display().to_string(),
            source,
        })?;
        let mut f = fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(&body).map_err(|e| Error::io(&tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))
    }
}

/// All rank records of one job, sorted by rank.
pub fn load_job(ckpt_root: &Path, job: u32) -> Result<Vec<RankState>> {
    let dir = job_state_dir(ckpt_root, job);
    let mut out = Vec::new();
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io(dir, e)),
    };
    for ent in entries.flatten() {
        let p = ent.path();
        let is_record = p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("rank-") && n.ends_with(".json"));
        if !is_record {
            continue;
        }
        // Another node's epilog may remove its records while we read the directory.
        // A record another node replaced by rename may meet a stale handle: read it again.
        let text = match crate::transient::STALE_READ.run(&p, || fs::read(&p)) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(&p, e)),
        };
        match serde_json::from_slice::<RankState>(&text) {
            Ok(s) => out.push(s),
            Err(e) => tracing::warn!("ignoring unreadable state record {}: {e}", p.display()),
        }
    }
    out.sort_by_key(|s| s.rank);
    Ok(out)
}

/// Job ids that have state records.
pub fn list_jobs(ckpt_root: &Path) -> Result<Vec<u32>> {
    let dir = state_root(ckpt_root);
    let mut jobs: Vec<u32> = match fs::read_dir(&dir) {
        Ok(e) => e
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
        Err(e) => return Err(Error::io(dir, e)),
    };
    jobs.sort_unstable();
    Ok(jobs)
}

/// Remove one rank's record (epilog; idempotent).
pub fn remove_rank(ckpt_root: &Path, job: u32, rank: u32) {
    let dir = job_state_dir(ckpt_root, job);
    let _ = fs::remove_file(dir.join(format!("rank-{rank}.json")));
    // The last record gone: markers go too, and the directory.
    let records_left = fs::read_dir(&dir)
        .map(|rd| {
            rd.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("rank-"))
        })
        .unwrap_or(false);
    if !records_left {
        let _ = fs::remove_dir_all(&dir);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn container_states_keep_their_json_names() {
        use super::ContainerState as S;
        for (st, name) in [
            (S::Created, "created"),
            (S::Frozen, "frozen"),
            (S::Exited, "exited"),
        ] {
            assert_eq!(serde_json::to_string(&st).unwrap(), format!("\"{name}\""));
            assert_eq!(st.to_string(), name);
        }
        assert!(serde_json::from_str::<S>("\"paused\"").is_err());
    }

    #[test]
    fn checkpoint_results_are_fields_and_events() {
        use super::*;
        let mut st: RankState = serde_json::from_value(serde_json::json!({
            "job": 1, "step": 0, "rank": 2, "user": "u", "node": "n", "container": "c",
            "container_id": "i", "hostname": "h", "ip": "1.2.3.4", "mac": "m", "image": "img",
            "state": "running", "events": []
        }))
        .unwrap();
        assert_eq!(st.last_checkpoint, None);
        st.checkpoint_ended(
            7,
            now(),
            CheckpointOutcome::Failed {
                reason: "disk full".into(),
            },
        );
        assert_eq!(st.events[0].what, "checkpoint g0007 failed: disk full");
        let json = serde_json::to_value(&st).unwrap();
        let last = &json["last_checkpoint"];
        assert_eq!(
            (&last["generation"], &last["outcome"], &last["reason"]),
            (
                &serde_json::json!(7),
                &serde_json::json!("failed"),
                &serde_json::json!("disk full")
            )
        );
        let back: RankState = serde_json::from_value(json).unwrap();
        assert_eq!(back, st);
        st.checkpoint_ended(8, now(), CheckpointOutcome::Complete);
        assert_eq!(st.events[1].what, "checkpoint g0008 complete");
        assert_eq!(st.last_checkpoint.as_ref().map(|c| c.generation), Some(8));
    }

    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(super::utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(super::utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(super::utc(4_102_444_799), "2099-12-31 23:59:59 UTC");
    }
}
