//! What `slurm-ckpt gc` may remove from the checkpoint storage. A job directory goes only when
//! every job known to have used it is gone from Slurm; a directory whose owner cannot be told is
//! kept (and reported), whatever its name: a custom `--container-ckpt=DIR` says nothing about its
//! job, and a running job's first checkpoint has no manifest yet.
//!
//! Owners come from the manifests of complete generations and from owner markers
//! (`.owner-job-<J>`) that every rank's supervisor leaves when it writes a checkpoint there. For
//! directories written before markers existed, the name counts if it is a job id (the default),
//! and the job state records (`<ckpt_root>/.state/<J>/`) guard against a user's running job whose
//! directory is unknown. The decision (`decide`) is pure; Slurm is asked through a closure.
use crate::ckpt::{Closed, Layout, CLOSED_FILE};
use crate::error::{Error, Result};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Name prefix of the owner markers in a job directory.
pub const OWNER_PREFIX: &str = ".owner-job-";
/// Deepest nesting of a custom directory name below the user's area that gc looks into.
const MAX_DEPTH: usize = 8;

/// Record that `job` writes checkpoints into `job_dir` (idempotent; root-owned like the directory,
/// so users cannot forge one).
pub fn mark_owner(job_dir: &Path, job: u32) -> Result<()> {
    let p = job_dir.join(format!("{OWNER_PREFIX}{job}"));
    if p.exists() {
        return Ok(());
    }
    std::fs::write(&p, b"").map_err(|e| Error::io(&p, e))
}

/// What Slurm says about a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    /// Pending, running, suspended, requeued or recently ended: still Slurm's.
    Known,
    /// Slurm answered that there is no such job.
    Gone,
    /// Slurm could not be asked or gave no clear answer.
    Unknown,
}

/// `scontrol show job J`'s outcome as a status: only an explicit "Invalid job id" means gone.
pub fn status_from(success: bool, stderr: &str) -> JobStatus {
    match (success, stderr.contains("Invalid job id")) {
        (true, _) => JobStatus::Known,
        (false, true) => JobStatus::Gone,
        (false, false) => JobStatus::Unknown,
    }
}

/// Ask slurmctld about `job`.
pub fn slurm_status(job: u32) -> JobStatus {
    match std::process::Command::new("scontrol")
        .args(["-o", "show", "job", &job.to_string()])
        .output()
    {
        Ok(o) => status_from(o.status.success(), &String::from_utf8_lossy(&o.stderr)),
        Err(e) => {
            tracing::warn!("scontrol show job {job}: {e}");
            JobStatus::Unknown
        }
    }
}

/// One job directory on the storage.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobDir {
    pub user: String,
    /// Path below the user's area (a custom name may have several components).
    pub name: String,
    pub path: PathBuf,
    /// Jobs named by its complete generations' manifests.
    pub manifest_jobs: BTreeSet<u32>,
    /// Jobs that left an owner marker.
    pub marker_jobs: BTreeSet<u32>,
    /// Complete generations whose manifest could not be read.
    pub unreadable: usize,
    /// Its closed marker (for display only: the rules do not depend on it).
    pub closed: Option<Closed>,
}

impl JobDir {
    /// ", closed: job J ended normally at T" when it has a closed marker.
    pub fn closed_note(&self) -> String {
        self.closed.as_ref().map_or_else(String::new, |c| {
            format!(
                "; closed: job {} ended normally at {}",
                c.job,
                crate::state::utc(c.time)
            )
        })
    }
}

/// A job with state records: its supervisors ran and no epilog has removed them yet.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveJob {
    pub job: u32,
    pub user: String,
}

/// What gc does with a directory, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A job Slurm knows (or may know) owns it: untouched.
    Live { job: u32, why: String },
    /// Its owner cannot be told: untouched.
    Unsure(String),
    /// Every owner is gone.
    Remove(String),
}

/// The jobs that may own `dir`.
fn owners(dir: &JobDir) -> BTreeSet<u32> {
    let mut all: BTreeSet<u32> = dir.manifest_jobs.union(&dir.marker_jobs).copied().collect();
    // Without markers (written by an older helper) the default name is the job id.
    if dir.marker_jobs.is_empty() {
        all.extend(dir.name.parse::<u32>().ok());
    }
    all
}

fn live(job: u32, status: JobStatus, whose: &str) -> Option<Verdict> {
    let why = match status {
        JobStatus::Known => format!("{whose} job {job} is still known to Slurm"),
        JobStatus::Unknown => format!("Slurm could not say whether {whose} job {job} is gone"),
        JobStatus::Gone => return None,
    };
    Some(Verdict::Live { job, why })
}

/// Decide about one directory. `marked`: every job that has an owner marker in some directory;
/// `active`: jobs with state records; `slurm`: what Slurm says about a job.
pub fn decide(
    dir: &JobDir,
    marked: &BTreeSet<u32>,
    active: &[ActiveJob],
    slurm: &mut dyn FnMut(u32) -> JobStatus,
) -> Verdict {
    if dir.unreadable > 0 {
        return Verdict::Unsure(format!(
            "{} generation manifest(s) cannot be read, so the owner job is not certain",
            dir.unreadable
        ));
    }
    let owners = owners(dir);
    if owners.is_empty() {
        return Verdict::Unsure(
            "its owner job cannot be determined (no manifest, no owner marker, not named by a job id); remove it by hand once it is unused".into(),
        );
    }
    if let Some(v) = owners.iter().find_map(|&j| live(j, slurm(j), "its")) {
        return v;
    }
    // An unmarked directory may belong to a running job of the same user whose directory gc
    // cannot see (written before owner markers existed).
    if dir.marker_jobs.is_empty() {
        let unplaced = active
            .iter()
            .filter(|a| a.user == dir.user && !marked.contains(&a.job) && !owners.contains(&a.job));
        for a in unplaced {
            if let Some(Verdict::Live { job, why }) = live(a.job, slurm(a.job), &a.user) {
                return Verdict::Live {
                    job,
                    why: format!("no owner marker, and {why} with no known checkpoint directory"),
                };
            }
        }
    }
    let list: Vec<String> = owners.iter().map(u32::to_string).collect();
    Verdict::Remove(format!("job {} no longer known to Slurm", list.join(", ")))
}

/// Every job directory under `ckpt_root` (skipping `.state` and other hidden names, and links).
pub fn scan(ckpt_root: &Path) -> Result<Vec<JobDir>> {
    let mut out = Vec::new();
    if !ckpt_root.exists() {
        return Ok(out);
    }
    for (user, path) in subdirs(ckpt_root)? {
        scan_area(ckpt_root, &user, &path, "", 0, &mut out)?;
    }
    out.sort_by(|a, b| (&a.user, &a.name).cmp(&(&b.user, &b.name)));
    Ok(out)
}

/// Real (not linked) subdirectories of `dir` that are not hidden, by name.
fn subdirs(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut out = Vec::new();
    for e in rd {
        let e = e.map_err(|e| Error::io(dir, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if is_dir && !name.starts_with('.') {
            out.push((name, e.path()));
        }
    }
    Ok(out)
}

/// Whether `dir` holds a job's checkpoints (generations, temporaries, restore markers, owner
/// markers) or nothing else to descend into; otherwise it is part of a nested custom name.
fn is_job_dir(dir: &Path) -> Result<bool> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut has_subdir = false;
    for e in rd.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        let gen = n
            .strip_prefix('g')
            .is_some_and(|d| d.parse::<u32>().is_ok());
        if gen
            || n.starts_with(".g")
            || n.starts_with(".restore-")
            || n.starts_with(OWNER_PREFIX)
            || n == CLOSED_FILE
            || n == crate::ckpt::STARTED_FILE
        {
            return Ok(true);
        }
        has_subdir |= e.file_type().map(|t| t.is_dir()).unwrap_or(false);
    }
    Ok(!has_subdir)
}

fn scan_area(
    root: &Path,
    user: &str,
    dir: &Path,
    prefix: &str,
    depth: usize,
    out: &mut Vec<JobDir>,
) -> Result<()> {
    for (name, path) in subdirs(dir)? {
        let name = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        if depth + 1 < MAX_DEPTH && !is_job_dir(&path)? {
            scan_area(root, user, &path, &name, depth + 1, out)?;
        } else {
            out.push(job_dir(root, user, &name)?);
        }
    }
    Ok(())
}

/// What one job directory says about its owners.
fn job_dir(root: &Path, user: &str, name: &str) -> Result<JobDir> {
    let layout = Layout::new(root, user, name);
    let mut d = JobDir {
        user: user.to_string(),
        name: name.to_string(),
        path: layout.job_dir.clone(),
        closed: layout.closed_unverified(),
        ..JobDir::default()
    };
    for g in layout.generations() {
        match layout.load_manifest(g) {
            Ok(m) => {
                d.manifest_jobs.insert(m.job);
            }
            Err(e) => {
                tracing::warn!("{e}");
                d.unreadable += 1;
            }
        }
    }
    d.marker_jobs = marked_owners(&d.path)?;
    Ok(d)
}

/// The jobs that left an owner marker in `job_dir`.
pub fn marked_owners(job_dir: &Path) -> Result<BTreeSet<u32>> {
    let rd = std::fs::read_dir(job_dir).map_err(|e| Error::io(job_dir, e))?;
    Ok(rd
        .flatten()
        .filter_map(|e| {
            let n = e.file_name();
            n.to_str()?.strip_prefix(OWNER_PREFIX)?.parse().ok()
        })
        .collect())
}

/// Jobs with state records and their users (a job whose records cannot be read is an error: gc
/// would otherwise decide without it).
pub fn active_jobs(ckpt_root: &Path) -> Result<Vec<ActiveJob>> {
    let mut out = Vec::new();
    for job in crate::state::list_jobs(ckpt_root)? {
        if let Some(r) = crate::state::load_job(ckpt_root, job)?.first() {
            out.push(ActiveJob {
                job,
                user: r.user.clone(),
            });
        }
    }
    Ok(out)
}

/// Complete generations of `layout` older than its newest `keep` (in-progress ones are never
/// included: a live job may be writing them).
pub fn old_generations(layout: &Layout, keep: usize) -> Vec<PathBuf> {
    let gens = layout.generations();
    let n = gens.len().saturating_sub(keep);
    gens[..n].iter().map(|g| layout.gen_dir(*g)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn dir(user: &str, name: &str, manifests: &[u32], markers: &[u32]) -> JobDir {
        JobDir {
            user: user.into(),
            name: name.into(),
            path: PathBuf::from(format!("/ckpt/{user}/{name}")),
            manifest_jobs: manifests.iter().copied().collect(),
            marker_jobs: markers.iter().copied().collect(),
            unreadable: 0,
            closed: None,
        }
    }

    /// A fake Slurm: listed jobs have that status, every other job is gone.
    fn slurm(known: &[(u32, JobStatus)]) -> impl FnMut(u32) -> JobStatus {
        let m: HashMap<u32, JobStatus> = known.iter().copied().collect();
        move |j| m.get(&j).copied().unwrap_or(JobStatus::Gone)
    }

    fn verdict(d: &JobDir, known: &[(u32, JobStatus)], active: &[ActiveJob]) -> Verdict {
        let marked: BTreeSet<u32> = d.marker_jobs.clone();
        decide(d, &marked, active, &mut slurm(known))
    }

    #[test]
    fn a_running_custom_named_job_without_generations_is_kept() {
        // The bug of issue 14: custom name, first checkpoint in progress, no manifest yet.
        let d = dir("u", "mydir", &[], &[42]);
        assert!(matches!(
            verdict(&d, &[(42, JobStatus::Known)], &[]),
            Verdict::Live { job: 42, .. }
        ));
        // A custom name that looks like another (gone) job's id.
        let d = dir("u", "7", &[], &[42]);
        assert!(matches!(
            verdict(&d, &[(42, JobStatus::Known)], &[]),
            Verdict::Live { job: 42, .. }
        ));
    }

    #[test]
    fn unknown_owners_and_unclear_answers_keep_the_directory() {
        let d = dir("u", "mydir", &[], &[]);
        assert!(matches!(verdict(&d, &[], &[]), Verdict::Unsure(_)));
        let mut d = dir("u", "5", &[5], &[]);
        d.unreadable = 1;
        assert!(matches!(verdict(&d, &[], &[]), Verdict::Unsure(_)));
        let d = dir("u", "mydir", &[5], &[]);
        assert!(matches!(
            verdict(&d, &[(5, JobStatus::Unknown)], &[]),
            Verdict::Live { job: 5, .. }
        ));
    }

    #[test]
    fn any_live_owner_keeps_a_reused_directory() {
        let d = dir("u", "mydir", &[3], &[3, 9]);
        assert!(matches!(
            verdict(&d, &[(9, JobStatus::Known)], &[]),
            Verdict::Live { job: 9, .. }
        ));
        assert!(matches!(verdict(&d, &[], &[]), Verdict::Remove(r) if r.contains("3, 9")));
    }

    #[test]
    fn gone_jobs_directories_go() {
        assert!(matches!(
            verdict(&dir("u", "12", &[], &[]), &[], &[]),
            Verdict::Remove(_)
        ));
        assert!(matches!(
            verdict(
                &dir("u", "mydir", &[12], &[12]),
                &[(13, JobStatus::Known)],
                &[]
            ),
            Verdict::Remove(_)
        ));
    }

    #[test]
    fn unmarked_directories_are_kept_while_the_user_has_an_unplaced_running_job() {
        let d = dir("u", "12", &[], &[]);
        let active = [ActiveJob {
            job: 30,
            user: "u".into(),
        }];
        let known = [(30, JobStatus::Known)];
        assert!(matches!(
            verdict(&d, &known, &active),
            Verdict::Live { job: 30, .. }
        ));
        // Another user's job does not keep it; neither does a job whose directory is marked.
        let other = [ActiveJob {
            job: 30,
            user: "v".into(),
        }];
        assert!(matches!(verdict(&d, &known, &other), Verdict::Remove(_)));
        let marked: BTreeSet<u32> = [30].into();
        assert!(matches!(
            decide(&d, &marked, &active, &mut slurm(&known)),
            Verdict::Remove(_)
        ));
    }

    #[test]
    fn slurm_answers() {
        assert_eq!(status_from(true, ""), JobStatus::Known);
        assert_eq!(
            status_from(false, "slurm_load_jobs error: Invalid job id specified"),
            JobStatus::Gone
        );
        assert_eq!(
            status_from(false, "Unable to contact slurm controller"),
            JobStatus::Unknown
        );
    }

    #[test]
    fn scans_nested_custom_names_and_markers() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join(".state/5")).unwrap();
        std::fs::create_dir_all(r.join("u/12/.g0001.tmp")).unwrap();
        std::fs::create_dir_all(r.join("u/proj/run1")).unwrap();
        mark_owner(&r.join("u/proj/run1"), 40).unwrap();
        mark_owner(&r.join("u/proj/run1"), 40).unwrap();
        std::fs::create_dir_all(r.join("u/empty")).unwrap();
        let dirs = scan(r).unwrap();
        let names: Vec<&str> = dirs.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["12", "empty", "proj/run1"]);
        assert_eq!(dirs[2].marker_jobs, [40].into());
        assert!(dirs[0].marker_jobs.is_empty() && dirs[0].manifest_jobs.is_empty());
    }

    #[test]
    fn closed_state_is_shown_and_changes_no_rule() {
        let closed = Closed {
            instance: None,
            job: 12,
            step: 0,
            time: 0,
            through: 1,
            exit_code: None,
        };
        let mut d = dir("u", "mydir", &[12], &[12]);
        d.closed = Some(closed.clone());
        assert!(matches!(
            verdict(&d, &[(12, JobStatus::Known)], &[]),
            Verdict::Live { job: 12, .. }
        ));
        assert!(matches!(verdict(&d, &[], &[]), Verdict::Remove(_)));
        assert_eq!(
            d.closed_note(),
            "; closed: job 12 ended normally at 1970-01-01 00:00:00 UTC"
        );
        let root = tempfile::tempdir().unwrap();
        let l = Layout::new(root.path(), "u", "mydir");
        l.create().unwrap();
        let key = crate::auth::SiteKey::derive(b"k");
        l.close(&closed, &key).unwrap();
        let dirs = scan(root.path()).unwrap();
        assert_eq!(dirs.len(), 1);
        assert_eq!(dirs[0].closed, Some(closed));
        assert_eq!(dir("u", "x", &[], &[]).closed_note(), "");
    }
}
