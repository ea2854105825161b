//! `slurm-ckpt list [JOBID]` and `slurm-ckpt gc`: the checkpoint generations on the shared storage
//! (root: the per-user areas are root-only).
use slurm_ckpt::ckpt::{Closed, Layout, Manifest};
use slurm_ckpt::gc;
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

/// Every job directory: (user, dir name, layout).
pub(super) fn job_dirs(root: &Path) -> Vec<(String, String, Layout)> {
    let mut out = Vec::new();
    let Ok(users) = std::fs::read_dir(root) else {
        return out;
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
    out
}

pub fn list(a: ListArgs) -> i32 {
    super::init_tracing(None);
    super::exit_code("list", run_list(&a))
}

/// A generation's state for its own job instance: `closed` once that job ended normally (its
/// directory's closed marker covers it), `set aside` after its restore failed (site
/// `on_restore_failure=previous`), else a `restart point` for a requeue of that job.
fn gen_state(m: &Manifest, closed: Option<&Closed>, bad: bool) -> &'static str {
    if bad {
        "set aside"
    } else if closed.is_some_and(|c| c.covers(m.instance.as_deref(), m.generation)) {
        "closed"
    } else {
        "restart point"
    }
}

/// The instance as the table shows it: its first 8 digits, `-` for none.
fn short_instance(m: &Manifest) -> &str {
    m.instance
        .as_deref()
        .map_or("-", slurm_ckpt_site::instance::short)
}

fn run_list(a: &ListArgs) -> anyhow::Result<()> {
    let site = super::site_config(&[], &a.plugstack)?;
    let mut rows = Vec::new();
    for (_, _, l) in job_dirs(&site.ckpt_root) {
        // For display, like the manifests: not authenticated.
        let closed = l.closed_unverified();
        for g in l.generations() {
            if let Ok(m) = l.load_manifest(g) {
                if a.job.is_none_or(|j| j == m.job) {
                    let bad = l.bad_unverified(g);
                    let state = gen_state(&m, closed.as_ref(), bad.is_some());
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
    println!(
        "{:>8} {:<10} {:>5} {:>6} {:>12} {:>8} {:>8} {:<12} {:<9} {:<13} PATH",
        "JOB", "USER", "GEN", "RANKS", "BYTES", "SECONDS", "HELD", "POLICY", "INSTANCE", "STATE"
    );
    for (p, m, state, bad) in &rows {
        // The job's held time is its slowest rank's: the cut needs every rank dumped.
        let held = m.ranks.iter().map(|r| r.held_seconds).fold(0.0, f64::max);
        println!(
            "{:>8} {:<10} {:>5} {:>6} {:>12} {:>8.2} {:>8.2} {:<12} {:<9} {:<13} {}",
            m.job,
            m.user,
            m.generation,
            m.ntasks,
            m.total_bytes,
            m.checkpoint_seconds,
            held,
            m.policy,
            short_instance(m),
            state,
            p.display()
        );
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
    fn generation_states_follow_the_closed_marker_of_their_instance() {
        let mut m: Manifest = serde_json::from_value(serde_json::json!({
            "format": 3, "job": 7, "step": 0, "generation": 2, "user": "u", "uid": 1, "gid": 1,
            "image": "i", "image_id": "x", "ntasks": 1, "mpi": "none", "argv": [],
            "instance": "0123456789abcdef0123456789abcdef", "cwd": "/", "policy": "freeze-all",
            "created": 0, "criu_version": "", "engine_version": "", "total_bytes": 0, "ranks": []
        }))
        .unwrap();
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
}
