//! sbatch/salloc (allocator) and srun (local): create the job instance, and validate the container
//! request before anything is submitted. No Docker or helper calls here.

use crate::config::instance::{self, InstanceAction, JobInstance, Submitter, INSTANCE_ENV};
use crate::config::SiteConfig;
use crate::dispatch::PluginError;
use crate::ffi::{log_debug, log_error, log_verbose, set_submit_env};
use crate::options::CkptDir;
use crate::{policy, state};

pub fn post_opt(site: &SiteConfig, who: Submitter) -> Result<(), PluginError> {
    let env = |name: &str| std::env::var(name).ok();
    // Before the container check: an sbatch without container options may run container steps.
    set_job_instance(who, &env);
    let opts = state::with(|s| s.options.resolve(&env))?;
    if !opts.container_mode() {
        return Ok(());
    }
    policy::check_job(site, &opts)?;
    policy::check_mounts(site, &opts)?;
    // srun in an allocation sees the allocation's task count, not its own -n: only a warning here
    // (a smaller step is fine). slurmstepd refuses a step that is too large before any container
    // starts (stepd.rs); sbatch cannot see its task count from a SPANK plugin at all.
    if let Some(n) = env("SLURM_NTASKS").and_then(|n| n.parse().ok()) {
        if let Err(e) = policy::check_ntasks(site, n) {
            log_error(&format!(
                "{e} (this allocation's task count; a step of that size will be refused)"
            ));
        }
    }
    log_verbose(&format!(
        "image {}, mpi {}, checkpoint {}, {} mount(s)",
        opts.image.as_deref().unwrap_or(""),
        opts.mpi.unwrap_or(site.mpi_default),
        match &opts.ckpt {
            None => "off".to_string(),
            Some(CkptDir::Default) => "on (default directory)".to_string(),
            Some(CkptDir::Path(p)) => format!("on ({p})"),
        },
        opts.mounts.len()
    ));
    Ok(())
}

/// Give a new job its instance (see `slurm_ckpt_site::instance`). Without one (no random source)
/// the job still runs and checkpoints, as under an older plugin: logged, never fatal.
fn set_job_instance(who: Submitter, env: &dyn Fn(&str) -> Option<String>) {
    if instance::submit_action(who, env) != InstanceAction::Create
        || state::with(|s| std::mem::replace(&mut s.instance_created, true))
    {
        return;
    }
    match JobInstance::generate() {
        Ok(i) => {
            set_submit_env(INSTANCE_ENV, i.as_str());
            log_debug(&format!("job instance {i}"));
        }
        Err(e) => log_error(&format!(
            "{e}; the job has no instance id, so its checkpoints cannot be told from another job's with the same id"
        )),
    }
}
