//! The few Slurm commands the supervisor needs (as root, on a compute node): signalling a step
//! and turning a preemption into a requeue once the job is safely checkpointed.
use std::collections::HashMap;
use std::time::Duration;

/// Run a Slurm command with a deadline; a hung slurmctld must not hang the supervisor.
async fn run(cmd: &str, args: &[&str]) -> Option<std::process::Output> {
    let child = tokio::process::Command::new(cmd)
        .args(args)
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(Duration::from_secs(30), child).await {
        Ok(Ok(out)) => Some(out),
        Ok(Err(e)) => {
            tracing::warn!("{cmd} {}: {e}", args.join(" "));
            None
        }
        Err(_) => {
            tracing::warn!("{cmd} {}: no answer in 30 s", args.join(" "));
            None
        }
    }
}

/// Signal every task of the step through Slurm, wherever it runs: USR2 when the launcher's
/// container ended (the other ranks end too), USR1 for a checkpoint. The relays turn it into frames.
pub async fn signal_step(job: u32, step: u32, sig: &str) {
    let target = format!("{job}.{step}");
    match run("scancel", &[&format!("--signal={sig}"), &target]).await {
        Some(o) if o.status.success() => {}
        Some(o) => tracing::warn!(
            "scancel --signal={sig} {target}: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        None => {}
    }
}

/// `scontrol -o show ...` output as key=value pairs (values never contain spaces in the fields
/// used here).
pub fn parse_oneliner(text: &str) -> HashMap<String, String> {
    text.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Whether a job that is being terminated is being preempted in a partition whose preemption
/// mode is REQUEUE, and is itself requeueable.
pub fn preempted_for_requeue(
    job: &HashMap<String, String>,
    partition: &HashMap<String, String>,
) -> bool {
    let preempted = job
        .get("PreemptTime")
        .is_some_and(|t| t != "None" && !t.is_empty());
    let requeueable = job.get("Requeue").is_some_and(|r| r == "1");
    let mode_requeue = partition
        .get("PreemptMode")
        .is_some_and(|m| m.split(',').any(|x| x.eq_ignore_ascii_case("REQUEUE")));
    preempted && requeueable && mode_requeue
}

/// Slurm ends a preempted job as FAILED or COMPLETED if its tasks exit within GraceTime, which
/// they do once their checkpoint is written. So after the checkpoint, requeue it ourselves: the
/// nodes are freed at once and the job restarts from the checkpoint later.
pub async fn requeue_if_preempted(job: u32) -> bool {
    let Some(out) = run("scontrol", &["-o", "show", "job", &job.to_string()]).await else {
        return false;
    };
    let j = parse_oneliner(&String::from_utf8_lossy(&out.stdout));
    let Some(part) = j.get("Partition").cloned() else {
        return false;
    };
    let Some(out) = run("scontrol", &["-o", "show", "partition", &part]).await else {
        return false;
    };
    let p = parse_oneliner(&String::from_utf8_lossy(&out.stdout));
    if !preempted_for_requeue(&j, &p) {
        return false;
    }
    match run("scontrol", &["requeue", &job.to_string()]).await {
        Some(o) if o.status.success() => {
            tracing::info!("job {job} was preempted: requeued after its checkpoint");
            true
        }
        Some(o) => {
            tracing::warn!(
                "scontrol requeue {job}: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            false
        }
        None => false,
    }
}

/// Put `text` into the job's Comment (what `scontrol show job` and `squeue -o %k` show).
pub async fn set_comment(job: u32, text: &str) {
    let arg = format!("Comment={text}");
    match run("scontrol", &["update", &format!("JobId={job}"), &arg]).await {
        Some(o) if !o.status.success() => tracing::warn!(
            "scontrol update JobId={job} Comment=...: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        _ => {}
    }
}

/// Requeue the job (`hold`: and hold it until released).
pub async fn requeue(job: u32, hold: bool) {
    let cmd = if hold { "requeuehold" } else { "requeue" };
    match run("scontrol", &[cmd, &job.to_string()]).await {
        Some(o) if o.status.success() => tracing::info!("job {job}: scontrol {cmd}"),
        Some(o) => tracing::warn!(
            "scontrol {cmd} {job}: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preemption_with_requeue_is_recognised() {
        let job = parse_oneliner("JobId=4 JobState=RUNNING Requeue=1 Restarts=0 PreemptTime=2026-11-25T18:34:10 Partition=lowrq");
        let part = parse_oneliner("PartitionName=lowrq PreemptMode=REQUEUE GraceTime=60");
        assert!(preempted_for_requeue(&job, &part));
        let cancel = parse_oneliner("PartitionName=x PreemptMode=CANCEL");
        assert!(!preempted_for_requeue(&job, &cancel));
        let not_preempted = parse_oneliner("JobId=4 Requeue=1 PreemptTime=None");
        assert!(!preempted_for_requeue(&not_preempted, &part));
        let no_requeue = parse_oneliner("JobId=4 Requeue=0 PreemptTime=2026-11-25T18:34:10");
        assert!(!preempted_for_requeue(&no_requeue, &part));
    }
}
