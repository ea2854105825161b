//! The command lines the plugin runs the `slurm-ckpt` helper with. The requests themselves are
//! defined once, in the shared crate (`slurm_ckpt_site::request`), which the helper decodes them
//! with; here the job's options and the site's defaults are turned into them. Pure, so it is unit
//! tested; `stepd` and `epilog` only fill in the values.

use crate::config::instance::JobInstance;
use crate::config::request::{CleanupRequest, RelayRequest, SuperviseRequest};
use crate::config::{CpuList, SiteConfig};
use crate::options::{CkptDir, JobOptions};

pub use crate::config::request::ARGV0;
/// The supervisor's end of the socket pair is always this descriptor.
pub const SUPERVISOR_FD: i32 = 3;
/// PATH of the supervisor (root) and cleanup processes: never the user's. /usr/local is included:
/// setup installs CRIU (recorded in every checkpoint manifest) as /usr/local/sbin/criu.
pub const ROOT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the supervisor of one task needs to know, as slurmstepd finds it.
#[derive(Debug, Clone)]
pub struct SuperviseArgs<'a> {
    pub job: u32,
    pub step: u32,
    pub rank: u32,
    pub ntasks: u32,
    pub nnodes: u32,
    pub node: &'a str,
    pub uid: u32,
    pub gid: u32,
    /// SLURM_RESTART_COUNT: 0 on the first run, n after the n-th requeue.
    pub restart_count: u32,
    /// The job instance from the job's environment (`SLURM_CKPT_JOB_INSTANCE`). None: the job was
    /// submitted without one (an older plugin).
    pub instance: Option<&'a JobInstance>,
    /// CPUs of the task (container CPU limit); None = no limit.
    pub cpus: Option<u32>,
    /// Memory of the task in MB (container memory limit); None = no limit.
    pub mem_mb: Option<u64>,
    /// The task's CPUs on this node (the container's cpuset); None = not confined.
    pub cpuset: Option<&'a CpuList>,
    pub opts: &'a JobOptions,
    pub site: &'a SiteConfig,
    pub cwd: &'a str,
    pub argv: &'a [String],
}

/// The supervisor's request: the job's options with the site's defaults filled in.
pub fn supervise_request(a: &SuperviseArgs<'_>) -> SuperviseRequest {
    // The job's own compression choice overrides the site's for its checkpoints.
    let mut site = a.site.clone();
    if let Some(c) = a.opts.ckpt_compress {
        site.compress = c;
    }
    SuperviseRequest {
        fd: SUPERVISOR_FD,
        job: a.job,
        step: a.step,
        rank: a.rank,
        ntasks: a.ntasks,
        nnodes: a.nnodes,
        node: a.node.to_string(),
        uid: a.uid,
        gid: a.gid,
        restart_count: a.restart_count,
        instance: a.instance.cloned(),
        cpus: a.cpus,
        mem_mb: a.mem_mb,
        cpuset: a.cpuset.cloned(),
        image: a.opts.image.clone().unwrap_or_default(),
        mpi: a.opts.mpi.unwrap_or(a.site.mpi_default),
        ckpt: a.opts.ckpt.as_ref().map(|c| match c {
            // Default directory: named after the job id, so every rank on every node and a
            // requeued run of the same job agree on it without talking to each other.
            CkptDir::Default => a.job.to_string(),
            CkptDir::Path(p) => p.clone(),
        }),
        ckpt_interval: a.opts.ckpt_interval,
        rerun: a.opts.rerun,
        mounts: a.opts.mounts.clone(),
        env: a.opts.env.clone(),
        cwd: a.cwd.to_string(),
        site: Some(site),
        plugstack: None,
        argv: a.argv.to_vec(),
    }
}

/// `slurm-ckpt supervise --fd 3 --job J ... -- ARGV...` (see `SuperviseRequest::to_argv`).
pub fn supervise(a: &SuperviseArgs<'_>) -> Vec<String> {
    supervise_request(a).to_argv()
}

/// `slurm-ckpt relay --fd FD --rank R`: what the task itself becomes, as the job user.
pub fn relay(fd: i32, rank: u32) -> Vec<String> {
    RelayRequest { fd, rank }.to_argv()
}

/// `slurm-ckpt cleanup --job J --node NODE [--site key=value]...`: run as root by the epilog.
pub fn cleanup(job: u32, node: &str, site: &SiteConfig) -> Vec<String> {
    CleanupRequest {
        job,
        node: node.to_string(),
        site: Some(site.clone()),
        plugstack: None,
    }
    .to_argv()
}

/// Value of `name` in a `KEY=VALUE` list (the job environment).
pub fn env_lookup<'e>(env: &'e [String], name: &str) -> Option<&'e str> {
    env.iter()
        .find_map(|e| e.strip_prefix(name).and_then(|rest| rest.strip_prefix('=')))
}

/// How often the job has been requeued: Slurm 22.05's `S_SLURM_RESTART_COUNT` item says 0 in a
/// step of a requeued batch job, while its environment (which srun inherits from the batch
/// script) has `SLURM_RESTART_COUNT`. The larger of the two. The ranks of one run agree on it;
/// it only names the run's restore meeting directory inside the job's own checkpoint directory.
pub fn restart_count(item: u32, env: &[String]) -> u32 {
    let from_env = env_lookup(env, "SLURM_RESTART_COUNT")
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(0);
    item.max(from_env)
}

/// The task's working directory as the job sees it: `PWD` if absolute, else `/`.
pub fn job_cwd(env: &[String]) -> String {
    match env_lookup(env, "PWD") {
        Some(p) if p.starts_with('/') => p.to_string(),
        _ => "/".to_string(),
    }
}

/// Node name: slurmstepd's own `SLURMD_NODENAME` (authoritative), then the job's, then the hostname.
pub fn node_name(
    process_env: Option<String>,
    job_env: &[String],
    hostname: Option<String>,
) -> Option<String> {
    // It becomes part of the Docker socket path and the job directory: a plain host name only.
    let valid = |s: &str| crate::config::valid_node_name(s);
    process_env
        .filter(|s| valid(s))
        .or_else(|| {
            env_lookup(job_env, "SLURMD_NODENAME")
                .filter(|s| valid(s))
                .map(str::to_string)
        })
        .or_else(|| hostname.filter(|s| valid(s)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn restart_count_from_item_or_job_env() {
        let env = |v: &str| vec![format!("SLURM_RESTART_COUNT={v}")];
        assert_eq!(super::restart_count(0, &env("2")), 2);
        assert_eq!(super::restart_count(3, &env("1")), 3);
        assert_eq!(super::restart_count(0, &env("x")), 0);
        assert_eq!(super::restart_count(0, &[]), 0);
    }

    use super::*;
    use crate::options::{Mount, MpiKind};

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn supervise_minimal() {
        let site = SiteConfig::default();
        let opts = JobOptions {
            image: Some("slurm-ckpt/mpi-test:latest".into()),
            ..JobOptions::default()
        };
        let argv = strings(&["./ring", "--n", "4"]);
        let a = SuperviseArgs {
            job: 42,
            step: 0,
            rank: 3,
            ntasks: 4,
            nnodes: 2,
            node: "node2",
            uid: 1000,
            gid: 1000,
            restart_count: 0,
            instance: None,
            cpus: None,
            mem_mb: None,
            cpuset: None,
            opts: &opts,
            site: &site,
            cwd: "/home/u",
            argv: &argv,
        };
        let v = supervise(&a);
        let mut want = strings(&[
            "slurm-ckpt",
            "supervise",
            "--fd",
            "3",
            "--job",
            "42",
            "--step",
            "0",
            "--rank",
            "3",
            "--ntasks",
            "4",
            "--nnodes",
            "2",
            "--node",
            "node2",
            "--uid",
            "1000",
            "--gid",
            "1000",
            "--restart-count",
            "0",
            "--image",
            "slurm-ckpt/mpi-test:latest",
            "--mpi",
            "mpich",
            "--cwd",
            "/home/u",
        ]);
        want.extend(site.to_helper_args());
        want.extend(strings(&["--", "./ring", "--n", "4"]));
        assert_eq!(v, want);
        // What the helper decodes is what was meant.
        assert_eq!(SuperviseRequest::decode(&v[2..]), Ok(supervise_request(&a)));
    }

    #[test]
    fn supervise_all_options() {
        let site = SiteConfig::default();
        let opts = JobOptions {
            image: Some("img".into()),
            ckpt: Some(CkptDir::Default),
            mounts: vec![
                Mount {
                    src: "/a".into(),
                    dst: "/b".into(),
                    readonly: true,
                },
                Mount {
                    src: "/c".into(),
                    dst: "/d".into(),
                    readonly: false,
                },
            ],
            mpi: Some(MpiKind::OpenMpi),
            ckpt_interval: Some(10),
            env: vec!["UCX_TLS=tcp,self".into()],
            ckpt_compress: None,
            rerun: false,
        };
        let argv: Vec<String> = Vec::new();
        let cpus = CpuList::parse("2-3").unwrap();
        let instance = JobInstance::parse("0123456789abcdef0123456789abcdef").unwrap();
        let a = SuperviseArgs {
            job: 7,
            step: 1,
            rank: 0,
            ntasks: 1,
            nnodes: 1,
            node: "n",
            uid: 1,
            gid: 2,
            restart_count: 3,
            instance: Some(&instance),
            cpus: Some(2),
            mem_mb: Some(512),
            cpuset: Some(&cpus),
            opts: &opts,
            site: &site,
            cwd: "/",
            argv: &argv,
        };
        let v = supervise(&a);
        let joined = v.join(" ");
        assert!(joined.contains(
            "--gid 2 --restart-count 3 --instance 0123456789abcdef0123456789abcdef --cpus 2 --mem-mb 512 --cpuset 2-3 --image img"
        ));
        assert!(joined.contains(
            "--mpi openmpi --ckpt 7 --ckpt-interval 10 --mount /a:/b:ro --mount /c:/d:rw --env UCX_TLS=tcp,self --cwd /"
        ));
        assert_eq!(v.last().map(String::as_str), Some("--"));

        let opts2 = JobOptions {
            ckpt: Some(CkptDir::Path("/var/lib/slurm-ckpt/x".into())),
            ..opts.clone()
        };
        let v = supervise(&SuperviseArgs { opts: &opts2, ..a });
        assert!(v.join(" ").contains("--ckpt /var/lib/slurm-ckpt/x "));
        assert!(v.join(" ").contains("--site compress=none "));
        // The job's compression choice replaces the site's.
        let opts3 = JobOptions {
            ckpt_compress: Some(crate::config::Compression::Zstd(5)),
            ..opts.clone()
        };
        let v = supervise(&SuperviseArgs { opts: &opts3, ..a });
        assert!(v.join(" ").contains("--site compress=zstd:5 "));
        assert!(!v.join(" ").contains("compress=none"));
    }

    #[test]
    fn relay_and_cleanup() {
        assert_eq!(
            relay(11, 5),
            strings(&["slurm-ckpt", "relay", "--fd", "11", "--rank", "5"])
        );
        let site = SiteConfig::default();
        let v = cleanup(9, "node1", &site);
        assert_eq!(
            v[..6],
            strings(&["slurm-ckpt", "cleanup", "--job", "9", "--node", "node1"])
        );
        assert_eq!(v[6..], site.to_helper_args()[..]);
    }

    #[test]
    fn env_helpers() {
        let env = strings(&["PWDX=/no", "PWD=/home/u", "SLURMD_NODENAME=nodeJ", "EMPTY="]);
        assert_eq!(env_lookup(&env, "PWD"), Some("/home/u"));
        assert_eq!(env_lookup(&env, "EMPTY"), Some(""));
        assert_eq!(env_lookup(&env, "MISSING"), None);
        assert_eq!(job_cwd(&env), "/home/u");
        assert_eq!(job_cwd(&strings(&["PWD=relative"])), "/");
        assert_eq!(job_cwd(&[]), "/");
        assert_eq!(
            node_name(Some("nodeP".into()), &env, Some("h".into())).as_deref(),
            Some("nodeP")
        );
        assert_eq!(
            node_name(None, &env, Some("h".into())).as_deref(),
            Some("nodeJ")
        );
        assert_eq!(
            node_name(Some(String::new()), &[], Some("h".into())).as_deref(),
            Some("h")
        );
        assert_eq!(node_name(None, &[], None), None);
        // A job's environment cannot smuggle paths or socket URLs in through the node name.
        let hostile = strings(&["SLURMD_NODENAME=../../etc"]);
        assert_eq!(
            node_name(None, &hostile, Some("h".into())).as_deref(),
            Some("h")
        );
        assert_eq!(node_name(Some("a/b".into()), &[], None), None);
    }
}
