//! Each user's own index of their checkpoints: `<ckpt_root>/.users/<user>/<job>.json`, so that
//! `slurm-ckpt list` and `status` work for a user although the checkpoint areas are root-only.
//!
//! - `.users` is root's, 0711: traversable, not listable (nobody learns the other users' names).
//! - `.users/<user>` is created by root and handed to the user (0700): only they read it.
//! - On storage that squashes root (site `storage_root_uid`), root can hand nothing over: `.users`
//!   is then 1733 (sticky: users create, nobody lists, only an entry's owner removes or renames it)
//!   and the user's child makes `<user>` itself. A directory of that name that is not the user's
//!   (someone else took it first) is refused: that user's index is not written (logged).
//! - Entries are written by a child process that runs as the user (`slurm-ckpt write-index`),
//!   never by root into a directory the user owns.
//! - Nothing secret is in an entry (no keys, no MACs): what the user could learn from their job's
//!   output anyway. The index is the user's own and they may edit it: root never reads it for any
//!   decision (docs/SECURITY.md). The gc asks the same child, as the user, to forget the entries
//!   of a removed directory.
//!
//! Updates are best effort and bounded (`WRITE_TIMEOUT`): a checkpoint never fails for them.
use crate::ckpt::{gen_name, BadGeneration, Closed, Layout, Manifest};
use crate::error::{Error, Result};
use crate::user_paths::Creds;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The index's directory under the checkpoint root.
pub const INDEX_DIR: &str = ".users";
/// The child must be done within this: a hung file system must not hold the supervisor.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// An entry is a few KiB; the child refuses more.
const MAX_ENTRY_BYTES: u64 = 1 << 20;

/// One job (step) as its user sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    pub job: u32,
    pub step: u32,
    pub user: String,
    /// The checkpoint directory's name in the user's area (`<dir>/step-<S>` for later steps).
    pub dir: String,
    /// When this entry was written (seconds since the epoch).
    pub updated: u64,
    /// The directory's complete generations, oldest first (those of an earlier job that this
    /// job resumed from included: each row names its job).
    pub generations: Vec<Generation>,
    #[serde(default)]
    pub last_failure: Option<Failure>,
    #[serde(default)]
    pub last_restore: Option<Restored>,
    /// Why nodes refused to restore the job (kept in its checkpoint directory).
    #[serde(default)]
    pub restore_refused: Vec<String>,
    /// The job (step) ended normally: its generations are closed.
    #[serde(default)]
    pub ended: Option<Ended>,
}

/// One generation, with what `slurm-ckpt list` shows of it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Generation {
    pub job: u32,
    pub generation: u32,
    pub ranks: u32,
    pub bytes: u64,
    pub seconds: f64,
    /// The slowest rank's held time: the cut needs every rank dumped.
    pub held: f64,
    pub policy: String,
    /// The job instance's first 8 digits, `-` for none.
    pub instance: String,
    /// `restart point`, `closed` or `set aside` (`gen_state`).
    pub state: String,
    pub created: u64,
    pub path: PathBuf,
    /// Why it was set aside (its restore failed).
    #[serde(default)]
    pub set_aside: Option<String>,
}

/// The last thing that went wrong, in the failing rank's words.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Failure {
    /// `checkpoint`, `restore` or `start`.
    pub what: String,
    pub generation: Option<u32>,
    pub reason: String,
    pub time: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Restored {
    pub generation: u32,
    pub time: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Ended {
    pub exit_code: Option<i32>,
    pub time: u64,
}

/// What rank 0 knows beyond the storage: kept for the job's run and written with every update.
#[derive(Debug, Clone, Default)]
pub struct Notes {
    pub last_failure: Option<Failure>,
    pub last_restore: Option<Restored>,
    pub ended: Option<Ended>,
}

/// A generation's state for its own job instance: `closed` once that job ended normally (its
/// directory's closed marker covers it), `set aside` after its restore failed (site
/// `on_restore_failure=previous`), else a `restart point` for a requeue of that job.
pub fn gen_state(m: &Manifest, closed: Option<&Closed>, bad: bool) -> &'static str {
    if bad {
        "set aside"
    } else if closed.is_some_and(|c| c.covers(m.instance.as_deref(), m.generation)) {
        "closed"
    } else {
        "restart point"
    }
}

/// The instance as the table shows it: its first 8 digits, `-` for none.
pub fn short_instance(m: &Manifest) -> &str {
    m.instance
        .as_deref()
        .map_or("-", slurm_ckpt_site::instance::short)
}

/// One generation's row (pure).
pub fn generation_row(
    path: PathBuf,
    m: &Manifest,
    closed: Option<&Closed>,
    bad: Option<&BadGeneration>,
) -> Generation {
    Generation {
        job: m.job,
        generation: m.generation,
        ranks: m.ntasks,
        bytes: m.total_bytes,
        seconds: m.checkpoint_seconds,
        held: m.ranks.iter().map(|r| r.held_seconds).fold(0.0, f64::max),
        policy: m.policy.clone(),
        instance: short_instance(m).to_string(),
        state: gen_state(m, closed, bad.is_some()).to_string(),
        created: m.created,
        path,
        set_aside: bad.map(|b| b.reason.clone()),
    }
}

/// Who an entry is about.
#[derive(Debug, Clone)]
pub struct Subject {
    pub job: u32,
    pub step: u32,
    pub user: String,
}

/// The entry for `layout` as the storage shows it now, plus `notes`. For display only, like
/// `list`: the manifests are not authenticated (and need not be: the user may edit the entry).
pub fn build(who: &Subject, layout: &Layout, notes: &Notes) -> Entry {
    let closed = layout.closed_unverified();
    let generations = layout
        .generations()
        .into_iter()
        .filter_map(|g| {
            let m = layout.load_manifest(g).ok()?;
            let bad = layout.bad_unverified(g);
            Some(generation_row(
                layout.gen_dir(g),
                &m,
                closed.as_ref(),
                bad.as_ref(),
            ))
        })
        .collect();
    let mut refused: Vec<String> = Vec::new();
    for r in crate::compat::refusals(&layout.job_dir) {
        let line = format!("{} ({})", r.reason, crate::state::utc(r.at));
        if !refused.contains(&line) {
            refused.push(line);
        }
    }
    Entry {
        job: who.job,
        step: who.step,
        user: who.user.clone(),
        dir: dir_name(layout),
        updated: crate::state::now(),
        generations,
        last_failure: notes.last_failure.clone(),
        last_restore: notes.last_restore.clone(),
        restore_refused: refused,
        ended: notes.ended.clone(),
    }
}

/// The job directory's name in the user's area.
pub fn dir_name(layout: &Layout) -> String {
    layout
        .job_dir
        .strip_prefix(&layout.user_dir)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `<root>/.users/<user>`.
pub fn index_dir(root: &Path, user: &str) -> PathBuf {
    root.join(INDEX_DIR).join(user)
}

/// An entry's file name: `<job>.json`, `<job>.step-<S>.json` for the later steps of a script.
pub fn file_name(job: u32, step: u32) -> String {
    if step == 0 {
        format!("{job}.json")
    } else {
        format!("{job}.step-{step}.json")
    }
}

/// The job an entry's file name is about, None for any other name (so the child writes nothing
/// but entries).
pub fn parse_file_name(name: &str) -> Option<(u32, u32)> {
    let stem = name.strip_suffix(".json")?;
    let (job, step) = match stem.split_once(".step-") {
        Some((j, s)) => (j, s.parse::<u32>().ok().filter(|s| *s > 0)?),
        None => (stem, 0),
    };
    let job: u32 = job.parse().ok()?;
    // The canonical spelling only (no `007.json` beside `7.json`).
    (file_name(job, step) == name).then_some((job, step))
}

/// A user name that is one plain path component.
fn plain_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && !name.contains('/') && !name.contains('\0')
}

/// What root does with an existing `.users/<user>` owned by `owner` (pure).
#[derive(Debug, PartialEq, Eq)]
pub enum OwnerAction {
    /// Root's own (just created, or an earlier attempt stopped short): hand it to the user.
    Hand,
    /// Already the user's.
    Keep,
}

pub fn judge_owner(owner: u32, me: u32, user: u32) -> std::result::Result<OwnerAction, String> {
    if owner == user {
        Ok(OwnerAction::Keep)
    } else if owner == me {
        Ok(OwnerAction::Hand)
    } else {
        Err(format!(
            "owned by uid {owner}, neither root nor the user ({user})"
        ))
    }
}

/// Open a directory without following a symlink in its last component.
fn open_dir(p: &Path) -> std::io::Result<fs::File> {
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_DIRECTORY | nix::libc::O_NOFOLLOW)
        .open(p)
}

/// Root side: make `.users` (root's, 0711) and `.users/<user>` (the user's, 0700) exist.
/// Safe against the user: `.users` is root's and not writable by anyone else, so nobody but root
/// can create or swap `<user>` in it; everything after the creation acts on the opened fds.
/// `root_uid`: who root is on the storage (site `storage_root_uid`); not 0: root is squashed and
/// cannot chown, so `.users` is made 1733 and the user's child creates `<user>` (module doc).
pub fn prepare_dir(root: &Path, creds: &Creds, root_uid: u32) -> Result<PathBuf> {
    let bad = |path: &Path, why: String| Error::IndexDir {
        path: path.to_path_buf(),
        why,
    };
    if !plain_name(&creds.name) {
        return Err(bad(root, format!("unusable user name '{}'", creds.name)));
    }
    if creds.uid == 0 {
        return Err(bad(root, "no index for root".into()));
    }
    let squashed = root_uid != 0;
    let me = if squashed {
        root_uid
    } else {
        nix::unistd::geteuid().as_raw()
    };
    let top_mode = if squashed { 0o1733 } else { 0o711 };
    let top = root.join(INDEX_DIR);
    crate::storage::check_mounted()?;
    mkdir(&top, top_mode)?;
    let f = open_dir(&top).map_err(|e| Error::io(&top, e))?;
    let md = f.metadata().map_err(|e| Error::io(&top, e))?;
    if md.uid() != me {
        return Err(bad(&top, format!("owned by uid {}, not root", md.uid())));
    }
    if md.mode() & 0o7777 != top_mode {
        f.set_permissions(fs::Permissions::from_mode(top_mode))
            .map_err(|e| Error::io(&top, e))?;
    }
    let dir = top.join(&creds.name);
    if squashed {
        // The child makes the user's directory; anyone may make one in the sticky top, so one of
        // this name that is not the user's own (squatted by another user) is moved aside first.
        move_aside_if_not_theirs(&top, &dir, creds)?;
        return Ok(dir);
    }
    mkdir(&dir, 0o700)?;
    let f = open_dir(&dir).map_err(|e| Error::io(&dir, e))?;
    let md = f.metadata().map_err(|e| Error::io(&dir, e))?;
    match judge_owner(md.uid(), me, creds.uid).map_err(|w| bad(&dir, w))? {
        OwnerAction::Keep => {}
        OwnerAction::Hand => {
            // Mode first: while root still owns it nobody else can enter it.
            f.set_permissions(fs::Permissions::from_mode(0o700))
                .map_err(|e| Error::io(&dir, e))?;
            std::os::unix::fs::fchown(&f, Some(creds.uid), Some(creds.gid))
                .map_err(|e| Error::io(&dir, e))?;
        }
    }
    Ok(dir)
}

/// Rename `dir` to `.squatted-<user>-<microseconds>` in `top` unless it is absent or a directory of the
/// user's. The storage account owns the sticky `top`, so it may rename what others made there.
fn move_aside_if_not_theirs(top: &Path, dir: &Path, creds: &Creds) -> Result<()> {
    let md = match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(dir, e)),
        Ok(md) => md,
    };
    if md.is_dir() && md.uid() == creds.uid {
        return Ok(());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or_default();
    let aside = top.join(format!(".squatted-{}-{now}", creds.name));
    fs::rename(dir, &aside).map_err(|e| Error::IndexDir {
        path: dir.to_path_buf(),
        why: format!(
            "owned by uid {}, not {} (uid {}), and cannot be moved aside: {e}",
            md.uid(),
            creds.name,
            creds.uid
        ),
    })?;
    tracing::warn!(
        path = %dir.display(),
        owner = md.uid(),
        aside = %aside.display(),
        "a user index directory made by another user was moved aside"
    );
    Ok(())
}

fn mkdir(p: &Path, mode: u32) -> Result<()> {
    match fs::DirBuilder::new().mode(mode).create(p) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(Error::io(p, e)),
        _ => Ok(()),
    }
}

/// What the child keeps from the entry it replaces: a failure or restore this run did not see
/// (an earlier run of the job, before a requeue) stays until a newer one replaces it.
pub fn merge(mut new: Entry, old: Option<Entry>) -> Entry {
    if let Some(old) = old.filter(|o| o.job == new.job && o.step == new.step) {
        if new.last_failure.is_none() {
            new.last_failure = old.last_failure;
        }
        if new.last_restore.is_none() {
            new.last_restore = old.last_restore;
        }
    }
    new
}

/// The entries in a user's index (unreadable ones skipped), oldest update first.
pub fn read_all(dir: &Path) -> Result<Vec<Entry>> {
    let rd = fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut out: Vec<Entry> = rd
        .flatten()
        .filter(|e| parse_file_name(&e.file_name().to_string_lossy()).is_some())
        .filter_map(|e| read_entry(&e.path()))
        .collect();
    out.sort_by_key(|e| (e.updated, e.job, e.step));
    Ok(out)
}

fn read_entry(p: &Path) -> Option<Entry> {
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(p)
        .ok()?;
    let mut buf = Vec::new();
    f.take(MAX_ENTRY_BYTES).read_to_end(&mut buf).ok()?;
    serde_json::from_slice(&buf).ok()
}

/// The rows to show: each generation once (a directory shared by jobs that resumed from each
/// other appears in each job's entry; the newest entry's view wins), only job `job`'s when given.
pub fn rows(entries: &[Entry], job: Option<u32>) -> Vec<(&Entry, &Generation)> {
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<(&Entry, &Generation)> = Vec::new();
    for e in entries.iter().rev() {
        for g in &e.generations {
            if job.is_none_or(|j| j == g.job) && seen.insert((e.dir.clone(), g.generation)) {
                out.push((e, g));
            }
        }
    }
    out.sort_by(|a, b| {
        (a.1.job, &a.0.dir, a.1.generation).cmp(&(b.1.job, &b.0.dir, b.1.generation))
    });
    out
}

// ---- the child, as the user ----------------------------------------------------------------

/// What the child does.
#[derive(Debug, Clone)]
pub enum ChildOp {
    /// Write the entry read from stdin as `name`.
    Put { name: String },
    /// Remove the entries of checkpoint directory `dir` (and its steps): the gc removed it.
    Forget { dir: String },
}

/// The child (`slurm-ckpt write-index`): drop to the user for good, then act in `dir`.
pub fn child(uid: u32, gid: u32, dir: &Path, op: &ChildOp, input: impl Read) -> Result<()> {
    crate::user_paths::drop_to(uid, gid, &[])?;
    // Made by root and handed over, or (root squashed) made here. The user's own directory: a
    // symlink there only misleads the user's own process; one of someone else's is refused.
    mkdir(dir, 0o700)?;
    let md = open_dir(dir)
        .and_then(|f| f.metadata())
        .map_err(|e| Error::io(dir, e))?;
    if md.uid() != uid {
        return Err(Error::IndexDir {
            path: dir.to_path_buf(),
            why: format!(
                "owned by uid {}, not the user ({uid}): someone else made it; an admin must remove it",
                md.uid()
            ),
        });
    }
    match op {
        ChildOp::Put { name } => put(dir, name, input),
        ChildOp::Forget { dir: gone } => {
            forget(dir, gone);
            Ok(())
        }
    }
}

fn put(dir: &Path, name: &str, input: impl Read) -> Result<()> {
    let bad = |why: String| Error::IndexWrite {
        path: dir.join(name),
        why,
    };
    let Some((job, step)) = parse_file_name(name) else {
        return Err(bad("not an entry's name".into()));
    };
    let mut buf = Vec::new();
    input
        .take(MAX_ENTRY_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| bad(format!("reading the entry: {e}")))?;
    if buf.len() as u64 > MAX_ENTRY_BYTES {
        return Err(bad("entry too large".into()));
    }
    let new: Entry =
        serde_json::from_slice(&buf).map_err(|e| bad(format!("unreadable entry: {e}")))?;
    if (new.job, new.step) != (job, step) {
        return Err(bad(format!("entry of job {}.{}", new.job, new.step)));
    }
    let path = dir.join(name);
    let entry = merge(new, read_entry(&path));
    let text = serde_json::to_vec_pretty(&entry).map_err(|e| bad(e.to_string()))?;
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(&text)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        fs::rename(&tmp, &path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io(&path, e)
    })
}

fn forget(dir: &Path, gone: &str) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        if parse_file_name(&e.file_name().to_string_lossy()).is_none() {
            continue;
        }
        let Some(entry) = read_entry(&e.path()) else {
            continue;
        };
        let under = entry
            .dir
            .strip_prefix(gone)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
        if under {
            let _ = fs::remove_file(e.path());
        }
    }
}

// ---- root's side: run the child ------------------------------------------------------------

/// Run `slurm-ckpt write-index` as the user; `input` goes to its stdin. Blocking, bounded by
/// `WRITE_TIMEOUT`.
pub fn run_child(creds: &Creds, dir: &Path, op: &ChildOp, input: &[u8]) -> Result<()> {
    use std::process::{Command, Stdio};
    let fail = |why: String| Error::IndexWrite {
        path: dir.to_path_buf(),
        why,
    };
    let exe = std::env::current_exe().map_err(|e| Error::io("/proc/self/exe", e))?;
    let mut cmd = Command::new(&exe);
    cmd.arg("write-index")
        .arg(format!("--uid={}", creds.uid))
        .arg(format!("--gid={}", creds.gid))
        .arg(format!("--dir={}", dir.display()));
    match op {
        ChildOp::Put { name } => cmd.arg(format!("--put={name}")),
        ChildOp::Forget { dir } => cmd.arg(format!("--forget-dir={dir}")),
    };
    let mut child = cmd
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io(&exe, e))?;
    if let Some(mut stdin) = child.stdin.take() {
        // Small (an entry): fits the pipe, so this does not wait on the child.
        let _ = stdin.write_all(input);
    }
    let start = Instant::now();
    loop {
        match child.try_wait().map_err(|e| Error::io(&exe, e))? {
            Some(status) if status.success() => return Ok(()),
            Some(_) => {
                let mut err = String::new();
                if let Some(mut s) = child.stderr.take() {
                    let _ = (&mut s).take(4096).read_to_string(&mut err);
                }
                return Err(fail(err.trim().to_string()));
            }
            None if start.elapsed() > WRITE_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!("no answer within {WRITE_TIMEOUT:?}")));
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Rank 0's update: build the entry from the storage and `notes`, hand the user their index
/// directory, write the entry as the user. Blocking; errors are the caller's to log.
pub fn update(
    root: &Path,
    root_uid: u32,
    creds: &Creds,
    who: &Subject,
    layout: &Layout,
    notes: &Notes,
) -> Result<()> {
    let entry = build(who, layout, notes);
    let dir = prepare_dir(root, creds, root_uid)?;
    let text = serde_json::to_vec(&entry).map_err(|e| Error::IndexWrite {
        path: dir.clone(),
        why: e.to_string(),
    })?;
    let op = ChildOp::Put {
        name: file_name(who.job, who.step),
    };
    run_child(creds, &dir, &op, &text)
}

/// One line per generation of an entry (`status` for a user).
pub fn describe(e: &Entry) -> Vec<String> {
    let mut out = Vec::new();
    match e.generations.last() {
        Some(g) => out.push(format!(
            "last checkpoint {} ({}, {} bytes, {:.2}s): {}",
            gen_name(g.generation),
            crate::state::utc(g.created),
            g.bytes,
            g.seconds,
            g.state
        )),
        None => out.push("no checkpoint yet".into()),
    }
    if let Some(r) = &e.last_restore {
        out.push(format!(
            "restored from {} ({})",
            gen_name(r.generation),
            crate::state::utc(r.time)
        ));
    }
    if let Some(f) = &e.last_failure {
        let g = f
            .generation
            .map(|g| format!(" {}", gen_name(g)))
            .unwrap_or_default();
        out.push(format!(
            "{} failed{g} ({}): {}",
            f.what,
            crate::state::utc(f.time),
            f.reason
        ));
    }
    for r in &e.restore_refused {
        out.push(format!("restore refused: {r}"));
    }
    if let Some(end) = &e.ended {
        let code = end
            .exit_code
            .map(|c| format!(" with {c}"))
            .unwrap_or_default();
        out.push(format!("ended{code} ({})", crate::state::utc(end.time)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory removed when dropped.
    struct Scratch(PathBuf);
    impl Scratch {
        fn new(tag: &str) -> Self {
            let p =
                std::env::temp_dir().join(format!("slurm-ckpt-index-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir_all(&p).unwrap();
            Scratch(p)
        }
        fn path(&self) -> &Path {
            &self.0
        }
    }
    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn manifest(job: u32, g: u32) -> Manifest {
        serde_json::from_value(serde_json::json!({
            "format": 3, "job": job, "step": 0, "generation": g, "user": "u", "uid": 1, "gid": 1,
            "image": "i", "image_id": "x", "ntasks": 2, "mpi": "none", "argv": [],
            "instance": "0123456789abcdef0123456789abcdef", "cwd": "/", "policy": "freeze-all",
            "created": 5, "criu_version": "", "engine_version": "", "total_bytes": 42,
            "ranks": [], "checkpoint_seconds": 1.5
        }))
        .unwrap()
    }

    fn entry(job: u32, dir: &str, gens: &[(u32, u32)], updated: u64) -> Entry {
        Entry {
            job,
            step: 0,
            user: "u".into(),
            dir: dir.into(),
            updated,
            generations: gens
                .iter()
                .map(|&(j, g)| {
                    generation_row(
                        format!("/c/u/{dir}/g{g}").into(),
                        &manifest(j, g),
                        None,
                        None,
                    )
                })
                .collect(),
            last_failure: None,
            last_restore: None,
            restore_refused: vec![],
            ended: None,
        }
    }

    #[test]
    fn generation_states_follow_the_closed_marker_of_their_instance() {
        let mut m = manifest(7, 2);
        assert_eq!(short_instance(&m), "01234567");
        let closed = Closed {
            instance: m.instance.clone(),
            job: 7,
            step: 0,
            time: 0,
            through: 2,
            exit_code: None,
        };
        assert_eq!(gen_state(&m, None, false), "restart point");
        assert_eq!(gen_state(&m, Some(&closed), false), "closed");
        assert_eq!(gen_state(&m, None, true), "set aside");
        m.generation = 3;
        assert_eq!(gen_state(&m, Some(&closed), false), "restart point");
        m.generation = 1;
        m.instance = None;
        assert_eq!(short_instance(&m), "-");
        assert_eq!(gen_state(&m, Some(&closed), false), "restart point");
    }

    #[test]
    fn a_row_says_why_a_generation_was_set_aside() {
        let bad = BadGeneration {
            generation: 3,
            job: 7,
            reason: "criu restore: boom".into(),
            time: 9,
        };
        let r = generation_row("/p".into(), &manifest(7, 3), None, Some(&bad));
        assert_eq!(r.state, "set aside");
        assert_eq!(r.set_aside.as_deref(), Some("criu restore: boom"));
        assert_eq!((r.ranks, r.bytes, r.instance.as_str()), (2, 42, "01234567"));
    }

    #[test]
    fn file_names_are_canonical() {
        assert_eq!(file_name(7, 0), "7.json");
        assert_eq!(file_name(7, 2), "7.step-2.json");
        assert_eq!(parse_file_name("7.json"), Some((7, 0)));
        assert_eq!(parse_file_name("7.step-2.json"), Some((7, 2)));
        for bad in [
            "007.json",
            "7.step-0.json",
            "7.step-02.json",
            "../7.json",
            "x.json",
            ".7.json.1.tmp",
            "7.json.tmp",
            "",
        ] {
            assert_eq!(parse_file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn root_hands_only_its_own_directory_to_the_user() {
        assert_eq!(judge_owner(0, 0, 1000), Ok(OwnerAction::Hand));
        assert_eq!(judge_owner(1000, 0, 1000), Ok(OwnerAction::Keep));
        assert!(judge_owner(1001, 0, 1000).is_err());
    }

    #[test]
    fn a_new_entry_keeps_the_last_failure_of_an_earlier_run() {
        let mut old = entry(7, "7", &[(7, 1)], 1);
        old.last_failure = Some(Failure {
            what: "checkpoint".into(),
            generation: Some(2),
            reason: "disk full".into(),
            time: 3,
        });
        let new = entry(7, "7", &[(7, 1), (7, 3)], 4);
        let m = merge(new.clone(), Some(old.clone()));
        assert_eq!(m.last_failure, old.last_failure);
        assert_eq!(m.generations.len(), 2);
        // Another job's entry is not merged.
        let other = entry(8, "7", &[], 4);
        assert_eq!(merge(other, Some(old)).last_failure, None);
    }

    #[test]
    fn rows_show_each_generation_once_and_filter_by_job() {
        // Job 9 resumed from job 7's directory: both entries list generation 1.
        let a = entry(7, "run", &[(7, 1)], 1);
        let b = entry(9, "run", &[(7, 1), (9, 2)], 2);
        let c = entry(8, "8", &[(8, 1)], 3);
        let all = [a, b, c];
        let r = rows(&all, None);
        let got: Vec<_> = r
            .iter()
            .map(|(e, g)| (e.job, g.job, g.generation))
            .collect();
        assert_eq!(got, vec![(9, 7, 1), (8, 8, 1), (9, 9, 2)]);
        let r = rows(&all, Some(9));
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].1.generation, 2);
    }

    #[test]
    fn put_and_forget_in_a_directory() {
        let d = Scratch::new("put");
        let e = entry(7, "run", &[(7, 1)], 1);
        let text = serde_json::to_vec(&e).unwrap();
        put(d.path(), "7.json", &text[..]).unwrap();
        let mode = fs::metadata(d.path().join("7.json")).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // The name must match the entry.
        assert!(put(d.path(), "8.json", &text[..]).is_err());
        assert!(put(d.path(), "../7.json", &text[..]).is_err());
        let mut s = entry(7, "run/step-1", &[], 1);
        s.step = 1;
        put(
            d.path(),
            "7.step-1.json",
            &serde_json::to_vec(&s).unwrap()[..],
        )
        .unwrap();
        put(
            d.path(),
            "8.json",
            &serde_json::to_vec(&entry(8, "running", &[], 1)).unwrap()[..],
        )
        .unwrap();
        assert_eq!(read_all(d.path()).unwrap().len(), 3);
        forget(d.path(), "run");
        let left = read_all(d.path()).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].dir, "running");
    }

    #[test]
    fn squashed_root_makes_a_sticky_index_top_and_leaves_the_users_dir_to_the_child() {
        let root = Scratch::new("squash");
        let me = nix::unistd::geteuid().as_raw();
        let creds = Creds {
            name: "u".into(),
            uid: 4242,
            gid: 4242,
        };
        // Root squashed to `me` (the test cannot be squashed for real).
        let top = root.path().join(".users");
        let dir = match me {
            0 => {
                // As root: the top belongs to another account than the squashed root's → refused.
                fs::create_dir(&top).unwrap();
                std::os::unix::fs::chown(&top, Some(77), None).unwrap();
                assert!(prepare_dir(root.path(), &creds, 4343).is_err());
                std::os::unix::fs::chown(&top, Some(4343), None).unwrap();
                prepare_dir(root.path(), &creds, 4343).unwrap()
            }
            _ => prepare_dir(root.path(), &creds, me).unwrap(),
        };
        assert_eq!(dir, top.join("u"));
        assert_eq!(fs::metadata(&top).unwrap().mode() & 0o7777, 0o1733);
        assert!(!dir.exists(), "root does not make the user's directory");
        // Another user's directory (uid is not 4242) or a symlink of that name is moved aside.
        let squatted = || {
            fs::read_dir(&top)
                .unwrap()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(".squatted-u-"))
                .count()
        };
        fs::create_dir(&dir).unwrap();
        let squash = if me == 0 { 4343 } else { me };
        assert_eq!(prepare_dir(root.path(), &creds, squash).unwrap(), dir);
        assert!(!dir.exists() && squatted() == 1);
        std::os::unix::fs::symlink("/tmp", &dir).unwrap();
        prepare_dir(root.path(), &creds, squash).unwrap();
        assert!(fs::symlink_metadata(&dir).is_err() && squatted() == 2);
        // The user's own directory stays.
        if me == 0 {
            fs::create_dir(&dir).unwrap();
            std::os::unix::fs::chown(&dir, Some(4242), None).unwrap();
            prepare_dir(root.path(), &creds, squash).unwrap();
            assert!(dir.is_dir() && squatted() == 2);
        }
    }

    #[test]
    fn prepare_dir_hands_the_directory_over_once() {
        let root = Scratch::new("prep");
        let me = nix::unistd::geteuid().as_raw();
        let creds = Creds {
            name: "u".into(),
            uid: me,
            gid: nix::unistd::getegid().as_raw(),
        };
        if me == 0 {
            // As root the test would hand the directory to root: no index for root.
            assert!(prepare_dir(root.path(), &creds, 0).is_err());
            return;
        }
        let dir = prepare_dir(root.path(), &creds, 0).unwrap();
        assert_eq!(dir, root.path().join(".users/u"));
        let top = fs::metadata(root.path().join(".users")).unwrap();
        assert_eq!(top.mode() & 0o7777, 0o711);
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o7777, 0o700);
        // Again: nothing to do.
        prepare_dir(root.path(), &creds, 0).unwrap();
        // A symlink in place of the user's directory is refused, not followed.
        let evil = Creds {
            name: "v".into(),
            ..creds.clone()
        };
        std::os::unix::fs::symlink("/tmp", root.path().join(".users/v")).unwrap();
        assert!(prepare_dir(root.path(), &evil, 0).is_err());
        for name in ["", ".x", "a/b"] {
            let c = Creds {
                name: name.into(),
                ..creds.clone()
            };
            assert!(prepare_dir(root.path(), &c, 0).is_err(), "{name}");
        }
    }

    #[test]
    fn describe_says_the_last_checkpoint_and_failure() {
        let mut e = entry(7, "7", &[(7, 1)], 1);
        e.last_failure = Some(Failure {
            what: "checkpoint".into(),
            generation: Some(2),
            reason: "disk full".into(),
            time: 3,
        });
        let lines = describe(&e).join("\n");
        assert!(lines.contains("last checkpoint g0001"), "{lines}");
        assert!(lines.contains("checkpoint failed g0002"), "{lines}");
        assert!(lines.contains("disk full"), "{lines}");
    }
}
