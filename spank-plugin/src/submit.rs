//! sbatch/salloc (allocator) and srun (local): validate the container request before anything
//! is submitted. No Docker or helper calls here.

use crate::config::SiteConfig;
use crate::dispatch::PluginError;
use crate::ffi::log_verbose;
use crate::options::CkptDir;
use crate::{policy, state};

pub fn post_opt(site: &SiteConfig) -> Result<(), PluginError> {
    let env = |name: &str| std::env::var(name).ok();
    let opts = state::with(|s| s.options.resolve(&env))?;
    if !opts.container_mode() {
        return Ok(());
    }
    policy::check_job(site, &opts)?;
    policy::check_mounts(site, &opts)?;
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
