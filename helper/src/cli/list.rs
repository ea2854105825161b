//! `slurm-ckpt list [JOBID]` and `slurm-ckpt gc`: the checkpoint generations on the shared storage
//! (root: the per-user areas are root-only; a user's `list` reads their own index, user_index.rs).
use slurm_ckpt::ckpt::Layout;
use slurm_ckpt::gc;
use slurm_ckpt::user_index::{self, Generation};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

#[derive(clap::Args)]
pub struct ListArgs {
    job: Option<u32>,
    #[arg(long)]
    json: bool,
    #[arg(long, default_value = "/etc/slurm/plugstack.conf")]
    plugstack: std::path::PathBuf,
}

#[derive(clap::Args)]
pub struct GcArgs {
    /// Also prune the complete generations of jobs Slurm still knows down to this many newest
    /// (by default their directories are not touched at all).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    keep: Option<u32>,
    /// Say what would be removed, remove nothing.
    #[arg(long)]
    dry_run: bool,
    /// One JSON list of what was kept and removed (path, action, why) instead of lines.
    #[arg(long)]
    json: bool,
    #[arg(long, default_value = "/etc/slurm/plugstack.conf")]
    plugstack: std::path::PathBuf,
}

/// Every job directory: (user, dir name, layout). A checkpoint root that cannot be listed is an
/// error (a client cut off from its server says "not connected"), never "no checkpoints".
pub(super) fn job_dirs(root: &Path) -> slurm_ckpt::Result<Vec<(String, String, Layout)>> {
    let mut out = Vec::new();
    let users = match std::fs::read_dir(root) {
        Ok(u) => u,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(slurm_ckpt::Error::io(root, e)),
    };
    for u in users.flatten() {
        let user = u.file_name().to_string_lossy().into_owned();
        if user.starts_with('.') || !u.path().is_dir() {
            continue;
        }
        let Ok(jobs) = std::fs::read_dir(u.path()) else {
            continue;
        };
        for j in jobs.flatten() {
            let dir = j.file_name().to_string_lossy().into_owned();
            // Steps > 0 of a script keep their generations in `<dir>/step-<S>` (steps.rs).
            for s in std::fs::read_dir(j.path()).into_iter().flatten().flatten() {
                let step = s.file_name().to_string_lossy().into_owned();
                if step.starts_with(slurm_ckpt::steps::STEP_PREFIX) && s.path().is_dir() {
                    let sub = format!("{dir}/{step}");
                    out.push((user.clone(), sub.clone(), Layout::new(root, &user, &sub)));
                }
            }
            out.push((user.clone(), dir.clone(), Layout::new(root, &user, &dir)));
        }
    }
    out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    Ok(out)
}

pub fn list(a: ListArgs) -> i32 {
    super::init_tracing(None);
    super::exit_code("list", run_list(&a))
}

fn run_list(a: &ListArgs) -> anyhow::Result<()> {
    let site = super::site_config(&[], &a.plugstack)?;
    super::exit_if_storage_hangs(
        "list",
        &site.ckpt_root,
        std::time::Duration::from_secs(site.timeout_secs),
    );
    if !nix::unistd::geteuid().is_root() {
        return run_user_list(a, &site.ckpt_root);
    }
    let mut rows = Vec::new();
    for (_, _, l) in job_dirs(&site.ckpt_root)? {
        // For display, like the manifests: not authenticated.
        let closed = l.closed_unverified();
        for g in l.generations() {
            if let Ok(m) = l.load_manifest(g) {
                if a.job.is_none_or(|j| j == m.job) {
                    let bad = l.bad_unverified(g);
                    let state = user_index::gen_state(&m, closed.as_ref(), bad.is_some());
                    rows.push((l.gen_dir(g), m, state, bad));
                }
            }
        }
    }
    // Why nodes could not restore a job (kept in its checkpoint directory).
    let mut refused: HashMap<u32, Vec<String>> = HashMap::new();
    for (p, m, _, _) in &rows {
        if let Some(dir) = p.parent() {
            let list = refused.entry(m.job).or_default();
            for r in slurm_ckpt::compat::refusals(dir) {
                let line = format!("{} ({})", r.reason, slurm_ckpt::state::utc(r.at));
                if !list.contains(&line) {
                    list.push(line);
                }
            }
        }
    }
    if a.json {
        let v: Vec<_> = rows
            .iter()
            .map(|(p, m, state, bad)| {
                serde_json::json!({"path": p, "state": state, "manifest": m, "set_aside": bad,
                    "restore_refused": refused.get(&m.job)})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    print_header();
    for (p, m, state, bad) in &rows {
        let row = user_index::generation_row(p.clone(), m, None, bad.as_ref());
        print_row(&m.user, &row, state);
        if let Some(b) = bad {
            println!("{:>8} set aside: {}", "", b.reason);
        }
    }
    let mut jobs: Vec<_> = refused.iter().filter(|(_, w)| !w.is_empty()).collect();
    jobs.sort();
    for (job, whys) in jobs {
        for why in whys {
            println!("job {job}: restore refused: {why}");
        }
    }
    Ok(())
}

fn print_header() {
    println!(
        "{:>8} {:<10} {:>5} {:>6} {:>12} {:>8} {:>8} {:<12} {:<9} {:<13} PATH",
        "JOB", "USER", "GEN", "RANKS", "BYTES", "SECONDS", "HELD", "POLICY", "INSTANCE", "STATE"
    );
}

fn print_row(user: &str, g: &Generation, state: &str) {
    println!(
        "{:>8} {:<10} {:>5} {:>6} {:>12} {:>8.2} {:>8.2} {:<12} {:<9} {:<13} {}",
        g.job,
        user,
        g.generation,
        g.ranks,
        g.bytes,
        g.seconds,
        g.held,
        g.policy,
        g.instance,
        state,
        g.path.display()
    );
}

/// A user's `list`: their own index (`<ckpt_root>/.users/<user>`, written by their jobs' rank 0
/// as them), never the root-only checkpoint areas. Same table as root's.
fn run_user_list(a: &ListArgs, root: &Path) -> anyhow::Result<()> {
    let uid = nix::unistd::getuid();
    let user = nix::unistd::User::from_uid(uid)?
        .ok_or_else(|| anyhow::anyhow!("user id {uid} has no passwd entry"))?;
    let dir = user_index::index_dir(root, &user.name);
    let entries = match user_index::read_all(&dir) {
        Ok(e) => e,
        // No job of this user has checkpointed yet (or the site's helper predates the index).
        Err(slurm_ckpt::Error::Io { err, .. }) if err.kind() == std::io::ErrorKind::NotFound => {
            vec![]
        }
        Err(e) => return Err(e.into()),
    };
    let entries: Vec<_> = entries
        .into_iter()
        .filter(|e| {
            a.job
                .is_none_or(|j| e.job == j || e.generations.iter().any(|g| g.job == j))
        })
        .collect();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(());
    }
    print_header();
    for (e, g) in user_index::rows(&entries, a.job) {
        print_row(&e.user, g, &g.state);
        if let Some(why) = &g.set_aside {
            println!("{:>8} set aside: {why}", "");
        }
    }
    for e in entries.iter().filter(|e| a.job.is_none_or(|j| j == e.job)) {
        if let Some(f) = &e.last_failure {
            let g = f
                .generation
                .map(|g| format!(" {}", slurm_ckpt::ckpt::gen_name(g)))
                .unwrap_or_default();
            println!(
                "job {}: {} failed{g} ({}): {}",
                e.job,
                f.what,
                slurm_ckpt::state::utc(f.time),
                f.reason
            );
        }
        for why in &e.restore_refused {
            println!("job {}: restore refused: {why}", e.job);
        }
    }
    if entries.is_empty() && a.job.is_some() {
        eprintln!(
            "slurm-ckpt list: no checkpoints of that job in your index ({})",
            dir.display()
        );
    }
    Ok(())
}

pub fn gc(a: GcArgs) -> i32 {
    super::init_tracing(None);
    super::exit_code("gc", run_gc(&a))
}

/// Decide about every job directory first (`slurm_ckpt::gc::decide`), then act and say why.
fn run_gc(a: &GcArgs) -> anyhow::Result<()> {
    let site = super::site_config(&[], &a.plugstack)?;
    let root = &site.ckpt_root;
    let dirs = gc::scan(root)?;
    let active = gc::active_jobs(root)?;
    let marked: BTreeSet<u32> = dirs
        .iter()
        .flat_map(|d| d.marker_jobs.iter().copied())
        .collect();
    let mut cache: HashMap<u32, gc::JobStatus> = HashMap::new();
    let mut slurm = |j: u32| *cache.entry(j).or_insert_with(|| gc::slurm_status(j));
    let verb = if a.dry_run {
        "would remove"
    } else {
        "removing"
    };
    let mut done: Vec<serde_json::Value> = Vec::new();
    // A line as it happens, or one JSON list at the end.
    let mut say = |verb: &str, path: &Path, why: String| {
        if a.json {
            done.push(serde_json::json!({"path": path, "action": verb, "why": why}));
        } else {
            println!("{verb} {}: {why}", path.display());
        }
    };
    for d in &dirs {
        match gc::decide(d, &marked, &active, &mut slurm) {
            gc::Verdict::Live { why, .. } => {
                say("keeping", &d.path, format!("{why}{}", d.closed_note()));
                if let Some(keep) = a.keep {
                    let layout = Layout::new(root, &d.user, &d.name);
                    for g in gc::old_generations(&layout, keep as usize) {
                        say(verb, &g, format!("older than the newest {keep}"));
                        remove(&g, a.dry_run);
                    }
                }
            }
            gc::Verdict::Unsure(why) => {
                say("keeping", &d.path, format!("{why}{}", d.closed_note()))
            }
            gc::Verdict::Remove(why) => {
                say(verb, &d.path, format!("{why}{}", d.closed_note()));
                remove(&d.path, a.dry_run);
                if !a.dry_run {
                    forget_in_index(root, &d.user, &d.name);
                }
            }
        }
    }
    // Leases after the directories: a job whose last generation was just removed is free now.
    reclaim_leases(root, &site.key_file, a.dry_run, &mut slurm, &mut say);
    if a.json && super::print_json(&done) != 0 {
        anyhow::bail!("cannot print the result");
    }
    Ok(())
}

/// Address leases of jobs Slurm answered it does not know, with no generation left.
fn reclaim_leases(
    root: &Path,
    key_file: &Path,
    dry_run: bool,
    slurm: &mut impl FnMut(u32) -> gc::JobStatus,
    say: &mut impl FnMut(&str, &Path, String),
) {
    let key = match slurm_ckpt::site_secret::read(key_file) {
        Ok(s) => slurm_ckpt::auth::SiteKey::derive(&s),
        Err(e) => {
            eprintln!("slurm-ckpt gc: address leases not checked: {e}");
            return;
        }
    };
    let store = slurm_ckpt::lease::Store::new(root);
    for l in store.stale(&key, |j| slurm(j) == gc::JobStatus::Gone) {
        let why = format!(
            "address lease of job {} ({} addresses from {}): Slurm no longer knows the job and no generation of it is left",
            l.job, l.size, l.first
        );
        if dry_run {
            say("would release", &store.pointer(l.job), why);
            continue;
        }
        match store.remove(&l) {
            Ok(true) => say("released", &store.pointer(l.job), why),
            Ok(false) => {}
            Err(e) => eprintln!("slurm-ckpt gc: {e}"),
        }
    }
}

/// The user's own index forgets a removed directory: done by `write-index` as the user, never
/// by root in the user's directory (user_index.rs). Best effort: a stale entry only misleads
/// its own user until their next job in that directory.
fn forget_in_index(root: &Path, user: &str, dir: &str) {
    let index = user_index::index_dir(root, user);
    if !index.is_dir() {
        return;
    }
    let creds = match nix::unistd::User::from_name(user) {
        Ok(Some(u)) if !u.uid.is_root() => slurm_ckpt::user_paths::Creds {
            name: user.to_string(),
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
        },
        _ => return,
    };
    let op = user_index::ChildOp::Forget {
        dir: dir.to_string(),
    };
    if let Err(e) = user_index::run_child(&creds, &index, &op, &[]) {
        eprintln!("slurm-ckpt gc: {e}");
    }
}

fn remove(path: &Path, dry_run: bool) {
    if dry_run {
        return;
    }
    if let Err(e) = std::fs::remove_dir_all(path) {
        eprintln!("slurm-ckpt gc: {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_root_that_cannot_be_listed_is_an_error_not_nothing() {
        let d = tempfile::tempdir().expect("temp dir");
        assert!(job_dirs(&d.path().join("none")).expect("absent").is_empty());
        let file = d.path().join("file");
        std::fs::write(&file, b"").expect("file");
        let e = job_dirs(&file).expect_err("not a directory");
        assert!(e.to_string().contains("file"), "{e}");
        std::fs::create_dir_all(d.path().join("u/7/g0001")).expect("dirs");
        let dirs = job_dirs(d.path()).expect("listed");
        assert_eq!(dirs.len(), 1);
        assert_eq!((dirs[0].0.as_str(), dirs[0].1.as_str()), ("u", "7"));
    }
}
