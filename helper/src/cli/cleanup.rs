use slurm_ckpt::engine::Engine;
use slurm_ckpt::{jobdir, state};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    job: u32,
    /// This node's name (for the Docker socket template).
    #[arg(long)]
    node: String,
    #[arg(long = "site")]
    site: Vec<String>,
    #[arg(long, default_value = "/etc/slurm/plugstack.conf")]
    plugstack: std::path::PathBuf,
}

pub fn main(a: Args) -> i32 {
    super::init_tracing(Some(&slurm_ckpt::supervise::log_path(a.job)));
    let run = || -> anyhow::Result<usize> {
        let site = super::site_config(&a.site, &a.plugstack)?;
        let removed = super::runtime()?.block_on(async {
            let engine = Engine::connect(&site.socket_for(&a.node), &a.node).await?;
            let list = engine.job_containers(a.job).await?;
            for (id, name) in &list {
                tracing::info!("cleanup: removing {name} ({id})");
                engine.remove(id).await?;
            }
            // State records of ranks that ran here.
            for st in state::load_job(&site.ckpt_root, a.job)? {
                if st.node == a.node {
                    state::remove_rank(&site.ckpt_root, a.job, st.rank);
                }
            }
            Ok::<usize, slurm_ckpt::Error>(list.len())
        })?;
        jobdir::remove(&site.runtime_dir, a.job)?;
        Ok(removed)
    };
    match run() {
        Ok(n) => {
            tracing::info!("cleanup of job {} on {}: {n} container(s) removed", a.job, a.node);
            0
        }
        Err(e) => {
            tracing::error!("cleanup of job {} on {}: {e:#}", a.job, a.node);
            eprintln!("slurm-ckpt cleanup: job {}: {e:#}", a.job);
            1
        }
    }
}
