//! Site settings of slurm-container-ckpt: the `key=value` arguments after the plugin path in
//! plugstack.conf. One definition for the SPANK plugin (which validates them inside Slurm) and the
//! helper (which gets them back as `--site key=value`, or reads plugstack.conf for the admin CLI and
//! the runtime wrapper).
//!
//! Pure Rust, like pyxis' config.c: defaults, then the arguments; an unknown key or a bad value is
//! a hard error naming it.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

mod cpulist;
pub mod instance;
mod job_env;
pub mod job_paths;
pub mod keydoc;
mod names;
pub mod option_names;
pub mod plugstack;
pub mod request;
pub mod user_paths;
pub use cpulist::{CpuList, CpuListError, CPU_ID_LIMIT};
pub use job_env::{check_env, parse_env, parse_interval, INTERVAL_MAX_MIN, RESERVED_ENV_PREFIXES};
pub use names::{
    normalize_path, parse_image, valid_node_name, MpiKind, IMAGE_MAX_LEN, PATH_MAX_LEN,
};

/// The one prefix of the messages users and admins see from the product, whichever side (plugin
/// or helper) writes them. The plugin's Slurm name (`container-ckpt`) only tags its `--help` lines.
pub const MESSAGE_PREFIX: &str = "slurm-ckpt";

/// File name of the plugin, by which its plugstack.conf line is found.
pub const PLUGIN_FILE: &str = "spank_container_ckpt.so";

/// Every key, in the order they are documented and rendered for the helper.
pub const KEYS: [&str; 32] = [
    "helper",
    "ckpt_root",
    "runtime_dir",
    "docker_socket",
    "network",
    "subnet",
    "image_allowlist",
    "mpi_default",
    "order_policy",
    "timeout",
    "enabled",
    "runtime",
    "keep_generations",
    "dump_parallel",
    "data_path",
    "compress",
    "stage_dir",
    "stage_dumps",
    "incremental",
    "cpu_quota",
    "encrypt",
    "on_restore_failure",
    "restore_compat",
    "cpuinfo_path",
    "preempt_window",
    "key_file",
    "runc_path",
    "option_prefix",
    "max_ranks",
    "split_rank_output",
    "storage_root_uid",
    "storage_fstype",
];

/// Longest helper call timeout (one day).
pub const TIMEOUT_MAX_SECS: u32 = 86_400;
/// Most checkpoint generations kept per job.
pub const KEEP_GENERATIONS_MAX: u32 = 100;
/// Largest per-node limit on concurrent dumps (0 = no limit).
pub const DUMP_PARALLEL_MAX: u32 = 256;
/// Largest site maximum of ranks per job (a /16 holds about 65000 container addresses).
pub const MAX_RANKS_MAX: u32 = 65_536;

/// In which order ranks are frozen and resumed around a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderPolicy {
    FreezeAll,
    CfRl,
    ClRl,
    CfRf,
    ClRf,
}

impl OrderPolicy {
    pub const ALL: [OrderPolicy; 5] = [
        OrderPolicy::FreezeAll,
        OrderPolicy::CfRl,
        OrderPolicy::ClRl,
        OrderPolicy::CfRf,
        OrderPolicy::ClRf,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderPolicy::FreezeAll => "freeze-all",
            OrderPolicy::CfRl => "cf-rl",
            OrderPolicy::ClRl => "cl-rl",
            OrderPolicy::CfRf => "cf-rf",
            OrderPolicy::ClRf => "cl-rf",
        }
    }

    pub fn parse(s: &str) -> Option<OrderPolicy> {
        OrderPolicy::ALL.iter().copied().find(|p| p.as_str() == s)
    }
}

impl fmt::Display for OrderPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What becomes of a job whose restore failed on some rank (refused images, CRIU error, a lost
/// node): it never starts from scratch silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreFailure {
    /// The job fails; the generation stays for a later manual requeue.
    Fail,
    /// The job is requeued and held for the user or admin to decide.
    Hold,
    /// The generation is marked bad and the job requeued to restore the previous good one (held
    /// when there is none).
    Previous,
}

impl RestoreFailure {
    pub const ALL: [RestoreFailure; 3] = [
        RestoreFailure::Fail,
        RestoreFailure::Hold,
        RestoreFailure::Previous,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RestoreFailure::Fail => "fail",
            RestoreFailure::Hold => "hold",
            RestoreFailure::Previous => "previous",
        }
    }

    pub fn parse(s: &str) -> Option<RestoreFailure> {
        RestoreFailure::ALL
            .iter()
            .copied()
            .find(|p| p.as_str() == s)
    }
}

/// An IPv4 network in CIDR form with no host bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub base: Ipv4Addr,
    pub prefix: u8,
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

impl std::str::FromStr for Subnet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        subnet(s)
    }
}

/// Addresses at the start of the subnet never given to containers (gateway, infrastructure).
pub const SUBNET_RESERVED: u32 = 256;

impl Subnet {
    /// Number of addresses in the network.
    pub fn size(&self) -> u32 {
        1u32 << (32 - u32::from(self.prefix))
    }

    /// Addresses jobs may lease: all but the reserved first ones and the broadcast address.
    pub fn job_addresses(&self) -> u32 {
        self.size().saturating_sub(SUBNET_RESERVED + 1)
    }
}

/// A job with more ranks than the site allows or its subnet can address at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{ntasks} ranks exceed this cluster's limit of {limit} per job ({why})")]
pub struct RankLimit {
    pub ntasks: u32,
    pub limit: u32,
    pub why: &'static str,
}

impl SiteConfig {
    /// Whether a job of `ntasks` ranks can run at all: the site's `max_ranks` and the subnet's
    /// leasable addresses. Whether enough of those are free is known only at the job's start.
    pub fn check_ntasks(&self, ntasks: u32) -> Result<(), RankLimit> {
        let subnet = self.subnet.job_addresses();
        let (limit, why) = if self.max_ranks <= subnet {
            (self.max_ranks, "site setting max_ranks")
        } else {
            (subnet, "addresses in the site subnet")
        };
        if ntasks > limit {
            return Err(RankLimit { ntasks, limit, why });
        }
        Ok(())
    }
}

/// How CRIU's images travel between a container and the checkpoint storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataPath {
    /// The runtime wrapper points CRIU at the checkpoint storage.
    Direct,
    /// Docker's own path through containerd's content store (slower; for comparison).
    Docker,
}

impl DataPath {
    pub fn as_str(self) -> &'static str {
        match self {
            DataPath::Direct => "direct",
            DataPath::Docker => "docker",
        }
    }
}

/// Whether CRIU dumps into the node's `stage_dir` even when the images are stored as they are
/// (compression, incremental storage and encryption always stage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageDumps {
    /// Staged when the checkpoint root lies on a network file system (NFS, Lustre, GPFS, CephFS,
    /// BeeGFS, FUSE, ...): the job is held only for a local dump, and CRIU never meets the
    /// storage's own failures; written straight to a local checkpoint root.
    Auto,
    Yes,
    /// Straight to the storage: nodes whose `stage_dir` is small or in memory (diskless nodes).
    No,
}

impl StageDumps {
    pub fn as_str(self) -> &'static str {
        match self {
            StageDumps::Auto => "auto",
            StageDumps::Yes => "yes",
            StageDumps::No => "no",
        }
    }
}

/// Compression of stored checkpoint images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Zstd(i32),
}

impl Compression {
    /// `none`, `zstd` (level 1: the fast end, where compression can keep up with storage) or
    /// `zstd:LEVEL` with LEVEL in 1..=19.
    pub fn parse(v: &str) -> Result<Self, String> {
        let bad = || "valid values are none, zstd, zstd:LEVEL (LEVEL 1..19)".to_string();
        match v.split_once(':') {
            None if v == "none" => Ok(Compression::None),
            None if v == "zstd" => Ok(Compression::Zstd(1)),
            Some(("zstd", l)) => match whole_in(l, 1..=19) {
                Some(n) => Ok(Compression::Zstd(n as i32)),
                None => Err(bad()),
            },
            _ => Err(bad()),
        }
    }

    pub fn name(self) -> String {
        match self {
            Compression::None => "none".into(),
            Compression::Zstd(l) => format!("zstd:{l}"),
        }
    }
}

/// How strictly a node is checked against a generation's compatibility record before a rank
/// restores on it (helper's compat.rs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreCompat {
    /// Same CPU vendor, CPU flags a superset of the recorded ones, same page size, and the same
    /// kernel, CRIU, runc and Docker versions.
    Strict,
    /// Same CPU vendor, CPU flags a superset of the recorded ones, same page size.
    Cpu,
    /// No check: CRIU finds out.
    Off,
}

impl RestoreCompat {
    pub fn as_str(self) -> &'static str {
        match self {
            RestoreCompat::Strict => "strict",
            RestoreCompat::Cpu => "cpu",
            RestoreCompat::Off => "off",
        }
    }

    pub fn parse(v: &str) -> Result<Self, String> {
        match v {
            "strict" => Ok(RestoreCompat::Strict),
            "cpu" => Ok(RestoreCompat::Cpu),
            "off" => Ok(RestoreCompat::Off),
            _ => Err("valid values are strict, cpu, off".into()),
        }
    }
}

/// What to do when a job's checkpoint is not expected to fit in the time Slurm gives it between
/// SIGTERM and SIGKILL (helper's window.rs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreemptWindow {
    /// Say so in the job's output and `slurm-ckpt status`.
    Warn,
    /// Fail the job at its start.
    Error,
    /// Warn, and checkpoint it every N minutes unless it asked for an interval itself.
    Periodic(u32),
}

impl PreemptWindow {
    pub fn parse(v: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "valid values are warn, error, periodic:MINUTES (MINUTES 1..{INTERVAL_MAX_MIN})"
            )
        };
        match v.split_once(':') {
            None if v == "warn" => Ok(PreemptWindow::Warn),
            None if v == "error" => Ok(PreemptWindow::Error),
            Some(("periodic", m)) => whole_in(m, 1..=INTERVAL_MAX_MIN)
                .map(PreemptWindow::Periodic)
                .ok_or_else(bad),
            _ => Err(bad()),
        }
    }

    pub fn name(self) -> String {
        match self {
            PreemptWindow::Warn => "warn".into(),
            PreemptWindow::Error => "error".into(),
            PreemptWindow::Periodic(m) => format!("periodic:{m}"),
        }
    }
}

/// The plugin's site settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteConfig {
    /// Absolute path of the `slurm-ckpt` helper binary.
    pub helper: PathBuf,
    /// Absolute root under which checkpoint directories live.
    pub ckpt_root: PathBuf,
    /// Absolute directory for per-node runtime state.
    pub runtime_dir: PathBuf,
    /// Docker endpoint template, `%n` = node name.
    pub docker_socket: String,
    /// Docker network of the rank containers.
    pub network: String,
    /// Address range of the rank containers.
    pub subnet: Subnet,
    /// Glob patterns of allowed images; empty = every image.
    pub image_allowlist: Vec<String>,
    pub mpi_default: MpiKind,
    pub order_policy: OrderPolicy,
    /// Helper call timeout in seconds.
    pub timeout_secs: u64,
    pub enabled: bool,
    /// Docker runtime of the rank containers (empty = the daemon's default runc).
    pub runtime: String,
    /// Complete checkpoint generations kept per job.
    pub keep_generations: u32,
    /// Rank dumps that may run at once on one node (0 = no limit).
    pub dump_parallel: u32,
    /// Path of CRIU images: direct (runtime wrapper) or Docker's own, slower path. Without the
    /// wrapper (`runtime=`) it is always Docker's path.
    pub data_path: DataPath,
    /// Compression of the stored images; anything but none dumps into `stage_dir` first.
    pub compress: Compression,
    /// Node-local directory where CRIU dumps before its images are packed (and a restore unpacks).
    pub stage_dir: PathBuf,
    /// Whether uncompressed, unencrypted images are dumped into `stage_dir` too, then copied.
    pub stage_dumps: StageDumps,
    /// Chunked page images, unchanged chunks linked from the previous generation.
    pub incremental: bool,
    /// Also cap each rank container's CPU time at its task's CPU count (CFS quota); its cpuset
    /// (the task's CPUs) applies either way.
    pub cpu_quota: bool,
    /// Encrypt every stored image file with a per-user key derived from the site key (images then
    /// always dump into `stage_dir` first).
    pub encrypt: bool,
    pub on_restore_failure: RestoreFailure,
    /// Check of a node against a generation's compatibility record before a rank restores there.
    pub restore_compat: RestoreCompat,
    /// Where a node's CPU description is read (`%n` = node name): /proc/cpuinfo, or per-node files
    /// to emulate different CPUs on virtual nodes sharing one host (tests).
    pub cpuinfo_path: String,
    /// A checkpoint that will not fit in the job's preemption or requeue window.
    pub preempt_window: PreemptWindow,
    /// The site secret (identical on every node, root-only) that the job ssh keys and the
    /// checkpoint MAC/encryption keys are derived from: munge's key by default.
    pub key_file: PathBuf,
    /// The runc the runtime wrapper runs and whose version is recorded; `None` = the first of
    /// [`RUNC_DEFAULTS`] that exists.
    pub runc_path: Option<PathBuf>,
    /// What replaces `container` in the user options' names (option_names.rs), so the plugin can
    /// live beside pyxis.
    pub option_prefix: String,
    /// Most ranks (containers) one job may run; the subnet's free addresses may allow fewer.
    pub max_ranks: u32,
    /// Each MPI rank writes to its own container's output (its own Slurm task's output, as in a
    /// native step) instead of through the MPI launcher to rank 0's.
    pub split_rank_output: bool,
    /// Who root is on the checkpoint storage: 0, or the account a root-squashing export maps
    /// root to (its anonymous uid). Root's files there belong to this uid; nothing else is
    /// trusted as root's (docs/STORAGE.md).
    pub storage_root_uid: u32,
    /// The file system types `ckpt_root` must lie on (mountinfo's names: `nfs4`, `fuse.glusterfs`,
    /// `lustre`); empty = any. A node whose storage is not mounted then refuses to checkpoint into
    /// the mount point's directory on its own disk.
    pub storage_fstype: Vec<String>,
}

/// Where runc is looked for when `runc_path` is empty: Debian's package, then Docker CE's.
pub const RUNC_DEFAULTS: [&str; 2] = ["/usr/sbin/runc", "/usr/bin/runc"];

impl Default for SiteConfig {
    fn default() -> Self {
        SiteConfig {
            helper: "/usr/bin/slurm-ckpt".into(),
            ckpt_root: "/var/lib/slurm-ckpt".into(),
            runtime_dir: "/run/slurm-ckpt".into(),
            docker_socket: "unix:///var/run/docker.sock".into(),
            network: "ckpt-net".into(),
            subnet: Subnet {
                base: Ipv4Addr::new(10, 88, 0, 0),
                prefix: 16,
            },
            image_allowlist: Vec::new(),
            mpi_default: MpiKind::Mpich,
            order_policy: OrderPolicy::FreezeAll,
            timeout_secs: 300,
            enabled: true,
            runtime: "slurm-ckpt".into(),
            keep_generations: 2,
            dump_parallel: 0,
            data_path: DataPath::Direct,
            compress: Compression::None,
            stage_dir: "/var/tmp/slurm-ckpt-stage".into(),
            stage_dumps: StageDumps::Auto,
            incremental: false,
            cpu_quota: false,
            encrypt: false,
            on_restore_failure: RestoreFailure::Fail,
            restore_compat: RestoreCompat::Cpu,
            cpuinfo_path: "/proc/cpuinfo".into(),
            preempt_window: PreemptWindow::Warn,
            key_file: "/etc/munge/munge.key".into(),
            runc_path: None,
            option_prefix: option_names::DEFAULT_PREFIX.into(),
            max_ranks: 1024,
            split_rank_output: true,
            storage_root_uid: 0,
            storage_fstype: Vec::new(),
        }
    }
}

/// A plugstack.conf argument the plugin cannot accept. Display text has no plugin prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("plugstack.conf argument '{arg}' is not key=value (valid keys: {valid})", valid = KEYS.join(", "))]
    NotKeyValue { arg: String },
    #[error("unknown site setting '{key}' in plugstack.conf (valid keys: {valid})", valid = KEYS.join(", "))]
    UnknownKey { key: String },
    #[error("site setting '{key}' given more than once in plugstack.conf")]
    Duplicate { key: &'static str },
    #[error("cannot read {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("{path}: includes nested deeper than {max} (an include loop?)")]
    IncludeDepth { path: String, max: usize },
    #[error("{path}:{line}: bad include: {reason}")]
    BadInclude {
        path: String,
        line: usize,
        reason: String,
    },
    #[error("invalid site setting {key}={value} in plugstack.conf: {reason}")]
    BadValue {
        key: &'static str,
        value: String,
        reason: String,
    },
}

impl SiteConfig {
    /// Defaults overridden by the plugstack.conf arguments Slurm passes to every callback.
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<SiteConfig, ConfigError> {
        let mut cfg = SiteConfig::default();
        let mut seen = [false; KEYS.len()];
        for arg in args {
            let arg = arg.as_ref();
            let Some((key, value)) = arg.split_once('=') else {
                return Err(ConfigError::NotKeyValue {
                    arg: arg.to_string(),
                });
            };
            let Some(idx) = KEYS.iter().position(|k| *k == key) else {
                return Err(ConfigError::UnknownKey {
                    key: key.to_string(),
                });
            };
            let key: &'static str = KEYS[idx];
            if std::mem::replace(&mut seen[idx], true) {
                return Err(ConfigError::Duplicate { key });
            }
            cfg.set(key, value)
                .map_err(|reason| ConfigError::BadValue {
                    key,
                    value: value.to_string(),
                    reason,
                })?;
        }
        Ok(cfg)
    }

    fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        match key {
            "helper" => self.helper = absolute_path(value)?.into(),
            "ckpt_root" => self.ckpt_root = absolute_path(value)?.into(),
            "runtime_dir" => self.runtime_dir = absolute_path(value)?.into(),
            "docker_socket" => self.docker_socket = docker_socket(value)?,
            "network" => self.network = network_name(value)?,
            "subnet" => self.subnet = subnet(value)?,
            "image_allowlist" => self.image_allowlist = allowlist(value)?,
            "mpi_default" => {
                self.mpi_default = MpiKind::parse(value)
                    .ok_or_else(|| format!("valid values are {}", MpiKind::VALID))?
            }
            "order_policy" => {
                self.order_policy = OrderPolicy::parse(value).ok_or_else(|| {
                    let all: Vec<&str> = OrderPolicy::ALL.iter().map(|p| p.as_str()).collect();
                    format!("valid values are {}", all.join(", "))
                })?
            }
            "timeout" => self.timeout_secs = timeout(value)?.into(),
            "enabled" => self.enabled = boolean(value)?,
            "runtime" => self.runtime = runtime_name(value)?,
            "keep_generations" => self.keep_generations = keep_generations(value)?,
            "dump_parallel" => self.dump_parallel = dump_parallel(value)?,
            "data_path" => {
                self.data_path = match value {
                    "direct" => DataPath::Direct,
                    "docker" => DataPath::Docker,
                    _ => return Err("valid values are direct, docker".into()),
                }
            }
            "compress" => self.compress = Compression::parse(value)?,
            "stage_dir" => self.stage_dir = absolute_path(value)?.into(),
            "stage_dumps" => {
                self.stage_dumps = match value {
                    "auto" => StageDumps::Auto,
                    "yes" => StageDumps::Yes,
                    "no" => StageDumps::No,
                    _ => return Err("valid values are auto, yes, no".into()),
                }
            }
            "incremental" => self.incremental = boolean(value)?,
            "cpu_quota" => self.cpu_quota = boolean(value)?,
            "encrypt" => self.encrypt = boolean(value)?,
            "on_restore_failure" => {
                self.on_restore_failure = RestoreFailure::parse(value)
                    .ok_or_else(|| "valid values are fail, hold, previous".to_string())?
            }
            "restore_compat" => self.restore_compat = RestoreCompat::parse(value)?,
            "cpuinfo_path" => self.cpuinfo_path = node_path(value)?,
            "preempt_window" => self.preempt_window = PreemptWindow::parse(value)?,
            "key_file" => self.key_file = absolute_path(value)?.into(),
            "runc_path" => {
                self.runc_path = match value {
                    "" => None,
                    v => Some(absolute_path(v)?.into()),
                }
            }
            "option_prefix" => self.option_prefix = option_names::parse_prefix(value)?,
            "max_ranks" => self.max_ranks = max_ranks(value)?,
            "split_rank_output" => self.split_rank_output = boolean(value)?,
            "storage_root_uid" => self.storage_root_uid = storage_root_uid(value)?,
            "storage_fstype" => self.storage_fstype = fstypes(value)?,
            // parse() only passes keys from KEYS.
            _ => return Err("unknown key".into()),
        }
        Ok(())
    }

    /// The value of `key` as it would be written in plugstack.conf.
    pub fn value_of(&self, key: &str) -> Option<String> {
        Some(match key {
            "helper" => path_text(&self.helper),
            "ckpt_root" => path_text(&self.ckpt_root),
            "runtime_dir" => path_text(&self.runtime_dir),
            "docker_socket" => self.docker_socket.clone(),
            "network" => self.network.clone(),
            "subnet" => self.subnet.to_string(),
            "image_allowlist" => self.image_allowlist.join(","),
            "mpi_default" => self.mpi_default.to_string(),
            "order_policy" => self.order_policy.to_string(),
            "timeout" => self.timeout_secs.to_string(),
            "enabled" => if self.enabled { "yes" } else { "no" }.to_string(),
            "runtime" => self.runtime.clone(),
            "keep_generations" => self.keep_generations.to_string(),
            "dump_parallel" => self.dump_parallel.to_string(),
            "data_path" => self.data_path.as_str().to_string(),
            "compress" => self.compress.name(),
            "stage_dir" => path_text(&self.stage_dir),
            "stage_dumps" => self.stage_dumps.as_str().to_string(),
            "incremental" => if self.incremental { "yes" } else { "no" }.to_string(),
            "cpu_quota" => if self.cpu_quota { "yes" } else { "no" }.to_string(),
            "encrypt" => if self.encrypt { "yes" } else { "no" }.to_string(),
            "on_restore_failure" => self.on_restore_failure.as_str().to_string(),
            "restore_compat" => self.restore_compat.as_str().to_string(),
            "cpuinfo_path" => self.cpuinfo_path.clone(),
            "preempt_window" => self.preempt_window.name(),
            "key_file" => path_text(&self.key_file),
            "runc_path" => self.runc_path.as_deref().map(path_text).unwrap_or_default(),
            "option_prefix" => self.option_prefix.clone(),
            "max_ranks" => self.max_ranks.to_string(),
            "split_rank_output" => if self.split_rank_output { "yes" } else { "no" }.to_string(),
            "storage_root_uid" => self.storage_root_uid.to_string(),
            "storage_fstype" => self.storage_fstype.join(","),
            _ => return None,
        })
    }

    /// `--site key=value` for every key, so the helper works with exactly the plugin's settings.
    pub fn to_helper_args(&self) -> Vec<String> {
        let mut out = Vec::with_capacity(KEYS.len() * 2);
        for key in KEYS {
            if let Some(v) = self.value_of(key) {
                out.push("--site".to_string());
                out.push(format!("{key}={v}"));
            }
        }
        out
    }

    /// Read the settings from the plugstack.conf line that loads the plugin, following `include`
    /// lines as Slurm does (defaults if no line loads it: the plugin is not configured here).
    pub fn from_plugstack(path: &Path) -> Result<Self, ConfigError> {
        Self::from_plugstack_with(path, &mut plugstack::read_file)
    }

    /// `from_plugstack`, reading every file through `read` (the runtime wrapper checks trust).
    pub fn from_plugstack_with(
        path: &Path,
        read: &mut plugstack::Reader,
    ) -> Result<Self, ConfigError> {
        match plugstack::plugin_args(path, read)?.args {
            Some(args) => SiteConfig::parse(&args),
            None => Ok(SiteConfig::default()),
        }
    }

    /// The Docker socket of `node` (`%n` in the template is the node name).
    pub fn socket_for(&self, node: &str) -> String {
        self.docker_socket.replace("%n", node)
    }

    /// Where `node`'s CPU description is read (`%n` in `cpuinfo_path` is the node name).
    pub fn cpuinfo_for(&self, node: &str) -> PathBuf {
        PathBuf::from(self.cpuinfo_path.replace("%n", node))
    }

    /// Whether checkpoint images take Docker's own path (the helper copies them between the
    /// daemon's checkpoint directory and the checkpoint storage).
    pub fn docker_data_path(&self) -> bool {
        self.runtime.is_empty() || self.data_path == DataPath::Docker
    }

    /// Whether a rank packs its images into the generation after the dump (compression,
    /// incremental storage or encryption) instead of CRIU writing them there.
    pub fn packs(&self) -> bool {
        self.compress != Compression::None || self.incremental || self.encrypt
    }

    /// The runc candidates in the order they are tried: the configured one only, else the
    /// defaults.
    pub fn runc_candidates(&self) -> Vec<PathBuf> {
        match &self.runc_path {
            Some(p) => vec![p.clone()],
            None => RUNC_DEFAULTS.iter().map(PathBuf::from).collect(),
        }
    }

    /// `--NAME` of the user option whose default name is `default_name` (`container-...`) under
    /// this site's `option_prefix`, for messages.
    pub fn flag(&self, default_name: &str) -> String {
        option_names::option_flag(&self.option_prefix, default_name)
    }

    /// The allowlist as shown to users.
    pub fn allowlist_display(&self) -> String {
        if self.image_allowlist.is_empty() {
            "any image".into()
        } else {
            self.image_allowlist.join(", ")
        }
    }
}

/// Whether `image` may run: matches a pattern of `image_allowlist` (or the list is empty). The
/// image is tried as written and in Docker's normalized form, so `debian:12` is matched by
/// `docker.io/library/debian:*` as well: both names pull the same image.
pub fn image_allowed(cfg: &SiteConfig, image: &str) -> bool {
    if cfg.image_allowlist.is_empty() {
        return true;
    }
    let full = docker_full_name(image);
    cfg.image_allowlist
        .iter()
        .any(|p| glob_match(p, image) || glob_match(p, &full))
}

/// Docker's normalization of a reference: default registry `docker.io`, `library/` for official
/// images, tag `latest` when neither tag nor digest is given.
pub fn docker_full_name(image: &str) -> String {
    let (first, rest) = match image.split_once('/') {
        Some((first, rest)) => (first, Some(rest)),
        None => (image, None),
    };
    let mut name = match rest {
        Some(_) if first.contains('.') || first.contains(':') || first == "localhost" => {
            image.to_string()
        }
        Some(_) => format!("docker.io/{image}"),
        None => format!("docker.io/library/{first}"),
    };
    let last = name.rsplit('/').next().unwrap_or("");
    if !last.contains(':') && !name.contains('@') {
        name.push_str(":latest");
    }
    name
}

/// Shell-style glob: `*` any run of characters (including `/`), `?` exactly one character.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    // Position of the last `*` and the text position it currently absorbs up to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(c) if *c == '?' || Some(c) == t.get(ti) => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi.min(p.len())..].iter().all(|c| *c == '*')
}

fn path_text(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn absolute_path(v: &str) -> Result<String, String> {
    const VALID: &str = "expected an absolute path without '..'";
    if !v.starts_with('/') {
        return Err(format!("not an absolute path; {VALID}"));
    }
    normalize_path(v).map_err(|why| format!("{why}; {VALID}"))
}

/// An absolute path in which `%n` (only) stands for the node name.
fn node_path(v: &str) -> Result<String, String> {
    const VALID: &str = "expected an absolute path without '..', where %n stands for the node name";
    if v.replace("%n", "").contains('%') {
        return Err(format!("only %n may follow '%'; {VALID}"));
    }
    absolute_path(v).map_err(|_| VALID.to_string())
}

fn docker_socket(v: &str) -> Result<String, String> {
    // The helper talks to Docker over a unix socket only.
    const VALID: &str = "expected unix:///ABSOLUTE/PATH, where %n stands for the node name";
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c == '%' && chars.next() != Some('n') {
            return Err(format!("only %n may follow '%'; {VALID}"));
        }
    }
    match v.strip_prefix("unix://") {
        Some(path) if path.starts_with('/') && normalize_path(path).is_ok() => Ok(v.to_string()),
        _ => Err(VALID.into()),
    }
}

fn network_name(v: &str) -> Result<String, String> {
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.starts_with(|c: char| c.is_ascii_alphanumeric())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        Ok(v.to_string())
    } else {
        Err("expected a Docker network name: 1-64 characters from [a-zA-Z0-9_.-], starting with a letter or digit".into())
    }
}

fn subnet(v: &str) -> Result<Subnet, String> {
    const VALID: &str =
        "expected an IPv4 network A.B.C.D/PREFIX with PREFIX from 8 to 24, e.g. 10.88.0.0/16";
    let (addr, prefix) = v
        .split_once('/')
        .ok_or_else(|| format!("missing /PREFIX; {VALID}"))?;
    let addr: Ipv4Addr = addr
        .parse()
        .map_err(|_| format!("'{addr}' is not an IPv4 address; {VALID}"))?;
    let prefix: u8 = match prefix.parse() {
        Ok(p) if (8..=24).contains(&p) && prefix.bytes().all(|b| b.is_ascii_digit()) => p,
        _ => return Err(format!("prefix '{prefix}' is out of range; {VALID}")),
    };
    let mask = u32::MAX << (32 - u32::from(prefix));
    let net = Ipv4Addr::from(u32::from(addr) & mask);
    if net != addr {
        return Err(format!(
            "host bits are set (did you mean {net}/{prefix}?); {VALID}"
        ));
    }
    Ok(Subnet { base: addr, prefix })
}

fn allowlist(v: &str) -> Result<Vec<String>, String> {
    if v.is_empty() {
        return Ok(Vec::new());
    }
    v.split(',')
        .map(|p| {
            // A pattern is an image reference in which `*` and `?` stand for any characters.
            let probe = p.replace(['*', '?'], "x");
            if p.is_empty() || parse_image(&probe).is_err() {
                Err(format!(
                    "pattern '{p}' is not an image pattern; expected comma-separated image references \
                     with * and ? wildcards, e.g. slurm-ckpt/*,docker.io/library/debian:*"
                ))
            } else {
                Ok(p.to_string())
            }
        })
        .collect()
}

fn runtime_name(v: &str) -> Result<String, String> {
    if v.len() <= 64
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    {
        Ok(v.to_string())
    } else {
        Err(
            "expected a Docker runtime name from [a-zA-Z0-9_.-] (empty = the daemon's default)"
                .into(),
        )
    }
}

/// `v` as a whole number within `range`: digits only (no sign, no blanks).
fn whole_in(v: &str, range: std::ops::RangeInclusive<u32>) -> Option<u32> {
    let n = v.parse::<u32>().ok()?;
    (range.contains(&n) && v.bytes().all(|b| b.is_ascii_digit())).then_some(n)
}

fn dump_parallel(v: &str) -> Result<u32, String> {
    whole_in(v, 0..=DUMP_PARALLEL_MAX)
        .ok_or_else(|| format!("expected a whole number from 0 (no limit) to {DUMP_PARALLEL_MAX}"))
}

fn max_ranks(v: &str) -> Result<u32, String> {
    whole_in(v, 1..=MAX_RANKS_MAX)
        .ok_or_else(|| format!("expected a whole number from 1 to {MAX_RANKS_MAX}"))
}

/// A uid root can be mapped to: not 65534 (`nobody`, which other processes run as, so checkpoints
/// would not be private) and not -1.
fn storage_root_uid(v: &str) -> Result<u32, String> {
    match whole_in(v, 0..=u32::MAX - 1) {
        Some(65534) => Err("65534 (nobody) is shared with other processes: map root to a dedicated account (docs/STORAGE.md)".into()),
        Some(n) => Ok(n),
        None => Err("expected a uid (whole number)".into()),
    }
}

/// A comma-separated list of file system type names as mountinfo writes them (empty: any).
fn fstypes(v: &str) -> Result<Vec<String>, String> {
    if v.is_empty() {
        return Ok(Vec::new());
    }
    v.split(',')
        .map(|t| {
            let ok = !t.is_empty()
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            ok.then(|| t.to_string()).ok_or_else(|| {
                format!("'{t}' is not a file system type name (as in /proc/self/mountinfo: nfs4, fuse.glusterfs, lustre)")
            })
        })
        .collect()
}

fn keep_generations(v: &str) -> Result<u32, String> {
    whole_in(v, 1..=KEEP_GENERATIONS_MAX)
        .ok_or_else(|| format!("expected a whole number from 1 to {KEEP_GENERATIONS_MAX}"))
}

fn timeout(v: &str) -> Result<u32, String> {
    whole_in(v, 1..=TIMEOUT_MAX_SECS)
        .ok_or_else(|| format!("expected whole seconds from 1 to {TIMEOUT_MAX_SECS}"))
}

/// Booleans as pyxis accepts them.
pub fn boolean(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "y" => Ok(true),
        "0" | "false" | "no" | "n" => Ok(false),
        _ => Err("expected 1/true/yes/y or 0/false/no/n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_limit_is_the_smaller_of_max_ranks_and_the_subnet() {
        let mut cfg = SiteConfig::default();
        assert!(cfg.check_ntasks(1024).is_ok());
        let e = cfg.check_ntasks(1025).unwrap_err();
        assert!(e.to_string().contains("max_ranks"), "{e}");
        cfg.subnet = "10.88.0.0/22".parse().unwrap();
        assert_eq!(cfg.subnet.job_addresses(), 767);
        assert!(cfg.check_ntasks(767).is_ok());
        let e = cfg.check_ntasks(768).unwrap_err();
        assert_eq!(e.limit, 767);
        assert!(e.to_string().contains("subnet"), "{e}");
        assert_eq!(SiteConfig::parse(&["max_ranks=4"]).unwrap().max_ranks, 4);
        assert!(SiteConfig::parse(&["max_ranks=0"]).is_err());
    }

    #[test]
    fn defaults() {
        let cfg = SiteConfig::parse::<&str>(&[]).unwrap();
        assert_eq!(cfg, SiteConfig::default());
        assert_eq!(cfg.helper, Path::new("/usr/bin/slurm-ckpt"));
        assert_eq!(cfg.ckpt_root, Path::new("/var/lib/slurm-ckpt"));
        assert_eq!(cfg.runtime_dir, Path::new("/run/slurm-ckpt"));
        assert_eq!(cfg.docker_socket, "unix:///var/run/docker.sock");
        assert_eq!(cfg.network, "ckpt-net");
        assert_eq!(cfg.subnet.to_string(), "10.88.0.0/16");
        assert!(cfg.image_allowlist.is_empty());
        assert_eq!(cfg.mpi_default, MpiKind::Mpich);
        assert_eq!(cfg.order_policy, OrderPolicy::FreezeAll);
        assert_eq!(cfg.timeout_secs, 300);
        assert!(cfg.enabled);
        assert_eq!(cfg.runtime, "slurm-ckpt");
        assert_eq!(cfg.keep_generations, 2);
        assert!(!cfg.cpu_quota);
        assert_eq!(cfg.key_file, Path::new("/etc/munge/munge.key"));
        assert_eq!(cfg.runc_path, None);
        assert_eq!(
            cfg.runc_candidates(),
            vec![
                PathBuf::from("/usr/sbin/runc"),
                PathBuf::from("/usr/bin/runc")
            ]
        );
    }

    #[test]
    fn storage_fstype_is_a_list_of_type_names() {
        assert!(SiteConfig::parse::<&str>(&[])
            .unwrap()
            .storage_fstype
            .is_empty());
        let cfg = SiteConfig::parse(&["storage_fstype=nfs4,fuse.glusterfs"]).unwrap();
        assert_eq!(cfg.storage_fstype, ["nfs4", "fuse.glusterfs"]);
        assert_eq!(
            cfg.value_of("storage_fstype").unwrap(),
            "nfs4,fuse.glusterfs"
        );
        for bad in ["nfs4,", "nfs 4", "a/b"] {
            assert!(
                SiteConfig::parse(&[format!("storage_fstype={bad}").as_str()]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn key_file_and_runc_path() {
        let cfg = SiteConfig::parse(&[
            "key_file=/etc/slurm/slurm.key",
            "runc_path=/opt/runc/bin/runc",
        ])
        .unwrap();
        assert_eq!(cfg.key_file, Path::new("/etc/slurm/slurm.key"));
        assert_eq!(
            cfg.runc_candidates(),
            vec![PathBuf::from("/opt/runc/bin/runc")]
        );
        assert_eq!(cfg.value_of("runc_path").unwrap(), "/opt/runc/bin/runc");
        assert_eq!(SiteConfig::parse(&["runc_path="]).unwrap().runc_path, None);
        for bad in [
            "key_file=",
            "key_file=munge.key",
            "key_file=/etc/../x",
            "runc_path=runc",
        ] {
            let e = SiteConfig::parse(&[bad]).unwrap_err();
            assert!(matches!(e, ConfigError::BadValue { .. }), "{bad}: {e}");
        }
    }

    #[test]
    fn vcluster_line_parses() {
        let args = [
            "docker_socket=unix:///run/vc/%n/docker.sock",
            "ckpt_root=/var/lib/vc/shared/ckpt",
            "network=ckpt-net",
            "subnet=10.88.0.0/16",
            "image_allowlist=slurm-ckpt/*",
        ];
        let cfg = SiteConfig::parse(&args).unwrap();
        assert_eq!(cfg.docker_socket, "unix:///run/vc/%n/docker.sock");
        assert_eq!(cfg.ckpt_root, Path::new("/var/lib/vc/shared/ckpt"));
        assert_eq!(cfg.image_allowlist, vec!["slurm-ckpt/*"]);
    }

    #[test]
    fn every_key_accepts_a_valid_value() {
        let args = [
            "helper=/opt/bin/slurm-ckpt",
            "ckpt_root=/shared/ckpt/",
            "runtime_dir=/run/x",
            "docker_socket=unix:///run/docker-%n.sock",
            "network=net_1.a-b",
            "subnet=172.20.0.0/24",
            "image_allowlist=a/*,b:?,docker.io/library/debian:*",
            "mpi_default=openmpi",
            "order_policy=cl-rf",
            "timeout=86400",
            "enabled=N",
            "runtime=",
            "keep_generations=100",
        ];
        let cfg = SiteConfig::parse(&args).unwrap();
        assert_eq!(cfg.helper, Path::new("/opt/bin/slurm-ckpt"));
        assert_eq!(cfg.ckpt_root, Path::new("/shared/ckpt"));
        assert_eq!(
            cfg.subnet,
            Subnet {
                base: Ipv4Addr::new(172, 20, 0, 0),
                prefix: 24
            }
        );
        assert_eq!(cfg.subnet.size(), 256);
        assert_eq!(cfg.image_allowlist.len(), 3);
        assert_eq!(cfg.mpi_default, MpiKind::OpenMpi);
        assert_eq!(cfg.order_policy, OrderPolicy::ClRf);
        assert_eq!(cfg.timeout_secs, 86400);
        assert!(!cfg.enabled);
        assert_eq!(cfg.runtime, "");
        assert_eq!(cfg.keep_generations, 100);
    }

    #[test]
    fn booleans() {
        for t in ["1", "true", "yes", "y", "YES", "True"] {
            assert_eq!(boolean(t), Ok(true), "{t}");
        }
        for f in ["0", "false", "no", "n", "NO"] {
            assert_eq!(boolean(f), Ok(false), "{f}");
        }
        let err = SiteConfig::parse(&["enabled=maybe"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid site setting enabled=maybe in plugstack.conf: expected 1/true/yes/y or 0/false/no/n"
        );
    }

    #[test]
    fn unknown_key_lists_valid_keys() {
        let err = SiteConfig::parse(&["ckpt_dir=/x"]).unwrap_err();
        assert_eq!(
            err,
            ConfigError::UnknownKey {
                key: "ckpt_dir".into()
            }
        );
        let msg = err.to_string();
        assert!(msg.contains("'ckpt_dir'"), "{msg}");
        for k in KEYS {
            assert!(msg.contains(k), "{msg} lists {k}");
        }
        let err = SiteConfig::parse(&["verbose"]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("plugstack.conf argument 'verbose' is not key=value"),
            "{err}"
        );
    }

    #[test]
    fn duplicate_key() {
        let err = SiteConfig::parse(&["timeout=5", "timeout=6"]).unwrap_err();
        assert_eq!(err, ConfigError::Duplicate { key: "timeout" });
    }

    #[test]
    fn bad_values_name_key_and_value() {
        let cases = [
            ("helper=slurm-ckpt", "not an absolute path"),
            ("ckpt_root=/a/../b", "'..'"),
            ("runtime_dir=", "not an absolute path"),
            ("docker_socket=/var/run/docker.sock", "unix:///"),
            ("docker_socket=unix://relative", "unix:///"),
            ("docker_socket=unix:///run/%h/d.sock", "only %n"),
            ("docker_socket=tcp://127.0.0.1:2375", "unix:///"),
            ("runtime=bad/name", "Docker runtime name"),
            ("keep_generations=0", "1 to 100"),
            ("keep_generations=101", "1 to 100"),
            ("dump_parallel=257", "0 (no limit) to 256"),
            ("dump_parallel=-1", "0 (no limit) to 256"),
            ("data_path=nfs", "direct, docker"),
            ("compress=zstd:20", "zstd:LEVEL"),
            ("compress=gzip", "zstd:LEVEL"),
            ("stage_dir=tmp", "not an absolute path"),
            ("incremental=sometimes", "expected 1/true/yes/y"),
            ("encrypt=maybe", "expected 1/true/yes/y"),
            ("restore_compat=loose", "strict, cpu, off"),
            ("cpuinfo_path=cpuinfo", "absolute path"),
            ("cpuinfo_path=/x/%h", "only %n"),
            ("preempt_window=periodic:0", "periodic:MINUTES"),
            ("preempt_window=loud", "warn, error"),
            ("cpu_quota=half", "expected 1/true/yes/y"),
            ("network=", "Docker network name"),
            ("network=bad name", "Docker network name"),
            ("subnet=10.88.0.0", "missing /PREFIX"),
            ("subnet=10.88.0.0/25", "out of range"),
            ("subnet=10.0.0.0/7", "out of range"),
            ("subnet=10.88.0.1/16", "did you mean 10.88.0.0/16"),
            ("subnet=10.88.0/16", "not an IPv4 address"),
            ("subnet=fd00::/64", "not an IPv4 address"),
            ("image_allowlist=a,,b", "pattern ''"),
            ("image_allowlist=bad pattern", "pattern 'bad pattern'"),
            ("mpi_default=intel", "mpich, openmpi or none"),
            (
                "order_policy=random",
                "freeze-all, cf-rl, cl-rl, cf-rf, cl-rf",
            ),
            ("timeout=0", "1 to 86400"),
            ("timeout=86401", "1 to 86400"),
            ("timeout=+5", "1 to 86400"),
            ("timeout=ten", "1 to 86400"),
        ];
        for (arg, why) in cases {
            let err = SiteConfig::parse(&[arg]).unwrap_err();
            let msg = err.to_string();
            let (key, value) = arg.split_once('=').unwrap();
            assert!(msg.contains(&format!("{key}={value}")), "{arg}: {msg}");
            assert!(msg.contains(why), "{arg}: {msg}");
        }
    }

    #[test]
    fn to_helper_args_round_trip() {
        let cfgs = [
            SiteConfig::default(),
            SiteConfig::parse(&[
                "helper=/opt/h",
                "docker_socket=unix:///run/vc/%n/docker.sock",
                "subnet=10.0.0.0/8",
                "image_allowlist=slurm-ckpt/*,docker.io/library/debian:*",
                "mpi_default=none",
                "order_policy=cf-rl",
                "timeout=7",
                "enabled=no",
                "runtime=runc",
                "keep_generations=5",
                "dump_parallel=2",
                "cpu_quota=yes",
                "restore_compat=strict",
                "cpuinfo_path=/shared/cpuinfo-%n",
                "preempt_window=periodic:30",
            ])
            .unwrap(),
        ];
        for cfg in cfgs {
            let args = cfg.to_helper_args();
            assert_eq!(args.len(), KEYS.len() * 2);
            let values: Vec<&String> = args.iter().skip(1).step_by(2).collect();
            assert!(args.iter().step_by(2).all(|a| a == "--site"));
            let back = SiteConfig::parse(&values).unwrap();
            assert_eq!(back, cfg);
        }
        let args = SiteConfig::default().to_helper_args();
        assert_eq!(
            args[0..2],
            [
                "--site".to_string(),
                "helper=/usr/bin/slurm-ckpt".to_string()
            ]
        );
        assert!(args.contains(&"image_allowlist=".to_string()));
        assert!(args.contains(&"enabled=yes".to_string()));
    }

    #[test]
    fn reads_plugstack_line() {
        let dir = std::env::temp_dir().join(format!("scc-site-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("plugstack.conf");
        std::fs::write(&p, "# comment\nrequired /x/other.so a=b\nrequired /usr/lib/spank_container_ckpt.so network=n1 docker_socket=unix:///run/vc/%n/d.sock # c\n").unwrap();
        let cfg = SiteConfig::from_plugstack(&p).unwrap();
        assert_eq!(cfg.network, "n1");
        assert_eq!(cfg.socket_for("node2"), "unix:///run/vc/node2/d.sock");
        std::fs::write(&p, "required /usr/lib/spank_container_ckpt.so bogus=1\n").unwrap();
        assert!(SiteConfig::from_plugstack(&p).is_err());
        std::fs::write(&p, "# nothing\n").unwrap();
        assert_eq!(
            SiteConfig::from_plugstack(&p).unwrap(),
            SiteConfig::default()
        );
        std::fs::remove_dir_all(&dir).unwrap();
        let e = SiteConfig::from_plugstack(&dir.join("missing")).unwrap_err();
        assert!(e.to_string().contains("cannot read"), "{e}");
    }

    #[test]
    fn data_paths_and_packing() {
        let d = SiteConfig::default();
        assert!(!d.docker_data_path() && !d.packs());
        assert!(SiteConfig::parse(&["runtime="]).unwrap().docker_data_path());
        assert!(SiteConfig::parse(&["data_path=docker"])
            .unwrap()
            .docker_data_path());
        assert!(SiteConfig::parse(&["incremental=yes"]).unwrap().packs());
        assert_eq!(d.stage_dumps, StageDumps::Auto);
        let s = SiteConfig::parse(&["stage_dumps=no"]).unwrap();
        assert_eq!(s.stage_dumps, StageDumps::No);
        assert_eq!(s.value_of("stage_dumps").as_deref(), Some("no"));
        let e = SiteConfig::parse(&["stage_dumps=always"]).unwrap_err();
        assert!(e.to_string().contains("auto, yes, no"), "{e}");
        let e = SiteConfig::parse(&["encrypt=yes"]).unwrap();
        assert!(e.encrypt && e.packs());
        assert_eq!(e.value_of("encrypt").as_deref(), Some("yes"));
        assert!(!SiteConfig::default().encrypt);
        let c = SiteConfig::parse(&["compress=zstd"]).unwrap();
        assert_eq!(c.compress, Compression::Zstd(1));
        assert!(c.packs());
        assert_eq!(Compression::parse("zstd:7"), Ok(Compression::Zstd(7)));
        for bad in ["", "lz4", "zstd:0", "zstd:20", "zstd:+3", "zstd:", "none:1"] {
            assert!(Compression::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn glob_patterns() {
        assert!(glob_match("slurm-ckpt/*", "slurm-ckpt/mpi-test:latest"));
        assert!(!glob_match("slurm-ckpt/*", "other/mpi-test:latest"));
        assert!(!glob_match("slurm-ckpt/*", "slurm-ckpt"));
        assert!(glob_match(
            "docker.io/library/debian:*",
            "docker.io/library/debian:12"
        ));
        assert!(!glob_match(
            "docker.io/library/debian:*",
            "docker.io/library/ubuntu:22.04"
        ));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("*", ""));
        assert!(glob_match("*a*b*", "xxaxxbxx"));
        assert!(!glob_match("*a*b", "xxaxxbxxc"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
        assert!(!glob_match("", "x"));
    }

    #[test]
    fn allowlist_matching() {
        let open = SiteConfig::default();
        assert!(image_allowed(&open, "anything/at:all"));

        let cfg = SiteConfig::parse(&["image_allowlist=slurm-ckpt/*,docker.io/library/debian:*"])
            .unwrap();
        assert!(image_allowed(&cfg, "slurm-ckpt/mpi-test:latest"));
        assert!(image_allowed(&cfg, "docker.io/library/debian:12"));
        // Short names are compared in Docker's normalized form too.
        assert!(image_allowed(&cfg, "debian:12"));
        assert!(image_allowed(&cfg, "debian"));
        assert!(image_allowed(&cfg, "library/debian:bookworm"));
        assert!(!image_allowed(&cfg, "ubuntu:22.04"));
        assert!(!image_allowed(&cfg, "evil.io/slurm-ckpt/x"));
        assert!(!image_allowed(&cfg, "foo/bar"));
        assert_eq!(
            cfg.allowlist_display(),
            "slurm-ckpt/*, docker.io/library/debian:*"
        );
    }

    #[test]
    fn docker_normalization() {
        assert_eq!(
            docker_full_name("debian"),
            "docker.io/library/debian:latest"
        );
        assert_eq!(docker_full_name("debian:12"), "docker.io/library/debian:12");
        assert_eq!(docker_full_name("user/img"), "docker.io/user/img:latest");
        assert_eq!(
            docker_full_name("reg.example:5000/a/b"),
            "reg.example:5000/a/b:latest"
        );
        assert_eq!(docker_full_name("localhost/x:1"), "localhost/x:1");
        assert_eq!(docker_full_name("a/b@sha256:00"), "docker.io/a/b@sha256:00");
    }
}
