//! slurmstepd (remote context): start one supervisor per task as root, then turn the task into
//! the relay as the job user. The job's own command runs inside containers, started by the
//! supervisor, never by Slurm.

use std::path::PathBuf;

use crate::config::instance::{JobInstance, INSTANCE_ENV};
use crate::config::{CpuList, SiteConfig};
use crate::dispatch::PluginError;
use crate::ffi::{self, log_debug, log_error, log_info, log_verbose, Item, Spank};
use crate::helper_argv::{self, env_lookup, job_cwd, node_name, SuperviseArgs, ROOT_PATH};
use crate::placement::{self, Source, TaskCpus};
use crate::{policy, spawn, state};

/// The node's online CPUs (what a container's cpuset may name).
const ONLINE_CPUS: &str = "/sys/devices/system/cpu/online";

/// Steps that are not a user's srun: the batch script, the extern step, salloc's interactive step.
fn is_special_step(step: u32) -> bool {
    matches!(
        step,
        ffi::SLURM_BATCH_SCRIPT | ffi::SLURM_EXTERN_CONT | ffi::SLURM_INTERACTIVE_STEP
    )
}

/// Runs as root in the forked task process, before Slurm drops privileges.
pub fn task_init_privileged(sp: &Spank, site: &SiteConfig) -> Result<(), PluginError> {
    let step = sp.get_item_u32(Item::JobStepId)?;
    if is_special_step(step) {
        return Ok(());
    }
    let env = sp.job_env()?;
    let lookup = |name: &str| env_lookup(&env, name).map(str::to_string);
    let opts = state::with(|s| s.options.resolve(&lookup))?;
    if !opts.container_mode() {
        return Ok(());
    }
    // Again here: the submit-side check ran as the user and can be bypassed.
    policy::check_job(site, &opts)?;

    let job = sp.get_item_u32(Item::JobId)?;
    let rank = sp.get_item_u32(Item::TaskGlobalId)?;
    let node = node_name(std::env::var("SLURMD_NODENAME").ok(), &env, hostname())
        .ok_or(PluginError::NoNodeName)?;
    let argv = sp.job_argv()?;
    let cwd = job_cwd(&env);
    // Checked here too (the helper checks again), so that a bad value is named in the job's output.
    let instance = env_lookup(&env, INSTANCE_ENV)
        .filter(|i| !i.is_empty())
        .map(JobInstance::parse)
        .transpose()?;
    let cpus = sp.get_item_u32(Item::CpusPerTask).ok().filter(|c| *c > 0);
    let cpuset = task_cpuset(sp, job, rank, cpus);
    let ntasks = sp.get_item_u32(Item::TotalTaskCount)?;
    policy::check_ntasks(site, ntasks)?;
    let args = helper_argv::supervise(&SuperviseArgs {
        job,
        step,
        rank,
        ntasks,
        nnodes: sp.get_item_u32(Item::JobNnodes)?,
        node: &node,
        uid: sp.get_item_u32(Item::JobUid)?,
        gid: sp.get_item_u32(Item::JobGid)?,
        restart_count: helper_argv::restart_count(sp.get_item_u32(Item::RestartCount)?, &env),
        instance: instance.as_ref(),
        // Resource limits of the rank's container: the task's CPUs and its share of the step's
        // memory on this node (unknown or unlimited: no limit).
        cpus,
        mem_mb: match (
            sp.step_alloc_mem_mb(),
            sp.get_item_u32(Item::LocalTaskCount),
        ) {
            (Ok(m), Ok(n)) if m > 0 && n > 0 => Some(m / u64::from(n)),
            _ => None,
        },
        cpuset: cpuset.as_ref(),
        opts: &opts,
        site,
        cwd: &cwd,
        argv: &argv,
    });
    // Mark before starting anything, so the epilog cleans up even if the job dies right away.
    if let Err(e) = mark_job(site, job) {
        log_error(&format!(
            "cannot write job marker (the epilog may skip cleanup): {e}"
        ));
    }
    let helper_env = vec![ROOT_PATH.to_string(), format!("SLURMD_NODENAME={node}")];
    let sup = spawn::spawn_supervisor(&site.helper.to_string_lossy(), &args, &helper_env)
        .map_err(|err| PluginError::Supervisor { rank, err })?;
    log_debug(&format!(
        "job {job} rank {rank}: supervisor pid {} on fd {}",
        sup.pid, sup.task_fd
    ));
    state::with(|s| s.relay_fd = Some(sup.task_fd));
    Ok(())
}

/// The CPUs of the task's container (see `placement`), from the task's affinity or the step's
/// allocated cores; None (no cpuset, logged) when neither can be used: the job still runs.
fn task_cpuset(sp: &Spank, job: u32, rank: u32, cpus_per_task: Option<u32>) -> Option<CpuList> {
    let who = format!("job {job} rank {rank}");
    let no_cpuset = |e: String| log_error(&format!("{who}: {e}; no cpuset"));
    let online = online_cpus().map_err(no_cpuset).ok()?;
    let local_id = sp
        .task_local_id()
        .map_err(|e| no_cpuset(e.to_string()))
        .ok()?;
    let step_cores = step_cores(sp, &who);
    let affinity = ffi::cpu_affinity().and_then(CpuList::from_ids);
    let placed = placement::task_cpus(&TaskCpus {
        online: &online,
        affinity: affinity.as_ref(),
        step_cores: step_cores.as_ref(),
        local_id,
        local_tasks: sp.get_item_u32(Item::LocalTaskCount).unwrap_or(1),
        cpus_per_task: cpus_per_task.unwrap_or(1),
    });
    let Some(p) = placed else {
        log_info(&format!(
            "{who}: no CPU allocation known (step cores, task affinity); container without cpuset"
        ));
        return None;
    };
    let from = match p.source {
        Source::Affinity => affinity.map(|a| format!("task affinity {a}")),
        Source::StepCores => step_cores.map(|c| format!("step cores {c}")),
    };
    let msg = format!(
        "{who}: local task {local_id}, cpuset {} from {}",
        p.cpus,
        from.unwrap_or_default()
    );
    if p.wrapped {
        // Expected on nodes that advertise more CPUs than they have (the virtual test cluster).
        log_info(&format!(
            "{msg}, wrapped (more cores or tasks than the node's online CPUs {online}): \
             containers on this node may share CPUs"
        ));
    } else {
        log_verbose(&msg);
    }
    Some(p.cpus)
}

fn online_cpus() -> Result<CpuList, String> {
    let text = std::fs::read_to_string(ONLINE_CPUS)
        .map_err(|e| format!("cannot read {ONLINE_CPUS}: {e}"))?;
    CpuList::parse(&text).map_err(|e| format!("{ONLINE_CPUS}: {e}"))
}

/// The step's allocated cores on this node, if Slurm knows them.
fn step_cores(sp: &Spank, who: &str) -> Option<CpuList> {
    match sp.step_alloc_cores() {
        Ok(Some(s)) => CpuList::parse(&s)
            .map_err(|e| log_error(&format!("{who}: step cores: {e}")))
            .ok(),
        Ok(None) => None,
        Err(e) => {
            log_debug(&format!("{who}: {e}"));
            None
        }
    }
}

/// Runs as the job user just before Slurm would exec the task: become the relay instead.
pub fn task_init(sp: &Spank, site: &SiteConfig) -> Result<(), PluginError> {
    let Some(fd) = state::with(|s| s.relay_fd.take()) else {
        return Ok(());
    };
    let rank = sp.get_item_u32(Item::TaskGlobalId)?;
    let env = sp.job_env_raw()?;
    let err = spawn::exec(
        &site.helper.to_string_lossy(),
        &helper_argv::relay(fd, rank),
        env,
    );
    Err(PluginError::Relay { rank, err })
}

/// Plugin-owned marker of "this node ran containers for this job", read by the epilog: options
/// given only to an srun inside an allocation never reach the epilog's environment.
pub fn marker_path(site: &SiteConfig, job: u32) -> PathBuf {
    PathBuf::from(&site.runtime_dir)
        .join("spank")
        .join(format!("job-{job}"))
}

fn mark_job(site: &SiteConfig, job: u32) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let path = marker_path(site, job);
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    std::fs::write(path, b"")
}

/// This node's hostname (of the UTS namespace slurmd runs in).
pub fn hostname() -> Option<String> {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let h = h.trim();
    (!h.is_empty()).then(|| h.to_string())
}
