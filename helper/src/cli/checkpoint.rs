//! `slurm-ckpt checkpoint JOBID [--requeue]`: ask a running container job for a checkpoint.
//! Slurm carries the request (and checks that the caller may signal the job): SIGUSR1 to the job's
//! steps makes every rank's relay ask its supervisor for a checkpoint that leaves the job running;
//! `--requeue` requeues the job, whose SIGTERM makes the supervisors checkpoint before it stops.
use slurm_ckpt::state;
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    job: u32,
    /// Checkpoint, stop and requeue the job (it restarts from this checkpoint).
    #[arg(long)]
    requeue: bool,
    /// Seconds to wait for every rank to report the checkpoint.
    #[arg(long, default_value_t = 300)]
    wait: u64,
    #[arg(long, default_value = "/etc/slurm/plugstack.conf")]
    plugstack: std::path::PathBuf,
}

fn completed(events: &[state::Event], since: u64) -> Option<Result<String, String>> {
    events.iter().rev().filter(|e| e.at >= since).find_map(|e| {
        if e.what.starts_with("checkpoint ") && e.what.ends_with(" complete") {
            Some(Ok(e.what.clone()))
        } else if e.what.starts_with("checkpoint ") && e.what.contains(" failed") {
            Some(Err(e.what.clone()))
        } else {
            None
        }
    })
}

pub fn main(a: Args) -> i32 {
    super::init_tracing(None);
    let run = || -> anyhow::Result<()> {
        let site = super::site_config(&[], &a.plugstack)?;
        let ranks = state::load_job(&site.ckpt_root, a.job)?;
        if ranks.is_empty() {
            anyhow::bail!("job {} has no running rank containers", a.job);
        }
        let since = state::now();
        let status = if a.requeue {
            Command::new("scontrol")
                .args(["requeue", &a.job.to_string()])
                .status()?
        } else {
            Command::new("scancel")
                .args(["--signal=USR1", &a.job.to_string()])
                .status()?
        };
        if !status.success() {
            anyhow::bail!("Slurm refused to signal job {} ({status})", a.job);
        }
        let end = Instant::now() + Duration::from_secs(a.wait);
        loop {
            let ranks = state::load_job(&site.ckpt_root, a.job)?;
            let results: Vec<_> = ranks.iter().map(|r| completed(&r.events, since)).collect();
            if let Some(Some(Err(e))) = results.iter().find(|r| matches!(r, Some(Err(_)))) {
                anyhow::bail!(
                    "job {}: {e} (the job keeps running from its previous state)",
                    a.job
                );
            }
            if !results.is_empty() && results.iter().all(|r| matches!(r, Some(Ok(_)))) {
                if let Some(Some(Ok(what))) = results.first() {
                    println!("job {}: {what} ({} ranks)", a.job, results.len());
                }
                return Ok(());
            }
            if Instant::now() >= end {
                anyhow::bail!(
                    "job {}: not every rank reported a checkpoint within {}s",
                    a.job,
                    a.wait
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    super::exit_code("checkpoint", run())
}
