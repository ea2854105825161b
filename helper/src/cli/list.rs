//! `slurm-ckpt list [JOBID]` and `slurm-ckpt gc`: the checkpoint generations on the shared storage
//! (root: the per-user areas are root-only).
use slurm_ckpt::ckpt::{prune, Layout};
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
    /// Keep this many newest generations of jobs Slurm still knows.
    #[arg(long, default_value_t = 1)]
    keep: usize,
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

/// Is the job still known to Slurm (pending, running, suspended, requeued)?
fn job_alive(job: u32) -> bool {
    std::process::Command::new("squeue")
        .args(["-h", "-o", "%T", "-j", &job.to_string()])
        .output()
        .map(|o| o.status.success() && !String::from_utf8_lossy(&o.stdout).trim().is_empty())
        .unwrap_or(true) // when in doubt, keep
}

pub fn gc(a: GcArgs) -> i32 {
    super::init_tracing(None);
    super::exit_code("gc", run_gc(&a))
}

fn run_gc(a: &GcArgs) -> anyhow::Result<()> {
    let site = super::site_config(&[], &a.plugstack)?;
    for (user, dir, l) in job_dirs(&site.ckpt_root) {
        let job = l.latest().map(|m| m.job).or_else(|| dir.parse().ok());
        let alive = job.is_some_and(job_alive);
        if alive {
            if !a.dry_run {
                prune(&l, a.keep, None);
            }
            continue;
        }
        println!(
            "{}: job {} is gone: removing {user}/{dir}",
            if a.dry_run {
                "would remove"
            } else {
                "removing"
            },
            job.map(|j| j.to_string()).unwrap_or_else(|| "?".into())
        );
        if !a.dry_run {
            if let Err(e) = std::fs::remove_dir_all(&l.job_dir) {
                eprintln!("slurm-ckpt gc: {}: {e}", l.job_dir.display());
            }
        }
    }
    Ok(())
}
