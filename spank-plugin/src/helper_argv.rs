//! The command lines the plugin runs the `slurm-ckpt` helper with: the contract between the two
//! crates. Pure, so it is unit tested; `stepd` and `epilog` only fill in the values.

use crate::config::{CpuList, SiteConfig};
use crate::options::{CkptDir, JobOptions};

/// argv[0] of every helper invocation (the binary itself is `SiteConfig::helper`).
pub const ARGV0: &str = "slurm-ckpt";
/// The supervisor's end of the socket pair is always this descriptor.
pub const SUPERVISOR_FD: i32 = 3;
/// PATH of the supervisor (root) and cleanup processes: never the user's. /usr/local is included:
/// setup installs CRIU (recorded in every checkpoint manifest) as /usr/local/sbin/criu.
pub const ROOT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the supervisor of one task needs to know.
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
    /// The job instance from the job's environment (`SLURM_CKPT_JOB_INSTANCE`), as found: the
    /// helper validates it. None: the job was submitted without one (an older plugin).
    pub instance: Option<&'a str>,
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

/// `slurm-ckpt supervise --fd 3 --job J --step S --rank R --ntasks N --nnodes M --node NODE
///  --uid U --gid G --restart-count C [--instance HEX] [--cpus N] [--mem-mb M] [--cpuset LIST] --image IMAGE --mpi MPI [--ckpt DIR] [--ckpt-interval MIN] [--mount SPEC]... [--env NAME=VALUE]...
///  --cwd CWD [--site key=value]... -- ARGV...`
pub fn supervise(a: &SuperviseArgs<'_>) -> Vec<String> {
    let mut v: Vec<String> = vec![
        ARGV0.into(),
        "supervise".into(),
        "--fd".into(),
        SUPERVISOR_FD.to_string(),
    ];
    let mut kv = |k: &str, val: String| {
        v.push(k.to_string());
        v.push(val);
    };
    kv("--job", a.job.to_string());
    kv("--step", a.step.to_string());
    kv("--rank", a.rank.to_string());
    kv("--ntasks", a.ntasks.to_string());
    kv("--nnodes", a.nnodes.to_string());
    kv("--node", a.node.to_string());
    kv("--uid", a.uid.to_string());
    kv("--gid", a.gid.to_string());
    kv("--restart-count", a.restart_count.to_string());
    if let Some(i) = a.instance {
        kv("--instance", i.to_string());
    }
    if let Some(c) = a.cpus {
        kv("--cpus", c.to_string());
    }
    if let Some(m) = a.mem_mb {
        kv("--mem-mb", m.to_string());
    }
    if let Some(c) = a.cpuset {
        kv("--cpuset", c.to_string());
    }
    kv("--image", a.opts.image.clone().unwrap_or_default());
    kv(
        "--mpi",
        a.opts.mpi.unwrap_or(a.site.mpi_default).to_string(),
    );
    match &a.opts.ckpt {
        // Default directory: named after the job id, so every rank on every node and a requeued
        // run of the same job agree on it without talking to each other.
        Some(CkptDir::Default) => kv("--ckpt", a.job.to_string()),
        Some(CkptDir::Path(p)) => kv("--ckpt", p.clone()),
        None => {}
    }
    if let Some(min) = a.opts.ckpt_interval {
        kv("--ckpt-interval", min.to_string());
    }
    for m in &a.opts.mounts {
        kv("--mount", m.to_string());
    }
    for e in &a.opts.env {
        kv("--env", e.clone());
    }
    kv("--cwd", a.cwd.to_string());
    // The job's own compression choice overrides the site's for its checkpoints.
    match &a.opts.ckpt_compress {
        Some(c) => {
            let mut site = a.site.clone();
            site.compress = *c;
            v.extend(site.to_helper_args());
        }
        None => v.extend(a.site.to_helper_args()),
    }
    v.push("--".into());
    v.extend(a.argv.iter().cloned());
    v
}

/// `slurm-ckpt relay --fd FD --rank R`: what the task itself becomes, as the job user.
pub fn relay(fd: i32, rank: u32) -> Vec<String> {
    vec![
        ARGV0.into(),
        "relay".into(),
        "--fd".into(),
        fd.to_string(),
        "--rank".into(),
        rank.to_string(),
    ]
}

/// `slurm-ckpt cleanup --job J --node NODE [--site key=value]...`: run as root by the epilog.
pub fn cleanup(job: u32, node: &str, site: &SiteConfig) -> Vec<String> {
    let mut v: Vec<String> = vec![
        ARGV0.into(),
        "cleanup".into(),
        "--job".into(),
        job.to_string(),
        "--node".into(),
        node.into(),
    ];
    v.extend(site.to_helper_args());
    v
}

/// Value of `name` in a `KEY=VALUE` list (the job environment).
pub fn env_lookup<'e>(env: &'e [String], name: &str) -> Option<&'e str> {
    env.iter()
        .find_map(|e| e.strip_prefix(name).and_then(|rest| rest.strip_prefix('=')))
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
    let valid = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && !s.starts_with(['-', '.'])
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    };
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
        };
        let argv: Vec<String> = Vec::new();
        let cpus = CpuList::parse("2-3").unwrap();
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
            instance: Some("0123456789abcdef0123456789abcdef"),
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
