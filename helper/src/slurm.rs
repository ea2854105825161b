//! The few Slurm commands the supervisor needs (as root, on a compute node): signalling a step
//! and turning a preemption into a requeue once the job is safely checkpointed.
use crate::error::{Error, Result};
use futures_util::future::BoxFuture;
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

/// Whether a job in Slurm state `state` may still run (or run again) containers: anything but
/// an end state.
pub fn is_live_state(state: &str) -> bool {
    !matches!(
        state,
        "COMPLETED"
            | "CANCELLED"
            | "FAILED"
            | "TIMEOUT"
            | "NODE_FAIL"
            | "PREEMPTED"
            | "BOOT_FAIL"
            | "DEADLINE"
            | "OUT_OF_MEMORY"
    )
}

/// The state of `job` if Slurm knows it in a live state (`is_live_state`); None when it has
/// ended, is unknown to Slurm, or Slurm cannot be asked (then said in the log).
pub async fn live_state(job: u32) -> Option<String> {
    let o = run("scontrol", &["-o", "show", "job", &job.to_string()]).await?;
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        if !err.contains("Invalid job id") {
            tracing::warn!("scontrol show job {job}: {}", err.trim());
        }
        return None;
    }
    let fields = parse_oneliner(&String::from_utf8_lossy(&o.stdout));
    fields.get("JobState").filter(|s| is_live_state(s)).cloned()
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

/// What the supervisor asks of Slurm about its own job when a node cannot restore it: a seam so
/// the restore sequence runs against a fake in unit tests.
pub trait JobControl: Send + Sync {
    /// Keep the job off `node` from now on and requeue it; returns the job's new excluded nodes.
    fn exclude_and_requeue<'a>(
        &'a self,
        job: u32,
        node: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>>>;
}

/// The real Slurm, through scontrol.
pub struct Scontrol;

impl JobControl for Scontrol {
    fn exclude_and_requeue<'a>(
        &'a self,
        job: u32,
        node: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(exclude_node_and_requeue(job, node))
    }
}

/// How a job's node lists change to keep it off `node`: `node` joins the excluded nodes, and
/// leaves the required ones (a job that requires a node it also excludes would never run again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exclusion {
    pub exclude: Vec<String>,
    /// The new required nodes, when `node` was one of them.
    pub require: Option<Vec<String>>,
}

pub fn exclusion(excluded: &[String], required: &[String], node: &str) -> Exclusion {
    let mut exclude = excluded.to_vec();
    if !exclude.iter().any(|n| n == node) {
        exclude.push(node.to_string());
    }
    let require = required
        .iter()
        .any(|n| n == node)
        .then(|| required.iter().filter(|n| *n != node).cloned().collect());
    Exclusion { exclude, require }
}

/// A node list of `scontrol show job` as node names: `(null)` is none; bracketed ranges are
/// expanded by `scontrol show hostnames`.
async fn node_names(list: Option<&String>) -> Result<Vec<String>> {
    let Some(list) = list.filter(|l| !l.is_empty() && *l != "(null)") else {
        return Ok(Vec::new());
    };
    if !list.contains('[') {
        return Ok(list.split(',').map(String::from).collect());
    }
    let out = checked("scontrol", &["show", "hostnames", list]).await?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect())
}

/// `run`, with a failure or no answer as an error.
async fn checked(cmd: &str, args: &[&str]) -> Result<std::process::Output> {
    let command = format!("{cmd} {}", args.join(" "));
    match run(cmd, args).await {
        Some(o) if o.status.success() => Ok(o),
        Some(o) => Err(Error::SlurmCommand {
            command,
            stderr: String::from_utf8_lossy(&o.stderr).trim().to_string(),
        }),
        None => Err(Error::SlurmUnanswered { command }),
    }
}

/// Requeue the job, then add `node` to its excluded nodes (and drop it from its required ones):
/// it restarts from the same checkpoint on other nodes. In this order because Slurm changes the
/// node lists of pending jobs only (ESLURM_JOB_NOT_PENDING otherwise); right after the requeue the
/// job is PENDING (still COMPLETING) and its begin time is delayed by the credential lifetime, so
/// the update comes before it can start again. The lists are read just before the
/// update, so a node another rank excluded a moment earlier is kept.
pub async fn exclude_node_and_requeue(job: u32, node: &str) -> Result<Vec<String>> {
    let id = job.to_string();
    checked("scontrol", &["requeue", &id]).await?;
    let mut tries = 0;
    let plan = loop {
        tries += 1;
        match update_excluded(job, node).await {
            Ok(plan) => break plan,
            // Still completing its requeue on slurmctld's side: try again shortly.
            Err(e) if tries < 5 => {
                tracing::warn!(job, node, "excluding the node: {e}; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e),
        }
    };
    tracing::info!(
        job,
        node,
        excluded = %plan.exclude.join(","),
        "job requeued with the incompatible node excluded"
    );
    Ok(plan.exclude)
}

/// The job's preemption and requeue windows and its nodes (`scontrol show job`, `show partition`,
/// `show config`).
pub async fn job_windows(job: u32) -> Result<(crate::window::Windows, Vec<String>)> {
    let out = checked("scontrol", &["-o", "show", "job", &job.to_string()]).await?;
    let j = parse_oneliner(&String::from_utf8_lossy(&out.stdout));
    let nodes = node_names(j.get("NodeList")).await?;
    let part = j.get("Partition").cloned().unwrap_or_default();
    let out = checked("scontrol", &["-o", "show", "partition", &part]).await?;
    let p = parse_oneliner(&String::from_utf8_lossy(&out.stdout));
    let config = checked("scontrol", &["show", "config"]).await?;
    let w = crate::window::Windows::parse(&p, &String::from_utf8_lossy(&config.stdout));
    Ok((w, nodes))
}

/// One read-modify-write of the job's node lists (see `exclusion`).
async fn update_excluded(job: u32, node: &str) -> Result<Exclusion> {
    let id = job.to_string();
    let out = checked("scontrol", &["-o", "show", "job", &id]).await?;
    let fields = parse_oneliner(&String::from_utf8_lossy(&out.stdout));
    let excluded = node_names(fields.get("ExcNodeList")).await?;
    let required = node_names(fields.get("ReqNodeList")).await?;
    let plan = exclusion(&excluded, &required, node);
    let job_arg = format!("JobId={job}");
    let exc_arg = format!("ExcNodeList={}", plan.exclude.join(","));
    let mut args = vec!["update", job_arg.as_str(), exc_arg.as_str()];
    let req_arg = plan
        .require
        .as_ref()
        .map(|r| format!("ReqNodeList={}", r.join(",")));
    if let Some(r) = &req_arg {
        args.push(r);
    }
    checked("scontrol", &args).await?;
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_incompatible_node_is_excluded_and_no_longer_required() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            exclusion(&[], &[], "node2"),
            Exclusion {
                exclude: s(&["node2"]),
                require: None
            }
        );
        assert_eq!(
            exclusion(&s(&["node9"]), &s(&["node2", "node3"]), "node2"),
            Exclusion {
                exclude: s(&["node9", "node2"]),
                require: Some(s(&["node3"]))
            }
        );
        // Already excluded (another rank on the same node was first): unchanged.
        assert_eq!(
            exclusion(&s(&["node2"]), &[], "node2").exclude,
            s(&["node2"])
        );
    }

    #[test]
    fn only_end_states_are_not_live() {
        for s in [
            "PENDING",
            "RUNNING",
            "SUSPENDED",
            "COMPLETING",
            "REQUEUE_HOLD",
            "REQUEUED",
        ] {
            assert!(is_live_state(s), "{s}");
        }
        for s in [
            "COMPLETED",
            "CANCELLED",
            "TIMEOUT",
            "FAILED",
            "NODE_FAIL",
            "PREEMPTED",
        ] {
            assert!(!is_live_state(s), "{s}");
        }
    }

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
