//! One function per SPANK callback. Each only switches on the context, like pyxis_dispatch.c;
//! the work is in `submit` (sbatch/salloc/srun), `stepd` (slurmstepd) and `epilog`.

use std::ffi::c_int;

use crate::config::instance::{InstanceError, Submitter, INSTANCE_ENV};
use crate::config::{ConfigError, SiteConfig};
use crate::ffi::{log_error, Context, Spank, SpankError, CALLBACK_ERROR};
use crate::options::{OptId, OptionError};
use crate::policy::PolicyError;
use crate::spawn::SpawnError;
use crate::{epilog, state, stepd, submit};

/// Why a callback failed. Display text has no plugin prefix (the logger adds it).
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Option(#[from] OptionError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Spank(#[from] SpankError),
    #[error("{0} (set by the plugin at submission in {INSTANCE_ENV}; do not change it)")]
    Instance(#[from] InstanceError),
    #[error("cannot start the container supervisor of rank {rank}: {err}")]
    Supervisor { rank: u32, err: SpawnError },
    #[error("cannot turn rank {rank} into its relay: {err}")]
    Relay { rank: u32, err: SpawnError },
    #[error("helper cleanup of job {job}: {err}")]
    CleanupSpawn { job: u32, err: SpawnError },
    #[error("helper cleanup of job {job} failed ({status}){output}")]
    CleanupFailed {
        job: u32,
        status: String,
        output: String,
    },
    #[error("no node name: SLURMD_NODENAME is unset and the hostname cannot be read")]
    NoNodeName,
}

fn report(result: Result<(), PluginError>) -> c_int {
    match result {
        Ok(()) => 0,
        Err(e) => {
            log_error(&e.to_string());
            CALLBACK_ERROR
        }
    }
}

/// The settings parsed in init, or parsed again (an optional plugin keeps being called even
/// when its init failed).
fn site(args: &[String]) -> Result<SiteConfig, PluginError> {
    match state::with(|s| s.site.clone()) {
        Some(site) => Ok(site),
        None => Ok(SiteConfig::parse(args)?),
    }
}

pub fn init(sp: &Spank, args: &[String]) -> c_int {
    let context = sp.context();
    let site = match SiteConfig::parse(args) {
        Ok(site) => site,
        // A failing prolog/epilog drains the node: log only (job_epilog reports it again).
        Err(e) if context == Context::JobScript => {
            report(Err(e.into()));
            return 0;
        }
        // slurm_error reaches the user's terminal in sbatch/srun and the log in the daemons.
        Err(e) => return report(Err(e.into())),
    };
    // Before any option is registered or its callback runs: the names depend on it.
    let prefix = site.option_prefix.clone();
    state::with(|s| {
        s.options.set_prefix(&prefix);
        s.site = Some(site);
    });
    // Registering in prolog/epilog would make spank_option_getopt answer "not given" from the
    // empty option cache instead of reading the job's SPANK_* variables (plugstack.c, 22.05).
    if context == Context::JobScript {
        return 0;
    }
    for id in OptId::ALL {
        if let Err(e) = sp.register_option(id, &prefix) {
            return report(Err(e.into()));
        }
    }
    0
}

/// Option callback: Slurm hands over every value it parses (local) or forwards (remote).
pub fn option(val: c_int, arg: Option<&str>, remote: bool) -> c_int {
    let Some(id) = OptId::from_val(val) else {
        log_error(&format!("option callback called with unknown value {val}"));
        return CALLBACK_ERROR;
    };
    let result = if remote {
        state::with(|s| s.options.record_remote(id, arg))
    } else {
        let prefix = state::with(|s| s.options.prefix().to_string());
        let inherited = std::env::var(id.inherited_env_var(&prefix)).ok();
        state::with(|s| s.options.record_local(id, arg, inherited.as_deref()))
    };
    report(result.map_err(PluginError::from))
}

pub fn init_post_opt(sp: &Spank, args: &[String]) -> c_int {
    match sp.context() {
        Context::Allocator => {
            report(site(args).and_then(|site| submit::post_opt(&site, Submitter::Allocator)))
        }
        Context::Local => {
            report(site(args).and_then(|site| submit::post_opt(&site, Submitter::Srun)))
        }
        _ => 0,
    }
}

pub fn task_init_privileged(sp: &Spank, args: &[String]) -> c_int {
    match sp.context() {
        Context::Remote => {
            report(site(args).and_then(|site| stepd::task_init_privileged(sp, &site)))
        }
        _ => 0,
    }
}

pub fn task_init(sp: &Spank, args: &[String]) -> c_int {
    match sp.context() {
        Context::Remote => report(site(args).and_then(|site| stepd::task_init(sp, &site))),
        _ => 0,
    }
}

pub fn job_epilog(sp: &Spank, args: &[String]) -> c_int {
    if sp.context() == Context::JobScript {
        // A failed epilog drains the node: log, never fail.
        report(site(args).and_then(|site| epilog::job_epilog(sp, &site)));
    }
    0
}

pub fn exit(_sp: &Spank, _args: &[String]) -> c_int {
    0
}
