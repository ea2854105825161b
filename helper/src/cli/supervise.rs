use slurm_ckpt::supervise::{self, SuperviseArgs};
use slurm_ckpt_site::request::SuperviseRequest;

/// `--fd FD --job J --step S --rank R --ntasks N --nnodes M --node NODE --uid U --gid G
/// --restart-count C [--instance HEX] [--cpus N] [--mem-mb M] [--cpuset LIST] --image IMAGE
/// --mpi mpich|openmpi|none [--ckpt DIR] [--ckpt-interval MIN] [--mount SPEC]...
/// [--env NAME=VALUE]... --cwd CWD [--plugstack PATH] [--site key=value]... -- ARGV...`
pub type Args = super::RequestArgs;

/// The supervisor's view of the request.
fn supervise_args(r: SuperviseRequest, site: slurm_ckpt::site::SiteConfig) -> SuperviseArgs {
    SuperviseArgs {
        job: r.job,
        step: r.step,
        rank: r.rank,
        ntasks: r.ntasks,
        node: r.node,
        uid: r.uid,
        gid: r.gid,
        image: r.image,
        mpi: r.mpi.to_string(),
        mounts: r.mounts.iter().map(ToString::to_string).collect(),
        env: r.env,
        cwd: r.cwd,
        ckpt: r.ckpt,
        ckpt_interval: r.ckpt_interval,
        rerun: r.rerun,
        restart_count: r.restart_count,
        instance: r.instance,
        cpus: r.cpus,
        mem_mb: r.mem_mb,
        cpuset: r.cpuset,
        site,
        argv: r.argv,
    }
}

pub fn main(a: Args) -> i32 {
    let r = match SuperviseRequest::decode(&a.request) {
        Ok(r) => r,
        Err(e) => {
            // The supervisor's stderr is /dev/null: say it in the job's log when the job is known.
            let job = a.request.windows(2).find(|w| w[0] == "--job");
            if let Some(job) = job.and_then(|w| w[1].parse::<u32>().ok()) {
                super::init_tracing(Some(&supervise::log_path(job)));
                tracing::error!("job {job}: bad request from the plugin: {e}");
            }
            eprintln!("slurm-ckpt supervise: {e}");
            return 2;
        }
    };
    let log_problem = super::init_tracing(Some(&supervise::log_path(r.job)));
    let (job, rank) = (r.job, r.rank);
    let run = || -> anyhow::Result<i32> {
        if r.uid == 0 {
            anyhow::bail!("refusing to run a rank container as root");
        }
        let sock = slurm_ckpt::fdio::inherited_socket(r.fd)?;
        let site = super::request_site(&r.site, r.plugstack.as_deref())?;
        Ok(super::runtime()?.block_on(supervise::run(supervise_args(r, site), sock, log_problem)))
    };
    match run() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("job {job} rank {rank}: {}", super::report(&e));
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Args, SuperviseRequest};
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        a: Args,
    }

    fn parse(instance: Option<&str>) -> Result<SuperviseRequest, String> {
        let mut v: Vec<&str> = "slurm-ckpt --fd 3 --job 7 --step 0 --rank 0 --ntasks 1 --node n \
             --uid 1000 --gid 1000 --image img --mpi none"
            .split_whitespace()
            .collect();
        if let Some(i) = instance {
            v.extend(["--instance", i]);
        }
        v.extend(["--", "ring"]);
        let cli = Cli::try_parse_from(v).map_err(|e| e.to_string())?;
        SuperviseRequest::decode(&cli.a.request).map_err(|e| e.to_string())
    }

    #[test]
    fn the_job_instance_is_optional_and_checked() {
        assert_eq!(parse(None).unwrap().instance, None);
        let i = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            parse(Some(i)).unwrap().instance.map(|i| i.to_string()),
            Some(i.to_string())
        );
        for bad in ["", "0123", "../etc", &i.to_uppercase()] {
            let e = parse(Some(bad)).expect_err(bad);
            assert!(e.contains("lowercase hex"), "{bad}: {e}");
        }
    }

    #[test]
    fn what_the_plugin_encodes_reaches_the_supervisor_unchanged() {
        let mut v = parse(None).unwrap();
        v.argv = ["./ring", "--", "--help", "-x", "--fd"]
            .map(String::from)
            .to_vec();
        v.site = Some(slurm_ckpt::site::SiteConfig::default());
        let argv = v.to_argv();
        let cli = Cli::try_parse_from(
            std::iter::once("slurm-ckpt").chain(argv[2..].iter().map(String::as_str)),
        )
        .unwrap();
        assert_eq!(SuperviseRequest::decode(&cli.a.request), Ok(v));
    }
}
