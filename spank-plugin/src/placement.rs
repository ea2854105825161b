//! Which CPUs a task's container gets (its cpuset): pure, so it is unit tested; `stepd` reads the
//! inputs from Slurm and the kernel.
//!
//! At task_init_privileged the task plugin has not bound the task yet (task/affinity binds later,
//! in task_p_pre_launch), so the task's affinity is at best the step's CPUs on this node (the step
//! cpuset of task/cgroup). Either source therefore holds the CPUs of every local task of the step,
//! and each task takes its block by its local id, as Slurm's block distribution: an equal share of
//! the step's CPUs, at least its cpus-per-task (a step may hold more CPUs than its tasks ask for:
//! since Slurm 22.05 srun no longer inherits sbatch's --cpus-per-task).

use slurm_ckpt_site::CpuList;

/// Where a task's CPUs came from (for the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The task's CPU affinity, narrower than the node: Slurm confined the step.
    Affinity,
    /// The step's allocated cores (S_STEP_ALLOC_CORES), mapped onto the online CPUs.
    StepCores,
}

/// The CPUs of one task's container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub cpus: CpuList,
    pub source: Source,
    /// Core ids beyond the online CPUs were wrapped onto them (a node that advertises more CPUs
    /// than it has, like the virtual test cluster's), or the tasks outnumber the CPUs (overcommit):
    /// containers of one node may then share CPUs.
    pub wrapped: bool,
}

/// What Slurm and the kernel tell about one task.
#[derive(Debug, Clone)]
pub struct TaskCpus<'a> {
    /// The node's online CPUs.
    pub online: &'a CpuList,
    /// The task's CPU affinity, if it could be read.
    pub affinity: Option<&'a CpuList>,
    /// The step's allocated cores on this node (Slurm's abstract core ids), if known.
    pub step_cores: Option<&'a CpuList>,
    /// The task's id among the step's tasks on this node, and how many there are.
    pub local_id: u32,
    pub local_tasks: u32,
    pub cpus_per_task: u32,
}

/// The task's CPUs, or None when neither source says anything (no cpuset then).
pub fn task_cpus(t: &TaskCpus) -> Option<Placement> {
    if let Some(aff) = t.affinity.filter(|a| a.len() < t.online.len()) {
        let (cpus, wrapped) = block(aff.ids(), t)?;
        return Some(Placement {
            cpus: CpuList::from_ids(cpus)?,
            source: Source::Affinity,
            wrapped,
        });
    }
    let cores = t.step_cores?;
    let (block, overlap) = block(cores.ids(), t)?;
    let online = t.online.ids();
    let beyond = block.iter().any(|c| *c as usize >= online.len());
    let cpus = block.iter().map(|c| online[*c as usize % online.len()]);
    Some(Placement {
        cpus: CpuList::from_ids(cpus)?,
        source: Source::StepCores,
        wrapped: overlap || beyond,
    })
}

/// The task's block of `set`: its equal share, at least cpus-per-task entries (wrapping around the
/// set when the tasks need more than it holds), and whether it wrapped.
fn block(set: &[u32], t: &TaskCpus) -> Option<(Vec<u32>, bool)> {
    if set.is_empty() {
        return None;
    }
    let share = set.len() / t.local_tasks.max(1) as usize;
    let per_task = share.max(t.cpus_per_task.max(1) as usize).min(set.len());
    let start = t.local_id as usize * per_task;
    let ids = (start..start + per_task)
        .map(|i| set[i % set.len()])
        .collect();
    Some((ids, start + per_task > set.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Source::{Affinity as A, StepCores as S};

    /// (online, affinity, step cores, local id, local tasks, cpus per task) → (cpus, source, wrapped)
    type Case<'a> = (
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
        u32,
        u32,
        u32,
        Option<(&'a str, Source, bool)>,
    );

    fn check(cases: &[Case]) {
        let l = |s: &str| CpuList::parse(s).unwrap();
        for (online, aff, cores, id, n, cpt, want) in cases {
            let (online, aff, cores) = (l(online), aff.map(l), cores.map(l));
            let got = task_cpus(&TaskCpus {
                online: &online,
                affinity: aff.as_ref(),
                step_cores: cores.as_ref(),
                local_id: *id,
                local_tasks: *n,
                cpus_per_task: *cpt,
            })
            .map(|p| (p.cpus.to_string(), p.source, p.wrapped));
            let want = want.map(|(c, s, w)| (c.to_string(), s, w));
            assert_eq!(
                got, want,
                "{online} {aff:?} {cores:?} task {id}/{n} x {cpt}"
            );
        }
    }

    #[test]
    fn step_cores_in_blocks_per_task() {
        check(&[
            // 2 tasks x 1 CPU on cores 0-1 of an 8-CPU node; an affinity of the whole node is no source.
            (
                "0-7",
                Some("0-7"),
                Some("0-1"),
                0,
                2,
                1,
                Some(("0", S, false)),
            ),
            (
                "0-7",
                Some("0-7"),
                Some("0-1"),
                1,
                2,
                1,
                Some(("1", S, false)),
            ),
            // 2 tasks x 2 CPUs on cores 4-7.
            ("0-7", None, Some("4-7"), 0, 2, 2, Some(("4-5", S, false))),
            ("0-7", None, Some("4-7"), 1, 2, 2, Some(("6-7", S, false))),
            // A step with more cores than its tasks ask for: equal shares.
            ("0-7", None, Some("0-7"), 1, 2, 1, Some(("4-7", S, false))),
            ("0-7", None, Some("0-6"), 1, 2, 1, Some(("3-5", S, false))),
            // Scattered cores keep their order.
            (
                "0-7",
                None,
                Some("1,3,5,7"),
                1,
                2,
                2,
                Some(("5,7", S, false)),
            ),
            // Online CPUs with a gap: core i is the i-th online CPU.
            ("0,2-3", None, Some("1-2"), 0, 1, 2, Some(("2-3", S, false))),
        ]);
    }

    #[test]
    fn cores_beyond_the_online_cpus_wrap() {
        check(&[
            // The virtual cluster: CPUs=4 advertised on a 2-CPU machine.
            (
                "0-1",
                Some("0-1"),
                Some("2-3"),
                0,
                2,
                1,
                Some(("0", S, true)),
            ),
            (
                "0-1",
                Some("0-1"),
                Some("2-3"),
                1,
                2,
                1,
                Some(("1", S, true)),
            ),
            ("0-1", None, Some("0-1"), 1, 2, 1, Some(("1", S, false))),
            ("0-1", None, Some("0-3"), 1, 2, 1, Some(("0-1", S, true))),
            // More tasks than cores (overcommit): blocks wrap around the step's cores.
            ("0-7", None, Some("0-1"), 2, 3, 1, Some(("0", S, true))),
            // cpus-per-task larger than the step's cores: all of them.
            ("0-7", None, Some("2"), 0, 1, 4, Some(("2", S, false))),
        ]);
    }

    #[test]
    fn a_narrower_affinity_wins_and_is_split() {
        check(&[
            // task/cgroup: the step's cpuset 4-7 holds both tasks' CPUs.
            (
                "0-7",
                Some("4-7"),
                Some("0-3"),
                0,
                2,
                2,
                Some(("4-5", A, false)),
            ),
            (
                "0-7",
                Some("4-7"),
                Some("0-3"),
                1,
                2,
                2,
                Some(("6-7", A, false)),
            ),
            // Already one task's CPUs: every local id gets all of it.
            ("0-7", Some("3"), None, 0, 2, 1, Some(("3", A, false))),
            ("0-7", Some("3"), None, 1, 2, 1, Some(("3", A, true))),
        ]);
    }

    #[test]
    fn nothing_known_means_no_cpuset() {
        check(&[
            ("0-7", None, None, 0, 1, 1, None),
            ("0-7", Some("0-7"), None, 0, 1, 1, None),
        ]);
    }
}
