//! `slurm-ckpt list [JOBID]` and `slurm-ckpt gc`: the checkpoint generations on the shared storage
//! (root: the per-user areas are root-only).
use slurm_ckpt::ckpt::Layout;
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
    #[arg(long, default_value = "/etc/slurm/plugstack.conf")]
    plugstack: std::path::PathBuf,
}

/// Every job directory: (user, dir name, layout).
fn job_dirs(root: &Path) -> Vec<(String, String, Layout)> {
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

fn run_list(a: &ListArgs) -> anyhow::Result<()> {
    let site = super::site_config(&[], &a.plugstack)?;
    let mut rows = Vec::new();
    for (_, _, l) in job_dirs(&site.ckpt_root) {
        for g in l.generations() {
            if let Ok(m) = l.load_manifest(g) {
                if a.job.is_none_or(|j| j == m.job) {
                    rows.push((l.gen_dir(g), m));
                }
            }
        }
    }
    if a.json {
        let v: Vec<_> = rows
            .iter()
            .map(|(p, m)| serde_json::json!({"path": p, "manifest": m}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "{:>8} {:<10} {:>5} {:>6} {:>12} {:<12} PATH",
        "JOB", "USER", "GEN", "RANKS", "BYTES", "POLICY"
    );
    for (p, m) in &rows {
        println!(
            "{:>8} {:<10} {:>5} {:>6} {:>12} {:<12} {}",
            m.job,
            m.user,
            m.generation,
            m.ntasks,
            m.total_bytes,
            m.policy,
            p.display()
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
    for d in &dirs {
        match gc::decide(d, &marked, &active, &mut slurm) {
            gc::Verdict::Live { why, .. } => {
                println!("keeping {}: {why}", d.path.display());
                if let Some(keep) = a.keep {
                    let layout = Layout::new(root, &d.user, &d.name);
                    for g in gc::old_generations(&layout, keep as usize) {
                        println!("{verb} {}: older than the newest {keep}", g.display());
                        remove(&g, a.dry_run);
                    }
                }
            }
            gc::Verdict::Unsure(why) => println!("keeping {}: {why}", d.path.display()),
            gc::Verdict::Remove(why) => {
                println!("{verb} {}: {why}", d.path.display());
                remove(&d.path, a.dry_run);
            }
        }
    }
    Ok(())
}

fn remove(path: &Path, dry_run: bool) {
    if dry_run {
        return;
    }
    if let Err(e) = std::fs::remove_dir_all(path) {
        eprintln!("slurm-ckpt gc: {}: {e}", path.display());
    }
}
