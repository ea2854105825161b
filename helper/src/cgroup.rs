//! Leave the step's freezer cgroup (cgroup v1). With proctrack/cgroup, Slurm signals and freezes a
//! step through its freezer cgroup, which the supervisor inherits from the task it was forked from:
//! it would be frozen on `scontrol suspend` while its container still has to be paused, and killed
//! with the step before a checkpoint is committed. The supervisor is root and moves itself to the
//! hierarchy's root (it belongs to the product, like dockerd, not to the job's processes).
use std::path::Path;

/// Where this process sits in the v1 freezer hierarchy, from /proc/self/cgroup text.
pub fn freezer_path(proc_cgroup: &str) -> Option<String> {
    proc_cgroup.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        ctrls
            .split(',')
            .any(|c| c == "freezer")
            .then(|| path.to_string())
    })
}

/// Move this process to the root of the freezer hierarchy mounted at `mount` if it is inside a
/// Slurm cgroup. Returns what was done, for the log.
pub fn leave_step_freezer(mount: &Path) -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = freezer_path(&text)?;
    if !path.contains("slurm") {
        return None;
    }
    let procs = mount.join("cgroup.procs");
    Some(match std::fs::write(&procs, std::process::id().to_string()) {
        Ok(()) => format!("left the step's freezer cgroup {path}"),
        Err(e) => format!("could not leave the step's freezer cgroup {path}: {e} (suspend may stop the supervisor)"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_freezer_line() {
        let t = "12:pids:/\n6:freezer:/slurm/uid_2000/job_7/step_0\n2:cpu,cpuacct:/\n";
        assert_eq!(
            freezer_path(t).as_deref(),
            Some("/slurm/uid_2000/job_7/step_0")
        );
        assert_eq!(freezer_path("0::/user.slice\n"), None);
    }
}
