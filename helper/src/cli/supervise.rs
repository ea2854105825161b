use slurm_ckpt::supervise::{self, SuperviseArgs};
use slurm_ckpt_site::instance::JobInstance;

#[derive(clap::Args)]
pub struct Args {
    /// Inherited socket to the relay.
    #[arg(long)]
    fd: i32,
    #[arg(long)]
    job: u32,
    #[arg(long)]
    step: u32,
    #[arg(long)]
    rank: u32,
    #[arg(long)]
    ntasks: u32,
    #[arg(long, default_value_t = 1)]
    nnodes: u32,
    #[arg(long)]
    node: String,
    #[arg(long)]
    uid: u32,
    #[arg(long)]
    gid: u32,
    #[arg(long)]
    image: String,
    #[arg(long, value_parser = ["mpich", "openmpi", "none"])]
    mpi: String,
    #[arg(long)]
    ckpt: Option<String>,
    #[arg(long)]
    ckpt_interval: Option<u32>,
    /// SLURM_RESTART_COUNT of the job.
    #[arg(long, default_value_t = 0)]
    restart_count: u32,
    /// The job instance (SLURM_CKPT_JOB_INSTANCE): 32 lowercase hex digits. Absent: the job was
    /// submitted by an older plugin.
    #[arg(long, value_parser = JobInstance::parse)]
    instance: Option<JobInstance>,
    /// CPUs of the task: the container's CPU limit.
    #[arg(long)]
    cpus: Option<u32>,
    /// Memory of the task in MB: the container's memory limit.
    #[arg(long)]
    mem_mb: Option<u64>,
    /// The task's CPUs, e.g. 0-3: the container's cpuset.
    #[arg(long, value_parser = slurm_ckpt_site::CpuList::parse)]
    cpuset: Option<slurm_ckpt_site::CpuList>,
    #[arg(long = "mount")]
    mounts: Vec<String>,
    /// NAME=VALUE set in the container after the defaults (the job's --container-env).
    #[arg(long = "env")]
    env: Vec<String>,
    #[arg(long, default_value = "/")]
    cwd: String,
    #[arg(long = "site")]
    site: Vec<String>,
    #[arg(long, default_value = "/etc/slurm/plugstack.conf")]
    plugstack: std::path::PathBuf,
    /// The job's program and arguments (run by MPI inside the containers).
    #[arg(last = true, required = true)]
    argv: Vec<String>,
}

pub fn main(a: Args) -> i32 {
    super::init_tracing(Some(&supervise::log_path(a.job)));
    let run = || -> anyhow::Result<i32> {
        if a.uid == 0 {
            anyhow::bail!("refusing to run a rank container as root");
        }
        // It becomes part of the Docker socket path and the job directory.
        if !slurm_ckpt::user_paths::valid_node_name(&a.node) {
            return Err(slurm_ckpt::Error::BadNodeName(a.node.clone()).into());
        }
        let sock = slurm_ckpt::fdio::inherited_socket(a.fd)?;
        let site = super::site_config(&a.site, &a.plugstack)?;
        let args = SuperviseArgs {
            job: a.job,
            step: a.step,
            rank: a.rank,
            ntasks: a.ntasks,
            node: a.node.clone(),
            uid: a.uid,
            gid: a.gid,
            image: a.image.clone(),
            mpi: a.mpi.clone(),
            mounts: a.mounts.clone(),
            env: a.env.clone(),
            cwd: a.cwd.clone(),
            ckpt: a.ckpt.clone(),
            ckpt_interval: a.ckpt_interval,
            restart_count: a.restart_count,
            instance: a.instance.clone(),
            cpus: a.cpus,
            mem_mb: a.mem_mb,
            cpuset: a.cpuset.clone(),
            site,
            argv: a.argv.clone(),
        };
        Ok(super::runtime()?.block_on(supervise::run(args, sock)))
    };
    match run() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("job {} rank {}: {e:#}", a.job, a.rank);
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Args;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        a: Args,
    }

    fn parse(instance: Option<&str>) -> Result<Cli, clap::Error> {
        let mut v: Vec<&str> = "slurm-ckpt --fd 3 --job 7 --step 0 --rank 0 --ntasks 1 --node n \
             --uid 1000 --gid 1000 --image img --mpi none"
            .split_whitespace()
            .collect();
        if let Some(i) = instance {
            v.extend(["--instance", i]);
        }
        v.extend(["--", "ring"]);
        Cli::try_parse_from(v)
    }

    #[test]
    fn the_job_instance_is_optional_and_checked() {
        assert_eq!(parse(None).unwrap().a.instance, None);
        let i = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            parse(Some(i)).unwrap().a.instance.map(|i| i.to_string()),
            Some(i.to_string())
        );
        for bad in ["", "0123", "../etc", &i.to_uppercase()] {
            let e = parse(Some(bad)).err().expect(bad).to_string();
            assert!(e.contains("lowercase hex"), "{bad}: {e}");
        }
    }
}
