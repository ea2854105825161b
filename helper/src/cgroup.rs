//! Leave the step's cgroup. Slurm signals, freezes and kills a step through its cgroup, which the
//! supervisor inherits from the task it was forked from: it would be frozen on `scontrol suspend`
//! while its container still has to be paused, and killed with the step before a checkpoint is
//! committed. The supervisor is root and moves itself out (it belongs to the product, like
//! dockerd, not to the job's processes):
//!
//! - cgroup v1 (proctrack/cgroup's freezer hierarchy): to the freezer hierarchy's root.
//! - cgroup v2 (Slurm ≥ 22.05's cgroup/v2 plugin, unified hierarchy; the step's tasks in
//!   `/system.slice/[<node>_]slurmstepd.scope/job_<J>/step_<S>/user/task_<T>`): to a cgroup of its
//!   own, `/slurm-ckpt`, below the root. Not the root itself, which systemd keeps for itself, and
//!   not an inner cgroup of the job's tree, which v2 forbids to hold processes once controllers
//!   are enabled below it ("no internal processes"). No controller is enabled there: the
//!   supervisor needs no limits, and the containers' CPU and memory limits are Docker's, in the
//!   daemon's own cgroups (cpu.max, memory.max, cpuset.cpus on v2), as is their freezing
//!   (`docker pause` is runc writing cgroup.freeze on v2).
use std::path::Path;

/// Name of the supervisors' own cgroup below the v2 root.
pub const V2_GROUP: &str = "slurm-ckpt";

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

/// Where this process sits in the unified (v2) hierarchy: the `0::PATH` line.
pub fn unified_path(proc_cgroup: &str) -> Option<String> {
    proc_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::").map(str::to_string))
}

/// A Slurm cgroup/v2 step cgroup, as its path names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlurmV2Cgroup {
    /// `slurmstepd.scope`, or `<node>_slurmstepd.scope` with several slurmd on one host.
    pub scope: String,
    pub job: u32,
    /// `step_0`, `step_batch`, `step_extern`, ...: the part after `step_`.
    pub step: Option<String>,
    pub task: Option<u32>,
}

/// The Slurm step cgroup `path` is in, if it is one (cgroup/v2 plugin layout).
pub fn slurm_v2_cgroup(path: &str) -> Option<SlurmV2Cgroup> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let i = parts.iter().position(|p| p.ends_with("slurmstepd.scope"))?;
    let job = parts.get(i + 1)?.strip_prefix("job_")?.parse().ok()?;
    let step = parts
        .get(i + 2)
        .and_then(|s| s.strip_prefix("step_"))
        .map(str::to_string);
    let task = parts
        .iter()
        .skip(i + 3)
        .find_map(|p| p.strip_prefix("task_")?.parse().ok());
    Some(SlurmV2Cgroup {
        scope: parts[i].to_string(),
        job,
        step,
        task,
    })
}

/// Move process `pid` out of the Slurm step cgroup it is in, given its /proc/PID/cgroup text and
/// the cgroup mount `root` (/sys/fs/cgroup). v1 when a freezer hierarchy is listed (hybrid hosts:
/// proctrack/cgroup uses it), else v2 when `root` is a unified hierarchy. Returns what was done,
/// for the log; None: not in a Slurm cgroup.
pub fn leave_step_cgroup(root: &Path, proc_cgroup: &str, pid: u32) -> Option<String> {
    if let Some(path) = freezer_path(proc_cgroup) {
        if !path.contains("slurm") {
            return None;
        }
        let procs = root.join("freezer").join("cgroup.procs");
        return Some(match std::fs::write(&procs, pid.to_string()) {
            Ok(()) => format!("left the step's freezer cgroup {path}"),
            Err(e) => format!("could not leave the step's freezer cgroup {path}: {e} (suspend may stop the supervisor)"),
        });
    }
    let path = unified_path(proc_cgroup)?;
    slurm_v2_cgroup(&path)?;
    if !root.join("cgroup.controllers").exists() {
        return None;
    }
    let dir = root.join(V2_GROUP);
    let moved = match std::fs::create_dir(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
        _ => std::fs::write(dir.join("cgroup.procs"), pid.to_string()),
    };
    Some(match moved {
        Ok(()) => format!("left the step's cgroup {path} for /{V2_GROUP}"),
        Err(e) => format!("could not leave the step's cgroup {path} for /{V2_GROUP}: {e} (suspend may stop the supervisor)"),
    })
}

/// `leave_step_cgroup` for this process, on this host.
pub fn leave_own_step_cgroup() -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    leave_step_cgroup(Path::new("/sys/fs/cgroup"), &text, std::process::id())
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

    #[test]
    fn reads_slurm_v2_step_paths() {
        let p = "/system.slice/node1_slurmstepd.scope/job_7/step_0/user/task_1";
        assert_eq!(
            slurm_v2_cgroup(p),
            Some(SlurmV2Cgroup {
                scope: "node1_slurmstepd.scope".into(),
                job: 7,
                step: Some("0".into()),
                task: Some(1),
            })
        );
        let stepd = slurm_v2_cgroup("/system.slice/slurmstepd.scope/job_12/step_batch/slurm");
        assert_eq!(
            stepd.map(|c| (c.job, c.step, c.task)),
            Some((12, Some("batch".into()), None))
        );
        assert_eq!(
            slurm_v2_cgroup("/system.slice/slurmstepd.scope/system"),
            None
        );
        assert_eq!(
            slurm_v2_cgroup("/user.slice/user-1000.slice/session-3.scope"),
            None
        );
        assert_eq!(
            unified_path("0::/system.slice/slurmstepd.scope/job_1/step_0/user/task_0\n").as_deref(),
            Some("/system.slice/slurmstepd.scope/job_1/step_0/user/task_0")
        );
    }

    /// A unified hierarchy laid out as Slurm's cgroup/v2 plugin lays it out.
    fn fake_v2(root: &Path, task_cgroup: &str) {
        std::fs::write(
            root.join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        let task = root.join(task_cgroup.trim_start_matches('/'));
        std::fs::create_dir_all(&task).unwrap();
        std::fs::write(task.join("cgroup.procs"), "4242\n").unwrap();
    }

    #[test]
    fn on_cgroup_v2_the_supervisor_moves_to_its_own_cgroup() {
        let tmp = tempfile::tempdir().unwrap();
        let task = "/system.slice/node1_slurmstepd.scope/job_7/step_0/user/task_0";
        fake_v2(tmp.path(), task);
        let text = format!("0::{task}\n");
        let done = leave_step_cgroup(tmp.path(), &text, 4242).unwrap();
        assert_eq!(
            done,
            format!("left the step's cgroup {task} for /slurm-ckpt")
        );
        let procs = std::fs::read_to_string(tmp.path().join("slurm-ckpt/cgroup.procs")).unwrap();
        assert_eq!(procs, "4242");
        // A second supervisor on the node: the cgroup exists already.
        assert!(leave_step_cgroup(tmp.path(), &text, 4243)
            .unwrap()
            .starts_with("left"));
        // Not in a Slurm step (started by hand): stays where it is.
        assert_eq!(
            leave_step_cgroup(tmp.path(), "0::/user.slice/x.scope\n", 1),
            None
        );
    }

    #[test]
    fn v1_and_hybrid_hosts_use_the_freezer_hierarchy() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("freezer")).unwrap();
        let hybrid = "6:freezer:/slurm/uid_2000/job_7/step_0\n0::/system.slice/slurmd.service\n";
        let done = leave_step_cgroup(tmp.path(), hybrid, 99).unwrap();
        assert!(done.starts_with("left the step's freezer cgroup"), "{done}");
        let procs = std::fs::read_to_string(tmp.path().join("freezer/cgroup.procs")).unwrap();
        assert_eq!(procs, "99");
        assert!(!tmp.path().join("slurm-ckpt").exists());
        // A v2 path but no unified hierarchy mounted there: nothing to do.
        let v2 = "0::/system.slice/slurmstepd.scope/job_7/step_0/user/task_0\n";
        assert_eq!(leave_step_cgroup(tmp.path(), v2, 99), None);
    }
}
