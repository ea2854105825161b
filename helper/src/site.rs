//! Site settings. The plugin parses them from its plugstack.conf arguments and hands them to the
//! helper as `--site key=value`; the admin CLI reads the same line from plugstack.conf, so there is
//! one source of truth.
use crate::error::{Error, Result};
use crate::pack::Compression;
use crate::plan::Subnet;
use std::path::{Path, PathBuf};

pub const PLUGIN_FILE: &str = "spank_container_ckpt.so";
const KEYS: &[&str] = &[
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
    "incremental",
];

#[derive(Debug, Clone, PartialEq)]
pub struct SiteConfig {
    pub helper: PathBuf,
    pub ckpt_root: PathBuf,
    pub runtime_dir: PathBuf,
    pub docker_socket: String,
    pub network: String,
    pub subnet: Subnet,
    pub image_allowlist: Vec<String>,
    pub mpi_default: String,
    pub order_policy: String,
    pub timeout_secs: u64,
    pub enabled: bool,
    /// Docker runtime for rank containers: the slurm-ckpt wrapper (fast checkpoint path) or, empty,
    /// the daemon's default runc (Docker's own, slower path).
    pub runtime: String,
    /// Complete checkpoint generations kept per job.
    pub keep_generations: u32,
    /// Rank dumps that may run at once on one node (0 = no limit): a storage link or CPU
    /// shared by many ranks can be faster with fewer concurrent writers.
    pub dump_parallel: u32,
    /// Where CRIU images travel: `direct` (the wrapper points CRIU at the checkpoint storage) or
    /// `docker` (Docker's own path through containerd's content store; for comparison, or where
    /// the redirect is not wanted). Without the wrapper (`runtime=`) it is always Docker's path.
    pub data_path: String,
    /// Compression of the stored images; anything but none dumps into `stage_dir` first.
    pub compress: Compression,
    /// Node-local directory where CRIU dumps before compressing (and a restore unpacks).
    pub stage_dir: PathBuf,
    /// Store page images in chunks and link those unchanged since the previous generation.
    pub incremental: bool,
}

impl Default for SiteConfig {
    fn default() -> Self {
        SiteConfig {
            helper: "/usr/local/bin/slurm-ckpt".into(),
            ckpt_root: "/var/lib/slurm-ckpt".into(),
            runtime_dir: "/run/slurm-ckpt".into(),
            docker_socket: "unix:///var/run/docker.sock".into(),
            network: "ckpt-net".into(),
            subnet: Subnet {
                base: std::net::Ipv4Addr::new(10, 88, 0, 0),
                prefix: 16,
            },
            image_allowlist: Vec::new(),
            mpi_default: "mpich".into(),
            order_policy: "freeze-all".into(),
            timeout_secs: 300,
            enabled: true,
            runtime: "slurm-ckpt".into(),
            keep_generations: 2,
            dump_parallel: 0,
            data_path: "direct".into(),
            compress: Compression::None,
            stage_dir: "/var/tmp/slurm-ckpt-stage".into(),
            incremental: false,
        }
    }
}

fn abs_path(key: &str, v: &str) -> Result<PathBuf> {
    if v.starts_with('/') && !v.split('/').any(|c| c == "..") {
        Ok(v.into())
    } else {
        Err(Error::Site {
            key: key.into(),
            msg: format!("'{v}' must be an absolute path without '..'"),
        })
    }
}

fn parse_bool(key: &str, v: &str) -> Result<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "y" => Ok(true),
        "0" | "false" | "no" | "n" => Ok(false),
        _ => Err(Error::Site {
            key: key.into(),
            msg: format!("'{v}' is not a boolean (yes/no)"),
        }),
    }
}

impl SiteConfig {
    /// Apply `key=value` settings over the defaults.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = &'a str>) -> Result<Self> {
        let mut c = SiteConfig::default();
        for arg in pairs {
            let (k, v) = arg.split_once('=').ok_or_else(|| Error::Site {
                key: arg.into(),
                msg: "expected key=value".into(),
            })?;
            c.set(k.trim(), v.trim())?;
        }
        Ok(c)
    }

    fn set(&mut self, k: &str, v: &str) -> Result<()> {
        let bad = |msg: String| Error::Site { key: k.into(), msg };
        match k {
            "helper" => self.helper = abs_path(k, v)?,
            "ckpt_root" => self.ckpt_root = abs_path(k, v)?,
            "runtime_dir" => self.runtime_dir = abs_path(k, v)?,
            "docker_socket" => {
                if !v.starts_with("unix://") {
                    return Err(bad(format!("'{v}' must be a unix:// socket")));
                }
                self.docker_socket = v.into()
            }
            "network" => {
                if v.is_empty()
                    || !v
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
                {
                    return Err(bad(format!("'{v}' is not a valid network name")));
                }
                self.network = v.into()
            }
            "subnet" => self.subnet = v.parse()?,
            "image_allowlist" => {
                self.image_allowlist = v
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(String::from)
                    .collect()
            }
            "mpi_default" => match v {
                "mpich" | "openmpi" | "none" => self.mpi_default = v.into(),
                _ => return Err(bad(format!("'{v}' (valid: mpich, openmpi, none)"))),
            },
            "order_policy" => match v {
                "freeze-all" | "cf-rl" | "cl-rl" | "cf-rf" | "cl-rf" => {
                    self.order_policy = v.into()
                }
                _ => {
                    return Err(bad(format!(
                        "'{v}' (valid: freeze-all, cf-rl, cl-rl, cf-rf, cl-rf)"
                    )))
                }
            },
            "timeout" => {
                self.timeout_secs = v
                    .parse()
                    .ok()
                    .filter(|t| (1..=86400).contains(t))
                    .ok_or_else(|| bad(format!("'{v}' must be seconds in 1..86400")))?
            }
            "enabled" => self.enabled = parse_bool(k, v)?,
            "runtime" => {
                if !v
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
                {
                    return Err(bad(format!("'{v}' is not a runtime name")));
                }
                self.runtime = v.into()
            }
            "keep_generations" => {
                self.keep_generations = v
                    .parse()
                    .ok()
                    .filter(|k| (1..=100).contains(k))
                    .ok_or_else(|| bad(format!("'{v}' must be 1..100")))?
            }
            "dump_parallel" => {
                self.dump_parallel = v
                    .parse()
                    .ok()
                    .filter(|n| *n <= 256)
                    .ok_or_else(|| bad(format!("'{v}' must be 0 (no limit) to 256")))?
            }
            "data_path" => match v {
                "direct" | "docker" => self.data_path = v.into(),
                _ => return Err(bad(format!("'{v}' (valid: direct, docker)"))),
            },
            "compress" => self.compress = Compression::parse(v).map_err(bad)?,
            "stage_dir" => self.stage_dir = abs_path(k, v)?,
            "incremental" => self.incremental = parse_bool(k, v)?,
            _ => return Err(Error::UnknownSiteKey(k.into(), KEYS.join(", "))),
        }
        Ok(())
    }

    /// Read the settings from the plugstack.conf line that loads our plugin.
    pub fn from_plugstack(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            let mut words = line.split_whitespace();
            let (Some(_kind), Some(so)) = (words.next(), words.next()) else {
                continue;
            };
            if so.ends_with(PLUGIN_FILE) {
                return SiteConfig::from_pairs(words);
            }
        }
        Ok(SiteConfig::default())
    }

    /// Whether checkpoint images take Docker's own path (the supervisor copies them between the
    /// daemon's checkpoint directory and the checkpoint storage).
    pub fn docker_data_path(&self) -> bool {
        self.runtime.is_empty() || self.data_path == "docker"
    }

    /// Whether a rank packs its images into the generation after the dump (compression or
    /// incremental storage) instead of CRIU writing them there.
    pub fn packs(&self) -> bool {
        self.compress != Compression::None || self.incremental
    }

    /// The Docker socket of `node` (`%n` in the template is the node name).
    pub fn socket_for(&self, node: &str) -> String {
        self.docker_socket.replace("%n", node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let c = SiteConfig::from_pairs([
            "ckpt_root=/ckpt",
            "docker_socket=unix:///run/vc/%n/docker.sock",
            "timeout=60",
        ])
        .unwrap();
        assert_eq!(c.ckpt_root, PathBuf::from("/ckpt"));
        assert_eq!(c.socket_for("node2"), "unix:///run/vc/node2/docker.sock");
        assert_eq!(c.timeout_secs, 60);
        assert_eq!(c.network, "ckpt-net");
    }

    #[test]
    fn rejects_unknown_and_bad_values() {
        let e = SiteConfig::from_pairs(["bogus=1"]).unwrap_err().to_string();
        assert!(e.contains("bogus") && e.contains("ckpt_root"), "{e}");
        for bad in [
            "ckpt_root=rel",
            "timeout=0",
            "subnet=1.2.3.4/33",
            "mpi_default=lam",
            "enabled=maybe",
            "docker_socket=/x",
            "data_path=nfs",
            "compress=lz4",
            "stage_dir=tmp",
            "incremental=sometimes",
        ] {
            assert!(SiteConfig::from_pairs([bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn reads_plugstack_line() {
        let dir = std::env::temp_dir().join(format!("scc-site-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("plugstack.conf");
        std::fs::write(&p, "# comment\nrequired /x/other.so a=b\nrequired /usr/lib/spank_container_ckpt.so network=n1 # c\n").unwrap();
        assert_eq!(SiteConfig::from_plugstack(&p).unwrap().network, "n1");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
