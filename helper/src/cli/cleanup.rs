use slurm_ckpt::engine::Engine;
use slurm_ckpt::storage::bounded;
use slurm_ckpt::{jobdir, state};
use slurm_ckpt_site::request::CleanupRequest;

/// `--job J --node NODE [--plugstack PATH] [--site key=value]...`
pub type Args = super::RequestArgs;

pub fn main(a: Args) -> i32 {
    let a = match CleanupRequest::decode(&a.request) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("slurm-ckpt cleanup: {e}");
            return 2;
        }
    };
    super::init_tracing(Some(&slurm_ckpt::supervise::log_path(a.job)));
    let run = || -> anyhow::Result<usize> {
        let site = super::request_site(&a.site, a.plugstack.as_deref())?;
        let look = std::time::Duration::from_secs(site.timeout_secs);
        // A supervisor may still be checkpointing its rank (SIGTERM at preemption): let it finish
        // before its container is removed.
        wait_for_supervisors(
            &jobdir::job_dir(&site.runtime_dir, a.job, &a.node),
            std::time::Duration::from_secs(site.timeout_secs),
        );
        let removed = super::runtime()?.block_on(async {
            let engine = Engine::connect(&site.socket_for(&a.node), &a.node).await?;
            let list = engine.job_containers(a.job).await?;
            // Keep going on errors: one stuck container must not leave the rest (or the records).
            let mut first_err = None;
            for (id, name) in &list {
                tracing::info!("cleanup: removing {name} ({id})");
                if let Err(e) = engine.remove(id).await {
                    tracing::error!("cleanup: {name}: {e}");
                    first_err.get_or_insert(e);
                }
            }
            // State records of ranks that ran here. Bounded (storage.rs): an epilog stuck on a
            // hung mount would keep the node COMPLETING until Slurm drains it.
            let (root, job, node) = (site.ckpt_root.clone(), a.job, a.node.clone());
            let records = bounded(
                look,
                "removing the state records in",
                &state::job_state_dir(&root, job),
                move || {
                    for st in state::load_job(&root, job)? {
                        if st.node == node {
                            state::remove_rank(&root, job, st.rank);
                        }
                    }
                    Ok(())
                },
            );
            if let Err(e) = records {
                tracing::error!("cleanup: {e}");
                first_err.get_or_insert(e);
            }
            match first_err {
                Some(e) => Err(e),
                None => Ok::<usize, slurm_ckpt::Error>(list.len()),
            }
        })?;
        // Staged images a killed supervisor left behind (the job's memory: do not keep it).
        if let Err(e) = jobdir::remove(&site.stage_dir, a.job, &a.node) {
            tracing::error!("cleanup: {e}");
        }
        jobdir::remove(&site.runtime_dir, a.job, &a.node)?;
        let (root, key_file, job) = (site.ckpt_root.clone(), site.key_file.clone(), a.job);
        let lease = bounded(
            look,
            "releasing the address lease in",
            &site.ckpt_root,
            move || {
                release_lease(&root, &key_file, job);
                Ok(())
            },
        );
        if let Err(e) = lease {
            tracing::error!("cleanup: address lease kept: {e}");
        }
        Ok(removed)
    };
    match run() {
        Ok(n) => {
            tracing::info!(
                "cleanup of job {} on {}: {n} container(s) removed",
                a.job,
                a.node
            );
            0
        }
        Err(e) => {
            tracing::error!(
                "cleanup of job {} on {}: {}",
                a.job,
                a.node,
                super::report(&e)
            );
            eprintln!("slurm-ckpt cleanup: job {}: {}", a.job, super::report(&e));
            1
        }
    }
}

/// The job's address lease goes back unless a generation still needs it (every node's epilog
/// tries; one wins). A failure only delays it to `slurm-ckpt gc`.
fn release_lease(ckpt_root: &std::path::Path, key_file: &std::path::Path, job: u32) {
    let key = match slurm_ckpt::site_secret::read(key_file) {
        Ok(s) => slurm_ckpt::auth::SiteKey::derive(&s),
        Err(e) => return tracing::error!("cleanup: address lease kept: {e}"),
    };
    if let Err(e) = slurm_ckpt::lease::Store::new(ckpt_root).release(job, &key) {
        tracing::error!("cleanup: address lease kept: {e}");
    }
}

/// Wait until no supervisor of the job on this node is alive (pid files in the job directory).
fn wait_for_supervisors(dir: &std::path::Path, timeout: std::time::Duration) {
    let end = std::time::Instant::now() + timeout;
    let alive = || -> bool {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return false;
        };
        rd.flatten().any(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with("supervisor-r") {
                return false;
            }
            let pid = std::fs::read_to_string(e.path()).unwrap_or_default();
            let cmdline =
                std::fs::read(format!("/proc/{}/cmdline", pid.trim())).unwrap_or_default();
            String::from_utf8_lossy(&cmdline).contains("supervise")
        })
    };
    while alive() && std::time::Instant::now() < end {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
