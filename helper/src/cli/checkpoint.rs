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

/// The generation number in a checkpoint event ("checkpoint g0007 complete" -> 7).
fn event_gen(what: &str) -> Option<u32> {
    what.strip_prefix("checkpoint g")?
        .split(' ')
        .next()?
        .parse()
        .ok()
}

/// The newest generation a rank has reported on (0: none yet).
fn last_gen(events: &[state::Event]) -> u32 {
    events
        .iter()
        .filter_map(|e| event_gen(&e.what))
        .max()
        .unwrap_or(0)
}

/// The outcome of a checkpoint newer than generation `after`, if the rank has reported one.
/// (Generations, not times: event times have one-second resolution, and a checkpoint requested
/// within a second of the previous one must not count the previous one.)
fn completed(events: &[state::Event], after: u32) -> Option<Result<String, String>> {
    events.iter().rev().find_map(|e| {
        if event_gen(&e.what)? <= after {
            return None;
        }
        if e.what.ends_with(" complete") {
            Some(Ok(e.what.clone()))
        } else if e.what.contains(" failed") {
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
        let before: std::collections::HashMap<u32, u32> = ranks
            .iter()
            .map(|r| (r.rank, last_gen(&r.events)))
            .collect();
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
            let results: Vec<_> = ranks
                .iter()
                .map(|r| completed(&r.events, before.get(&r.rank).copied().unwrap_or(0)))
                .collect();
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
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    super::exit_code("checkpoint", run())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(what: &str) -> state::Event {
        state::Event {
            at: 100,
            what: what.into(),
        }
    }

    #[test]
    fn only_newer_generations_count() {
        let evs = vec![ev("running"), ev("checkpoint g0001 complete")];
        assert_eq!(last_gen(&evs), 1);
        assert_eq!(completed(&evs, 1), None);
        assert_eq!(
            completed(&evs, 0),
            Some(Ok("checkpoint g0001 complete".into()))
        );
        let evs2 = vec![
            ev("checkpoint g0001 complete"),
            ev("checkpoint g0002 failed: disk full"),
        ];
        assert!(matches!(completed(&evs2, 1), Some(Err(_))));
        assert_eq!(event_gen("restored from g0003 (taken on node1)"), None);
        assert_eq!(last_gen(&[]), 0);
    }
}
