//! Process-global plugin state: Slurm calls option callbacks without a handle, and
//! task_init_privileged hands the socket to task_init within one task process.

use std::sync::Mutex;

use crate::config::SiteConfig;
use crate::options::OptionState;

pub struct PluginState {
    /// Parsed in slurm_spank_init.
    pub site: Option<SiteConfig>,
    /// Filled by the option callbacks.
    pub options: OptionState,
    /// The task's end of the socket to its supervisor (task process only).
    pub relay_fd: Option<i32>,
    /// This sbatch/salloc/srun has created the job instance (once per process: every component
    /// of a heterogeneous job is the same job).
    pub instance_created: bool,
}

static STATE: Mutex<PluginState> = Mutex::new(PluginState {
    site: None,
    options: OptionState::new(),
    relay_fd: None,
    instance_created: false,
});

/// Runs `f` with the state locked. Never nest calls: the lock is not reentrant.
pub fn with<R>(f: impl FnOnce(&mut PluginState) -> R) -> R {
    // A panic caught at the FFI edge may have poisoned the lock; the data is still usable.
    let mut guard = STATE.lock().unwrap_or_else(|e| e.into_inner());
    f(&mut guard)
}
