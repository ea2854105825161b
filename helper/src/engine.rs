//! The Docker engine of one node, through bollard. Everything the helper asks of Docker is here.
use crate::error::{Error, Result};
use crate::plan::RankIdentity;
use crate::state::ContainerState;
use bollard::container::{
    AttachContainerOptions, AttachContainerResults, Config, CreateContainerOptions,
    KillContainerOptions, ListContainersOptions, RemoveContainerOptions, StartContainerOptions,
    WaitContainerOptions,
};
use bollard::models::{
    EndpointIpamConfig, EndpointSettings, HostConfig, Mount, MountBindOptions,
    MountBindOptionsPropagationEnum, MountTypeEnum,
};
use bollard::Docker;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::time::Duration;

pub const LABEL_JOB: &str = "slurm-ckpt.job";
pub const LABEL_RANK: &str = "slurm-ckpt.rank";
pub const LABEL_USER: &str = "slurm-ckpt.uid";

pub struct Engine {
    docker: Docker,
    /// The endpoints bollard lacks, at the version negotiated with `docker`.
    extra: extra_api::ExtraApi,
    socket: String,
    pub node: String,
}

/// What a rank container is made of.
pub struct RankSpec<'a> {
    pub name: String,
    pub job_id: u32,
    pub me: &'a RankIdentity,
    pub all: &'a [RankIdentity],
    pub image: &'a str,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups of the job user (Docker's `GroupAdd`).
    pub groups: Vec<u32>,
    pub network: &'a str,
    /// OCI runtime registered with dockerd (the slurm-ckpt wrapper); None = the daemon's default.
    pub runtime: Option<&'a str>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub binds: Vec<Bind>,
    pub cwd: &'a str,
    pub nano_cpus: Option<i64>,
    pub memory_bytes: Option<i64>,
    /// The task's CPUs (Docker's cpuset list form); None = not confined.
    pub cpuset_cpus: Option<String>,
}

/// A bind mount whose source has been checked (as the job's user, for user-named paths).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub src: std::path::PathBuf,
    pub dst: String,
    pub read_only: bool,
}

impl Bind {
    /// Docker's Mounts API, not the legacy `Binds`: a missing source is an error instead of a
    /// directory root creates on the host.
    fn to_mount(&self) -> Mount {
        Mount {
            target: Some(self.dst.clone()),
            source: Some(self.src.to_string_lossy().into_owned()),
            typ: Some(MountTypeEnum::BIND),
            read_only: Some(self.read_only),
            bind_options: Some(MountBindOptions {
                propagation: Some(MountBindOptionsPropagationEnum::RPRIVATE),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

impl Engine {
    pub async fn connect(socket: &str, node: &str) -> Result<Self> {
        let path = socket.strip_prefix("unix://").unwrap_or(socket);
        let err = |err| Error::Docker {
            socket: socket.to_string(),
            err,
        };
        let docker =
            Docker::connect_with_unix(path, 120, bollard::API_DEFAULT_VERSION).map_err(err)?;
        // The daemon's version (capped at bollard's), never an assumed one: Debian's docker.io
        // and Docker CE speak different versions. Every request, bollard's and ours, uses it.
        let docker = docker.negotiate_version().await.map_err(err)?;
        let version = docker.client_version().to_string();
        api_version::check(&version, socket, node)?;
        tracing::debug!(socket, node, version, "docker API negotiated");
        Ok(Engine {
            extra: extra_api::ExtraApi::new(socket, version),
            docker,
            socket: socket.to_string(),
            node: node.to_string(),
        })
    }

    fn err(&self, err: bollard::errors::Error) -> Error {
        Error::Docker {
            socket: self.socket.clone(),
            err,
        }
    }

    pub async fn check_network(&self, network: &str) -> Result<()> {
        match self.docker.inspect_network::<String>(network, None).await {
            Ok(_) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Err(Error::NoNetwork {
                network: network.into(),
                node: self.node.clone(),
            }),
            Err(e) => Err(self.err(e)),
        }
    }

    /// The image's id, or a clear error when the node's daemon does not have it.
    pub async fn check_image(&self, image: &str) -> Result<String> {
        match self.docker.inspect_image(image).await {
            Ok(i) => Ok(i.id.unwrap_or_default()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Err(Error::NoImage {
                image: image.into(),
                node: self.node.clone(),
            }),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Run `script` with /bin/sh in a throwaway container of `image` (no network, no capabilities,
    /// user nobody, plain runc); returns its exit code and output.
    pub async fn run_probe(&self, image: &str, script: &str) -> Result<(i64, String)> {
        let host = HostConfig {
            network_mode: Some("none".into()),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges".into()]),
            ..Default::default()
        };
        let cfg = Config {
            image: Some(image.to_string()),
            user: Some("65534:65534".into()),
            entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
            cmd: Some(vec![script.to_string()]),
            host_config: Some(host),
            labels: Some(HashMap::from([(
                "slurm-ckpt.probe".to_string(),
                "1".to_string(),
            )])),
            ..Default::default()
        };
        let id = self
            .docker
            .create_container::<String, String>(None, cfg)
            .await
            .map_err(|e| self.err(e))?
            .id;
        let res = self.probe_output(&id).await;
        let _ = self
            .docker
            .remove_container(
                &id,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await;
        res
    }

    async fn probe_output(&self, id: &str) -> Result<(i64, String)> {
        if let Err(e) = self
            .docker
            .start_container(id, None::<StartContainerOptions<String>>)
            .await
        {
            // Typically: no /bin/sh in the image.
            return Ok((127, e.to_string()));
        }
        let code = self.wait(id).await?;
        let mut out = String::new();
        let opts = bollard::container::LogsOptions::<String> {
            stdout: true,
            stderr: true,
            ..Default::default()
        };
        let mut logs = self.docker.logs(id, Some(opts));
        while let Some(item) = logs.next().await {
            out.push_str(&item.map_err(|e| self.err(e))?.to_string());
        }
        Ok((code, out))
    }

    /// Create the rank's container (removing a stale one of the same name first). Returns its id.
    pub async fn create_rank(&self, s: &RankSpec<'_>) -> Result<String> {
        self.remove(&s.name).await?;
        let labels = HashMap::from([
            (LABEL_JOB.to_string(), s.job_id.to_string()),
            (LABEL_RANK.to_string(), s.me.rank.to_string()),
            (LABEL_USER.to_string(), s.uid.to_string()),
        ]);
        let extra_hosts = s
            .all
            .iter()
            .map(|r| format!("{}:{}", r.hostname, r.ip))
            .collect();
        // /tmp and /dev/shm as tmpfs: CRIU stores tmpfs contents in the checkpoint, whereas files in
        // the container's writable layer are lost on restore into a new container (Open MPI keeps
        // files open there).
        let tmpfs = HashMap::from([
            (
                "/tmp".to_string(),
                "rw,nosuid,nodev,exec,mode=1777".to_string(),
            ),
            (
                "/dev/shm".to_string(),
                "rw,nosuid,nodev,mode=1777".to_string(),
            ),
        ]);
        let host_config = HostConfig {
            mounts: Some(s.binds.iter().map(Bind::to_mount).collect()),
            tmpfs: Some(tmpfs),
            group_add: Some(s.groups.iter().map(u32::to_string).collect()),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges".into()]),
            network_mode: Some(s.network.to_string()),
            extra_hosts: Some(extra_hosts),
            nano_cpus: s.nano_cpus,
            memory: s.memory_bytes,
            cpuset_cpus: s.cpuset_cpus.clone(),
            init: Some(false),
            privileged: Some(false),
            runtime: s.runtime.map(str::to_string),
            ..Default::default()
        };
        let endpoint = EndpointSettings {
            ipam_config: Some(EndpointIpamConfig {
                ipv4_address: Some(s.me.ip.to_string()),
                ..Default::default()
            }),
            mac_address: Some(s.me.mac.clone()),
            ..Default::default()
        };
        let config = Config {
            image: Some(s.image.to_string()),
            hostname: Some(s.me.hostname.clone()),
            user: Some(format!("{}:{}", s.uid, s.gid)),
            cmd: Some(s.cmd.clone()),
            env: Some(s.env.clone()),
            working_dir: Some(s.cwd.to_string()),
            labels: Some(labels),
            // Before API 1.44 the MAC is taken here only; from 1.44 on this field is deprecated
            // in favour of the endpoint's (set there too, same value: the daemon accepts both).
            mac_address: Some(s.me.mac.clone()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            host_config: Some(host_config),
            networking_config: Some(bollard::container::NetworkingConfig {
                endpoints_config: HashMap::from([(s.network.to_string(), endpoint)]),
            }),
            ..Default::default()
        };
        let resp = self
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: s.name.clone(),
                    platform: None,
                }),
                config,
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(resp.id)
    }

    /// The container's output stream. `replay` also sends what it wrote before (the first attach,
    /// before it starts); a re-attach after the daemon came back must not repeat it.
    pub async fn attach(&self, id: &str, replay: bool) -> Result<AttachContainerResults> {
        let opts = AttachContainerOptions::<String> {
            stdout: Some(true),
            stderr: Some(true),
            stream: Some(true),
            logs: Some(replay),
            ..Default::default()
        };
        self.docker
            .attach_container(id, Some(opts))
            .await
            .map_err(|e| self.err(e))
    }

    pub async fn start(&self, id: &str) -> Result<()> {
        self.docker
            .start_container(id, None::<StartContainerOptions<String>>)
            .await
            .map_err(|e| self.err(e))
    }

    /// Wait for the container to exit; returns its exit code.
    pub async fn wait(&self, id: &str) -> Result<i64> {
        let mut s = self
            .docker
            .wait_container(id, None::<WaitContainerOptions<String>>);
        match s.next().await {
            Some(Ok(r)) => Ok(r.status_code),
            // bollard reports a non-zero exit as an error carrying the code.
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(self.err(e)),
            None => Err(Error::WaitEnded {
                container: id.into(),
            }),
        }
    }

    pub async fn pause(&self, id: &str) -> Result<()> {
        self.docker
            .pause_container(id)
            .await
            .map_err(|e| self.pause_err(id, true, e))
    }

    pub async fn unpause(&self, id: &str) -> Result<()> {
        self.docker
            .unpause_container(id)
            .await
            .map_err(|e| self.pause_err(id, false, e))
    }

    /// Docker's status code does not tell "already (not) paused" from other refusals (409 for both,
    /// or 500 for unpause on some versions); only its message does, so it is read here, once, and
    /// callers match the variant.
    fn pause_err(&self, id: &str, pause: bool, e: bollard::errors::Error) -> Error {
        let already = if pause {
            "is already paused"
        } else {
            "is not paused"
        };
        match &e {
            bollard::errors::Error::DockerResponseServerError { message, .. }
                if message.contains(already) =>
            {
                Error::AlreadyInState {
                    container: id.into(),
                    paused: pause,
                }
            }
            _ => self.err(e),
        }
    }

    /// See [`ContainerEngine::set_paused`].
    pub async fn set_paused(&self, id: &str, pause: bool) -> Result<()> {
        ContainerEngine::set_paused(self, id, pause).await
    }

    pub async fn kill(&self, id: &str, signal: &str) -> Result<()> {
        match self
            .docker
            .kill_container(id, Some(KillContainerOptions { signal }))
            .await
        {
            Ok(()) => Ok(()),
            // Already stopped or gone: nothing to kill.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404 | 409,
                ..
            }) => Ok(()),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Force-remove a container by name or id; absent is fine.
    pub async fn remove(&self, name: &str) -> Result<()> {
        let opts = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        match self.docker.remove_container(name, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            // Someone else (the supervisor, or the epilog) is already removing it.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409,
                message,
            }) if message.contains("already in progress") => Ok(()),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Ids and names of every container (any state) that belongs to `job`.
    pub async fn job_containers(&self, job: u32) -> Result<Vec<(String, String)>> {
        let filters = HashMap::from([("label".to_string(), vec![format!("{LABEL_JOB}={job}")])]);
        let list = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters,
                ..Default::default()
            }))
            .await
            .map_err(|e| self.err(e))?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                let name = c.names.and_then(|n| n.first().cloned()).unwrap_or_default();
                c.id.map(|id| (id, name.trim_start_matches('/').to_string()))
            })
            .collect())
    }

    /// Host pid of the container's init (0 when not running).
    pub async fn pid(&self, id: &str) -> Result<i64> {
        let c = self
            .docker
            .inspect_container(id, None)
            .await
            .map_err(|e| self.err(e))?;
        Ok(c.state.and_then(|s| s.pid).unwrap_or(0))
    }

    /// Run a host tool inside a running container's network namespace (as root, from the host).
    pub async fn in_netns(&self, id: &str, cmd: &[&str]) -> Result<std::process::ExitStatus> {
        self.spawn_in_netns(id, cmd)
            .await?
            .wait()
            .await
            .map_err(|e| Error::io("nsenter", e))
    }

    /// Start `cmd` in the container's network namespace and return at once.
    pub async fn spawn_in_netns(&self, id: &str, cmd: &[&str]) -> Result<tokio::process::Child> {
        let pid = self.pid(id).await?;
        if pid <= 0 {
            return Err(Error::NotRunning {
                container: id.into(),
            });
        }
        tokio::process::Command::new("nsenter")
            .arg(format!("--net=/proc/{pid}/ns/net"))
            .args(cmd)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| Error::io("nsenter", e))
    }

    /// Drop (or stop dropping) all traffic of a running container, from the host in its network
    /// namespace (the container has no capabilities to do it itself). Lifting a drop that is not
    /// there is not an error.
    pub async fn drop_traffic(&self, id: &str, on: bool) -> Result<()> {
        let op = if on { "-I" } else { "-D" };
        for chain in ["INPUT", "OUTPUT"] {
            let status = self
                .in_netns(id, &crate::runtime_wrapper::drop_rule(op, chain))
                .await?;
            if !status.success() && on {
                return Err(Error::NetworkLock {
                    container: id.into(),
                    chain,
                    status: status.to_string(),
                });
            }
        }
        Ok(())
    }

    /// What Docker says the container is doing; None when it does not say.
    pub async fn state(&self, id: &str) -> Result<Option<ContainerState>> {
        use bollard::models::ContainerStateStatusEnum as S;
        let c = self
            .docker
            .inspect_container(id, None)
            .await
            .map_err(|e| self.err(e))?;
        Ok(c.state.and_then(|s| s.status).and_then(|s| match s {
            S::CREATED => Some(ContainerState::Created),
            S::RUNNING | S::RESTARTING => Some(ContainerState::Running),
            S::PAUSED => Some(ContainerState::Frozen),
            S::EXITED | S::REMOVING => Some(ContainerState::Exited),
            S::DEAD => Some(ContainerState::Failed),
            S::EMPTY => None,
        }))
    }

    /// After a failed wait or a broken output stream: wait (at most `grace`) until the daemon
    /// answers again and say what the container does. A daemon restarted with live-restore (an
    /// upgrade, a crash) keeps its containers running, so the rank goes on with it.
    pub async fn rejoin(&self, id: &str, grace: Duration) -> Result<Option<ContainerState>> {
        let end = tokio::time::Instant::now() + grace;
        loop {
            match self.state(id).await {
                Ok(s) => return Ok(s),
                Err(e) if tokio::time::Instant::now() >= end => {
                    return Err(Error::DaemonGone {
                        socket: self.socket.clone(),
                        secs: grace.as_secs(),
                        last: e.to_string(),
                    })
                }
                Err(e) => tracing::debug!("daemon not back yet: {e}"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// The container's anonymous memory (what CRIU dumps; page cache is not dumped), from one
    /// stats sample; None when Docker does not say.
    pub async fn memory_in_use(&self, id: &str) -> Option<u64> {
        use bollard::container::{MemoryStatsStats, StatsOptions};
        let opts = StatsOptions {
            stream: false,
            one_shot: true,
        };
        let stats = self.docker.stats(id, Some(opts)).next().await?.ok()?;
        let m = stats.memory_stats;
        match m.stats {
            Some(MemoryStatsStats::V1(v1)) => Some(v1.rss),
            Some(MemoryStatsStats::V2(v2)) => Some(v2.anon),
            None => m.usage,
        }
    }

    /// Gratuitous ARP from the container's interface (run from the host in the container's network
    /// namespace: the container itself has no capabilities). The frame leaves as soon as arping
    /// starts; arping then idles a second for replies that never come, so it is not waited for
    /// (that second used to delay every restore). Best effort: failure only costs time until the
    /// container sends something itself.
    pub async fn announce(&self, id: &str, ip: &str) {
        let cmd = ["arping", "-U", "-c", "1", "-I", "eth0", ip];
        match self.spawn_in_netns(id, &cmd).await {
            Ok(mut child) => {
                let ip = ip.to_string();
                tokio::spawn(async move {
                    let wait = child.wait();
                    match tokio::time::timeout(std::time::Duration::from_secs(10), wait).await {
                        Ok(Ok(s)) if s.success() => {}
                        other => tracing::warn!("gratuitous ARP for {ip}: {other:?}"),
                    }
                });
            }
            Err(e) => tracing::warn!("gratuitous ARP for {ip}: {e}"),
        }
    }
}

/// Container name of a rank: unique per job and rank on a node.
/// Dumps retried while containerd still holds the previous checkpoint's blob.
const CHECKPOINT_RETRIES: u64 = 4;

pub fn container_name(job: u32, rank: u32) -> String {
    format!("slurm-ckpt-{job}-r{rank}")
}

/// What the node's daemon tells us about itself that checkpoint/restore needs.
#[derive(Debug, Clone)]
pub struct DaemonInfo {
    /// Per-container data lives under `<root_dir>/containers/<id>/` (includes the userns suffix).
    pub root_dir: std::path::PathBuf,
    /// Host uid/gid of container root when the daemon runs with --userns-remap.
    pub remap_root: Option<(u32, u32)>,
    pub version: String,
}

impl Engine {
    pub async fn daemon_info(&self) -> Result<DaemonInfo> {
        let info = self.docker.info().await.map_err(|e| self.err(e))?;
        let root_dir: std::path::PathBuf = info.docker_root_dir.unwrap_or_default().into();
        // With --userns-remap the root dir ends in "<uid>.<gid>".
        let remap_root = root_dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.split_once('.'))
            .and_then(|(u, g)| Some((u.parse().ok()?, g.parse().ok()?)));
        Ok(DaemonInfo {
            root_dir,
            remap_root,
            version: info.server_version.unwrap_or_default(),
        })
    }

    /// `POST /containers/{id}/checkpoints`: bollard 0.18 has no checkpoint API.
    ///
    /// containerd stores each checkpoint's container spec as a content blob, identical from one
    /// checkpoint to the next, and refuses to commit a blob it still has ("content sha256:…:
    /// already exists"): Docker deletes the previous checkpoint's image, but the blob goes only
    /// when containerd's garbage collection has run, a moment later. Two checkpoints in quick
    /// succession hit that window: the dump is retried, a few times, after a short wait (the
    /// network of every rank stays dropped meanwhile, so the cut stays consistent). Docker says
    /// this in text only.
    pub async fn checkpoint_create(&self, id: &str, name: &str, exit: bool) -> Result<()> {
        let call = extra_api::Call::checkpoint_create(id, name, exit);
        let mut tries = 0u64;
        loop {
            match self.extra.send(&call).await {
                Err(Error::DockerApi { message, .. })
                    if tries < CHECKPOINT_RETRIES && message.contains("already exists") =>
                {
                    tries += 1;
                    tracing::warn!(container = id, tries, "containerd still holds the previous checkpoint's blob ({message}); dumping again");
                    tokio::time::sleep(Duration::from_millis(300 * tries)).await;
                }
                r => return r,
            }
        }
    }

    /// `POST /containers/{id}/start?checkpoint=NAME`: restore from a checkpoint.
    pub async fn start_from_checkpoint(&self, id: &str, name: &str) -> Result<()> {
        self.extra
            .send(&extra_api::Call::start_from_checkpoint(id, name))
            .await
    }
}

/// What a rank's supervisor asks of the container engine, narrow enough for an in-memory fake
/// (`engine::fake`) to stand in for Docker in unit tests of the checkpoint and restore sequences.
/// Output streaming (`Engine::attach`) and node checks stay on `Engine`: only the supervisor's
/// setup uses them, with the real engine.
// The supervisor runs on a current-thread runtime and never sends these futures across threads:
// no `Send` bound is needed, so plain `async fn` is enough.
#[allow(async_fn_in_trait)]
pub trait ContainerEngine {
    async fn start(&self, id: &str) -> Result<()>;
    async fn pause(&self, id: &str) -> Result<()>;
    async fn unpause(&self, id: &str) -> Result<()>;
    async fn kill(&self, id: &str, signal: &str) -> Result<()>;
    /// Force-remove by name or id; absent is fine.
    async fn remove(&self, name: &str) -> Result<()>;
    /// Drop (`on`) or stop dropping all traffic of a running container.
    async fn drop_traffic(&self, id: &str, on: bool) -> Result<()>;
    /// Dump the container (CRIU), leaving it running unless `exit`.
    async fn checkpoint_create(&self, id: &str, name: &str, exit: bool) -> Result<()>;
    async fn start_from_checkpoint(&self, id: &str, name: &str) -> Result<()>;
    async fn daemon_info(&self) -> Result<DaemonInfo>;
    /// The image's id on this node.
    async fn check_image(&self, image: &str) -> Result<String>;
    /// Tell the network the container's MAC is here now (best effort).
    async fn announce(&self, id: &str, ip: &str);
    /// The memory a dump of the container will write, about (progress only: None is fine).
    async fn memory_in_use(&self, _id: &str) -> Option<u64> {
        None
    }
    /// Host pid of the container's init; None when it is not running.
    async fn init_pid(&self, id: &str) -> Result<Option<u32>>;

    /// Pause (or unpause) a container, retrying: runc gives up freezing a cgroup v1 whose tasks do
    /// not all stop within its short polling window, which happens on loaded nodes. A container
    /// already in the wanted state (e.g. a request repeated by Slurm) counts as success.
    async fn set_paused(&self, id: &str, pause: bool) -> Result<()> {
        let what = if pause { "pause" } else { "unpause" };
        let mut attempt = 0u64;
        loop {
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(100 * attempt)).await;
            }
            let res = if pause {
                self.pause(id).await
            } else {
                self.unpause(id).await
            };
            match res {
                Ok(()) | Err(Error::AlreadyInState { .. }) => return Ok(()),
                Err(e) if attempt + 1 >= PAUSE_ATTEMPTS => return Err(e),
                Err(e) => tracing::warn!("{what} attempt {}: {e}", attempt + 1),
            }
            attempt += 1;
        }
    }
}

/// Tries of [`ContainerEngine::set_paused`] (back-off 0.1 s, 0.2 s, ... between them).
const PAUSE_ATTEMPTS: u64 = 6;

impl ContainerEngine for Engine {
    async fn start(&self, id: &str) -> Result<()> {
        Engine::start(self, id).await
    }
    async fn pause(&self, id: &str) -> Result<()> {
        Engine::pause(self, id).await
    }
    async fn unpause(&self, id: &str) -> Result<()> {
        Engine::unpause(self, id).await
    }
    async fn kill(&self, id: &str, signal: &str) -> Result<()> {
        Engine::kill(self, id, signal).await
    }
    async fn remove(&self, name: &str) -> Result<()> {
        Engine::remove(self, name).await
    }
    async fn drop_traffic(&self, id: &str, on: bool) -> Result<()> {
        Engine::drop_traffic(self, id, on).await
    }
    async fn checkpoint_create(&self, id: &str, name: &str, exit: bool) -> Result<()> {
        Engine::checkpoint_create(self, id, name, exit).await
    }
    async fn start_from_checkpoint(&self, id: &str, name: &str) -> Result<()> {
        Engine::start_from_checkpoint(self, id, name).await
    }
    async fn daemon_info(&self) -> Result<DaemonInfo> {
        Engine::daemon_info(self).await
    }
    async fn check_image(&self, image: &str) -> Result<String> {
        Engine::check_image(self, image).await
    }
    async fn announce(&self, id: &str, ip: &str) {
        Engine::announce(self, id, ip).await
    }
    async fn memory_in_use(&self, id: &str) -> Option<u64> {
        Engine::memory_in_use(self, id).await
    }
    async fn init_pid(&self, id: &str) -> Result<Option<u32>> {
        let pid = Engine::pid(self, id).await?;
        Ok(u32::try_from(pid).ok().filter(|p| *p > 0))
    }
}

pub mod api_version;
pub mod extra_api;
#[cfg(test)]
pub mod fake;
