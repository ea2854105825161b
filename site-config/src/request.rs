//! The plugin→helper contract: the requests the SPANK plugin runs `slurm-ckpt` with, as types that
//! encode to a command line (plugin) and decode from it (helper). One definition, so the two sides
//! cannot drift; decoding applies the same validators as the plugin's option parser, because the
//! helper runs as root and must not trust that its caller validated anything.
//!
//! The command line stays the transport (not a file or a pipe): `ps` and the tests find a rank's
//! supervisor by it (`slurm-ckpt supervise .* --job J --step S --rank R `), so the order of the
//! flags below is part of the contract.
use crate::instance::JobInstance;
use crate::job_paths::{parse_mount, Mount};
use crate::{
    check_env, parse_image, parse_interval, valid_node_name, ConfigError, CpuList, MpiKind,
    SiteConfig,
};
use std::path::PathBuf;

/// argv[0] of every helper invocation (the binary itself is `SiteConfig::helper`).
pub const ARGV0: &str = "slurm-ckpt";

/// A helper command line that is not a valid request. Display text has no program prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error(
        "unexpected argument '{arg}' (the plugin and the helper are from different versions?)"
    )]
    Unknown { arg: String },
    #[error("{flag} given more than once")]
    Duplicate { flag: &'static str },
    #[error("{flag} needs a value")]
    NoValue { flag: &'static str },
    #[error("{flag} is required")]
    Missing { flag: &'static str },
    #[error("invalid {flag} '{value}': {reason}")]
    Invalid {
        flag: &'static str,
        value: String,
        reason: String,
    },
    #[error("no program to run: expected '-- PROGRAM [ARGS...]' at the end")]
    NoProgram,
    #[error(transparent)]
    Site(#[from] ConfigError),
}

/// `slurm-ckpt supervise`: run and supervise one rank's container (root, from slurmstepd).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuperviseRequest {
    /// Inherited socket to the relay.
    pub fd: i32,
    pub job: u32,
    pub step: u32,
    pub rank: u32,
    pub ntasks: u32,
    pub nnodes: u32,
    /// This node's name (part of the Docker socket path and the job directory).
    pub node: String,
    pub uid: u32,
    pub gid: u32,
    /// SLURM_RESTART_COUNT: 0 on the first run, n after the n-th requeue.
    pub restart_count: u32,
    /// The job instance (`SLURM_CKPT_JOB_INSTANCE`); None: submitted by an older plugin.
    pub instance: Option<JobInstance>,
    /// CPUs of the task (container CPU limit); None = no limit.
    pub cpus: Option<u32>,
    /// Memory of the task in MB (container memory limit); None = no limit.
    pub mem_mb: Option<u64>,
    /// The task's CPUs on this node (the container's cpuset); None = not confined.
    pub cpuset: Option<CpuList>,
    pub image: String,
    pub mpi: MpiKind,
    /// Checkpoint/restart on, in this directory (relative to the user's area, or absolute inside
    /// it: the helper checks it against the area, which only it knows).
    pub ckpt: Option<String>,
    pub ckpt_interval: Option<u32>,
    /// `--container-rerun`: run the step even if it finished in the run a requeued or resumed
    /// script continues (sent as `--rerun yes`).
    pub rerun: bool,
    pub mounts: Vec<Mount>,
    /// `NAME=VALUE` set in the container after the defaults (the job's `--container-env`).
    pub env: Vec<String>,
    /// The task's working directory as the job sees it.
    pub cwd: String,
    /// Site settings; None: the helper reads `plugstack` (by hand; the plugin always sends them).
    pub site: Option<SiteConfig>,
    pub plugstack: Option<PathBuf>,
    /// The job's program and arguments (run by MPI inside the containers).
    pub argv: Vec<String>,
}

/// `slurm-ckpt relay`: what the task itself becomes, as the job user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayRequest {
    /// Inherited socket to the supervisor.
    pub fd: i32,
    pub rank: u32,
}

/// `slurm-ckpt cleanup`: remove a job's containers and files on this node (root, from the epilog).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanupRequest {
    pub job: u32,
    pub node: String,
    /// Site settings; None: the helper reads `plugstack` (by hand; the plugin always sends them).
    pub site: Option<SiteConfig>,
    pub plugstack: Option<PathBuf>,
}

impl SuperviseRequest {
    pub const SUBCOMMAND: &'static str = "supervise";
    const FLAGS: &'static [Flag] = &[
        Flag::one("--fd"),
        Flag::one("--job"),
        Flag::one("--step"),
        Flag::one("--rank"),
        Flag::one("--ntasks"),
        Flag::one("--nnodes"),
        Flag::one("--node"),
        Flag::one("--uid"),
        Flag::one("--gid"),
        Flag::one("--restart-count"),
        Flag::one("--instance"),
        Flag::one("--cpus"),
        Flag::one("--mem-mb"),
        Flag::one("--cpuset"),
        Flag::one("--image"),
        Flag::one("--mpi"),
        Flag::one("--ckpt"),
        Flag::one("--ckpt-interval"),
        Flag::one("--rerun"),
        Flag::many("--mount"),
        Flag::many("--env"),
        Flag::one("--cwd"),
        Flag::one("--plugstack"),
        Flag::many("--site"),
    ];

    /// The whole command line: `slurm-ckpt supervise --fd 3 --job J --step S --rank R ... -- ARGV`.
    pub fn to_argv(&self) -> Vec<String> {
        let mut w = Writer::new(Self::SUBCOMMAND);
        w.kv("--fd", self.fd);
        w.kv("--job", self.job);
        w.kv("--step", self.step);
        w.kv("--rank", self.rank);
        w.kv("--ntasks", self.ntasks);
        w.kv("--nnodes", self.nnodes);
        w.kv("--node", &self.node);
        w.kv("--uid", self.uid);
        w.kv("--gid", self.gid);
        w.kv("--restart-count", self.restart_count);
        w.opt("--instance", self.instance.as_ref());
        w.opt("--cpus", self.cpus);
        w.opt("--mem-mb", self.mem_mb);
        w.opt("--cpuset", self.cpuset.as_ref());
        w.kv("--image", &self.image);
        w.kv("--mpi", self.mpi);
        w.opt("--ckpt", self.ckpt.as_ref());
        w.opt("--ckpt-interval", self.ckpt_interval);
        w.opt("--rerun", self.rerun.then_some("yes"));
        for m in &self.mounts {
            w.kv("--mount", m);
        }
        for e in &self.env {
            w.kv("--env", e);
        }
        w.kv("--cwd", &self.cwd);
        w.site(self.site.as_ref(), self.plugstack.as_ref());
        w.0.push("--".into());
        w.0.extend(self.argv.iter().cloned());
        w.0
    }

    /// The arguments after `slurm-ckpt supervise`, validated.
    pub fn decode<S: AsRef<str>>(args: &[S]) -> Result<Self, RequestError> {
        let (f, rest) = Scanned::scan(args, Self::FLAGS, true)?;
        let argv: Vec<String> = rest.iter().map(|s| s.as_ref().to_string()).collect();
        if argv.is_empty() {
            return Err(RequestError::NoProgram);
        }
        let node = f.node()?;
        let mut mounts: Vec<Mount> = Vec::new();
        for spec in f.all("--mount") {
            let m = parse_mount(spec).map_err(|why| invalid("--mount", spec, why))?;
            if mounts.iter().any(|o| o.dst == m.dst) {
                return Err(invalid("--mount", spec, "its destination is used twice"));
            }
            mounts.push(m);
        }
        let env: Vec<String> = f.all("--env").iter().map(|e| e.to_string()).collect();
        check_env(&env).map_err(|why| invalid("--env", &env.join(" "), why))?;
        let (site, plugstack) = f.site()?;
        Ok(SuperviseRequest {
            fd: f.number("--fd")?,
            job: f.number("--job")?,
            step: f.number("--step")?,
            rank: f.number("--rank")?,
            ntasks: f.number("--ntasks")?,
            nnodes: f.number_or("--nnodes", 1)?,
            node: node.to_string(),
            uid: f.number("--uid")?,
            gid: f.number("--gid")?,
            restart_count: f.number_or("--restart-count", 0)?,
            instance: f.parsed("--instance", |s| {
                JobInstance::parse(s).map_err(|e| e.to_string())
            })?,
            cpus: f.optional_number("--cpus")?,
            mem_mb: f.optional_number("--mem-mb")?,
            cpuset: f.parsed("--cpuset", |s| CpuList::parse(s).map_err(|e| e.reason))?,
            image: f
                .parsed("--image", parse_image)?
                .ok_or(RequestError::Missing { flag: "--image" })?,
            mpi: f
                .parsed("--mpi", |s| {
                    MpiKind::parse(s).ok_or_else(|| format!("valid values are {}", MpiKind::VALID))
                })?
                .ok_or(RequestError::Missing { flag: "--mpi" })?,
            ckpt: f.get("--ckpt").map(str::to_string),
            ckpt_interval: f.parsed("--ckpt-interval", parse_interval)?,
            rerun: f
                .parsed("--rerun", |s| match s {
                    "yes" => Ok(true),
                    _ => Err("the only value is yes".to_string()),
                })?
                .unwrap_or(false),
            mounts,
            env,
            cwd: f.get("--cwd").unwrap_or("/").to_string(),
            site,
            plugstack,
            argv,
        })
    }
}

impl RelayRequest {
    pub const SUBCOMMAND: &'static str = "relay";
    const FLAGS: &'static [Flag] = &[Flag::one("--fd"), Flag::one("--rank")];

    /// `slurm-ckpt relay --fd FD --rank R`.
    pub fn to_argv(&self) -> Vec<String> {
        let mut w = Writer::new(Self::SUBCOMMAND);
        w.kv("--fd", self.fd);
        w.kv("--rank", self.rank);
        w.0
    }

    pub fn decode<S: AsRef<str>>(args: &[S]) -> Result<Self, RequestError> {
        let (f, _) = Scanned::scan(args, Self::FLAGS, false)?;
        Ok(RelayRequest {
            fd: f.number("--fd")?,
            rank: f.number("--rank")?,
        })
    }
}

impl CleanupRequest {
    pub const SUBCOMMAND: &'static str = "cleanup";
    const FLAGS: &'static [Flag] = &[
        Flag::one("--job"),
        Flag::one("--node"),
        Flag::one("--plugstack"),
        Flag::many("--site"),
    ];

    /// `slurm-ckpt cleanup --job J --node NODE [--site key=value]...`.
    pub fn to_argv(&self) -> Vec<String> {
        let mut w = Writer::new(Self::SUBCOMMAND);
        w.kv("--job", self.job);
        w.kv("--node", &self.node);
        w.site(self.site.as_ref(), self.plugstack.as_ref());
        w.0
    }

    pub fn decode<S: AsRef<str>>(args: &[S]) -> Result<Self, RequestError> {
        let (f, _) = Scanned::scan(args, Self::FLAGS, false)?;
        let node = f.node()?;
        let (site, plugstack) = f.site()?;
        Ok(CleanupRequest {
            job: f.number("--job")?,
            node: node.to_string(),
            site,
            plugstack,
        })
    }
}

fn invalid(flag: &'static str, value: &str, reason: impl Into<String>) -> RequestError {
    RequestError::Invalid {
        flag,
        value: value.chars().take(200).collect(),
        reason: reason.into(),
    }
}

/// One flag of a request; `many` flags may repeat and keep their order.
struct Flag {
    name: &'static str,
    many: bool,
}

impl Flag {
    const fn one(name: &'static str) -> Flag {
        Flag { name, many: false }
    }
    const fn many(name: &'static str) -> Flag {
        Flag { name, many: true }
    }
}

/// Builds a command line: program, subcommand, then `--flag value` pairs.
struct Writer(Vec<String>);

impl Writer {
    fn new(subcommand: &str) -> Writer {
        Writer(vec![ARGV0.into(), subcommand.into()])
    }
    fn kv(&mut self, flag: &str, value: impl std::fmt::Display) {
        self.0.push(flag.into());
        self.0.push(value.to_string());
    }
    fn opt(&mut self, flag: &str, value: Option<impl std::fmt::Display>) {
        if let Some(v) = value {
            self.kv(flag, v);
        }
    }
    fn site(&mut self, site: Option<&SiteConfig>, plugstack: Option<&PathBuf>) {
        self.opt("--plugstack", plugstack.map(|p| p.display()));
        if let Some(s) = site {
            self.0.extend(s.to_helper_args());
        }
    }
}

/// The values of a scanned command line, by flag.
struct Scanned<'a> {
    flags: &'static [Flag],
    values: Vec<Vec<&'a str>>,
}

impl<'a> Scanned<'a> {
    /// `--flag value` or `--flag=value` pairs; with `trailing`, `--` ends them and the rest is
    /// returned as is (the job's own argv, whatever it looks like).
    fn scan<S: AsRef<str>>(
        args: &'a [S],
        flags: &'static [Flag],
        trailing: bool,
    ) -> Result<(Scanned<'a>, &'a [S]), RequestError> {
        let mut values: Vec<Vec<&'a str>> = vec![Vec::new(); flags.len()];
        let mut i = 0;
        while i < args.len() {
            let arg = args[i].as_ref();
            if trailing && arg == "--" {
                return Ok((Scanned { flags, values }, &args[i + 1..]));
            }
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n, Some(v)),
                _ => (arg, None),
            };
            let Some(idx) = flags.iter().position(|f| f.name == name) else {
                return Err(RequestError::Unknown {
                    arg: arg.chars().take(200).collect(),
                });
            };
            let flag = &flags[idx];
            let value = match inline {
                Some(v) => v,
                None => {
                    i += 1;
                    args.get(i)
                        .map(AsRef::as_ref)
                        .ok_or(RequestError::NoValue { flag: flag.name })?
                }
            };
            if !flag.many && !values[idx].is_empty() {
                return Err(RequestError::Duplicate { flag: flag.name });
            }
            values[idx].push(value);
            i += 1;
        }
        Ok((Scanned { flags, values }, &args[args.len()..]))
    }

    fn all(&self, flag: &str) -> &[&'a str] {
        match self.flags.iter().position(|f| f.name == flag) {
            Some(i) => &self.values[i],
            None => &[],
        }
    }

    fn get(&self, flag: &str) -> Option<&'a str> {
        self.all(flag).first().copied()
    }

    fn required(&self, flag: &'static str) -> Result<&'a str, RequestError> {
        self.get(flag).ok_or(RequestError::Missing { flag })
    }

    fn parsed<T, E: Into<String>>(
        &self,
        flag: &'static str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<Option<T>, RequestError> {
        self.get(flag)
            .map(|v| parse(v).map_err(|why| invalid(flag, v, why)))
            .transpose()
    }

    fn optional_number<T: std::str::FromStr>(
        &self,
        flag: &'static str,
    ) -> Result<Option<T>, RequestError> {
        self.parsed(flag, |v| {
            v.parse::<T>()
                .map_err(|_| "expected a whole number in range".to_string())
        })
    }

    fn number<T: std::str::FromStr>(&self, flag: &'static str) -> Result<T, RequestError> {
        self.optional_number(flag)?
            .ok_or(RequestError::Missing { flag })
    }

    fn number_or<T: std::str::FromStr>(
        &self,
        flag: &'static str,
        default: T,
    ) -> Result<T, RequestError> {
        Ok(self.optional_number(flag)?.unwrap_or(default))
    }

    /// `--node NODE`: a plain host name (it becomes part of socket paths and directories).
    fn node(&self) -> Result<&'a str, RequestError> {
        let node = self.required("--node")?;
        if valid_node_name(node) {
            Ok(node)
        } else {
            Err(invalid(
                "--node",
                node,
                "letters, digits, '.', '-', '_' only, at most 64, not starting with '.' or '-'",
            ))
        }
    }

    /// `--site key=value`... (all of them, or none: then plugstack.conf) and `--plugstack PATH`.
    fn site(&self) -> Result<(Option<SiteConfig>, Option<PathBuf>), RequestError> {
        let pairs = self.all("--site");
        let site = if pairs.is_empty() {
            None
        } else {
            Some(SiteConfig::parse(pairs)?)
        };
        Ok((site, self.get("--plugstack").map(PathBuf::from)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn full() -> SuperviseRequest {
        SuperviseRequest {
            fd: 3,
            job: 7,
            step: 1,
            rank: 0,
            ntasks: 2,
            nnodes: 1,
            node: "node-1".into(),
            uid: 1000,
            gid: 100,
            restart_count: 3,
            instance: Some(JobInstance::parse("0123456789abcdef0123456789abcdef").unwrap()),
            cpus: Some(2),
            mem_mb: Some(512),
            cpuset: Some(CpuList::parse("2-3").unwrap()),
            image: "slurm-ckpt/mpi-test:latest".into(),
            mpi: MpiKind::OpenMpi,
            ckpt: Some("runs/a".into()),
            ckpt_interval: Some(10),
            rerun: true,
            mounts: vec![
                parse_mount("/a:/b:ro").unwrap(),
                parse_mount("/c:/d").unwrap(),
            ],
            env: strings(&["UCX_TLS=tcp,self", "X="]),
            cwd: "/home/u".into(),
            site: Some(SiteConfig::parse(&["compress=zstd:5", "timeout=7"]).unwrap()),
            plugstack: None,
            argv: strings(&["./ring", "--", "-x"]),
        }
    }

    #[test]
    fn supervise_round_trips() {
        let r = full();
        let argv = r.to_argv();
        assert_eq!(argv[..2], strings(&["slurm-ckpt", "supervise"]));
        assert_eq!(SuperviseRequest::decode(&argv[2..]), Ok(r.clone()));
        let minimal = SuperviseRequest {
            instance: None,
            cpus: None,
            mem_mb: None,
            cpuset: None,
            ckpt: None,
            ckpt_interval: None,
            rerun: false,
            mounts: vec![],
            env: vec![],
            site: None,
            plugstack: Some("/etc/x.conf".into()),
            ..r
        };
        let argv = minimal.to_argv();
        assert_eq!(SuperviseRequest::decode(&argv[2..]), Ok(minimal));
    }

    #[test]
    fn supervise_flag_order_is_what_ps_and_the_tests_match() {
        let j = full().to_argv().join(" ");
        assert!(j.starts_with(
            "slurm-ckpt supervise --fd 3 --job 7 --step 1 --rank 0 --ntasks 2 --nnodes 1 --node node-1 \
             --uid 1000 --gid 100 --restart-count 3 --instance 0123456789abcdef0123456789abcdef \
             --cpus 2 --mem-mb 512 --cpuset 2-3 --image slurm-ckpt/mpi-test:latest --mpi openmpi \
             --ckpt runs/a --ckpt-interval 10 --rerun yes --mount /a:/b:ro --mount /c:/d:rw \
             --env UCX_TLS=tcp,self --env X= --cwd /home/u --site helper="
        ));
        assert!(
            j.ends_with(" --site preempt_window=warn --site key_file=/etc/munge/munge.key --site runc_path= --site option_prefix=container --site max_ranks=1024 --site split_rank_output=yes --site storage_root_uid=0 --site storage_fstype= -- ./ring -- -x"),
            "{j}"
        );
    }

    #[test]
    fn supervise_defaults_and_inline_values() {
        let args = strings(&[
            "--fd=3", "--job", "7", "--step", "0", "--rank", "0", "--ntasks", "1", "--node", "n",
            "--uid", "1", "--gid", "1", "--image", "img", "--mpi", "none", "--", "prog",
        ]);
        let r = SuperviseRequest::decode(&args).unwrap();
        assert_eq!((r.fd, r.nnodes, r.restart_count), (3, 1, 0));
        assert_eq!(r.cwd, "/");
        assert_eq!(r.site, None);
        assert_eq!(r.argv, strings(&["prog"]));
    }

    #[test]
    fn supervise_refuses_what_the_plugin_would() {
        let good = full().to_argv()[2..].to_vec();
        let with = |flag: &str, value: &str| -> Vec<String> {
            let mut v = good.clone();
            let i = v.iter().position(|a| a == flag).unwrap();
            v[i + 1] = value.to_string();
            v
        };
        let cases = [
            ("--node", "../etc", "--node"),
            ("--instance", "ABC", "lowercase hex"),
            ("--cpuset", "3-1", "--cpuset"),
            ("--image", "-x", "letter or digit"),
            ("--mpi", "intel", "mpich, openmpi or none"),
            ("--ckpt-interval", "0", "minutes"),
            ("--mount", "/x:/proc/1", "reserved"),
            ("--mount", "/x:/d", "used twice"),
            ("--env", "SLURM_JOB_ID=1", "reserved"),
            ("--env", "1X=1", "not a variable name"),
            ("--env", "X=2", "given twice"),
            ("--site", "bogus=1", "bogus"),
            ("--job", "-1", "--job"),
        ];
        for (flag, value, why) in cases {
            let e = SuperviseRequest::decode(&with(flag, value)).unwrap_err();
            assert!(e.to_string().contains(why), "{flag} {value}: {e}");
        }
        let mut v = good.clone();
        v.truncate(v.iter().position(|a| a == "--").unwrap() + 1);
        assert_eq!(SuperviseRequest::decode(&v), Err(RequestError::NoProgram));
        let mut v = good.clone();
        v.insert(0, "--fd".into());
        v.insert(1, "4".into());
        assert_eq!(
            SuperviseRequest::decode(&v),
            Err(RequestError::Duplicate { flag: "--fd" })
        );
        let v = strings(&["--fd", "3", "--node", "n", "--", "p"]);
        assert_eq!(
            SuperviseRequest::decode(&v),
            Err(RequestError::Missing { flag: "--job" })
        );
        let v = strings(&["--bogus", "1"]);
        assert!(matches!(
            SuperviseRequest::decode(&v),
            Err(RequestError::Unknown { .. })
        ));
        assert_eq!(
            SuperviseRequest::decode(&strings(&["--fd"])),
            Err(RequestError::NoValue { flag: "--fd" })
        );
    }

    #[test]
    fn relay_and_cleanup_round_trip() {
        let r = RelayRequest { fd: 11, rank: 5 };
        let argv = r.to_argv();
        assert_eq!(
            argv,
            strings(&["slurm-ckpt", "relay", "--fd", "11", "--rank", "5"])
        );
        assert_eq!(RelayRequest::decode(&argv[2..]), Ok(r));

        let site = SiteConfig::default();
        let c = CleanupRequest {
            job: 9,
            node: "node1".into(),
            site: Some(site.clone()),
            plugstack: None,
        };
        let argv = c.to_argv();
        assert_eq!(
            argv[..6],
            strings(&["slurm-ckpt", "cleanup", "--job", "9", "--node", "node1"])
        );
        assert_eq!(argv[6..], site.to_helper_args()[..]);
        assert_eq!(CleanupRequest::decode(&argv[2..]), Ok(c));
        let by_hand = strings(&["--job", "9", "--node", "n", "--plugstack", "/p.conf"]);
        let c = CleanupRequest::decode(&by_hand).unwrap();
        assert_eq!((c.site, c.plugstack), (None, Some("/p.conf".into())));
        assert!(CleanupRequest::decode(&strings(&["--job", "9", "--node", "a/b"])).is_err());
    }
}
