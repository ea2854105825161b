//! The root-side supervisor of one rank: started by the plugin in `task_init_privileged`, it creates
//! the rank's container, relays its output to the task (the user-side relay), turns the signals
//! Slurm sends the task into container actions (pause on suspend, unpause on resume, stop on
//! terminate) and reports the exit code. See docs/ARCHITECTURE.md.
mod checkpoint;
mod index;
mod order;
mod restore_failure;
mod settle;
#[cfg(test)]
mod tests_sequence;
mod window;

use crate::auth::SiteKey;
use crate::barrier::touch;
use crate::ckpt::{gen_name, Closed, Expect, Layout};
use crate::engine::{container_name, Bind, ContainerEngine, Engine, RankSpec};
use crate::error::{Error, Result};
use crate::jobdir::{self, JobDirSpec, JobUser, MOUNT_POINT};
use crate::lease::{Lease, LeaseRequest, Store as LeaseStore};
use crate::plan::RankIdentity;
use crate::plan::{job_plan, leased_plan};
use crate::protocol::Frame;
use crate::site::SiteConfig;
use crate::state::{ContainerState, RankState};
use crate::user_paths::{reserved_for_node, resolve_for_user, Creds, Request};
use bollard::container::LogOutput;
use futures_util::StreamExt;
use slurm_ckpt_site::user_paths::Access;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tracing::Instrument;

/// How long a rank waits for its node's dockerd to answer again after it went away (a restart
/// with live-restore takes seconds; an upgrade a little longer).
const DAEMON_GRACE: Duration = Duration::from_secs(90);
const MAX_REJOINS: u32 = 5;

#[derive(Debug, Clone)]
pub struct SuperviseArgs {
    pub job: u32,
    pub step: u32,
    pub rank: u32,
    pub ntasks: u32,
    pub node: String,
    pub uid: u32,
    pub gid: u32,
    pub image: String,
    pub mpi: String,
    pub mounts: Vec<String>,
    /// The job's `--container-env` (NAME=VALUE), applied over the defaults of `rank_env`.
    pub env: Vec<String>,
    pub cwd: String,
    /// `--container-ckpt[=DIR]`: checkpoint/restart on, in this directory name (default: job id).
    pub ckpt: Option<String>,
    pub ckpt_interval: Option<u32>,
    /// `--container-rerun`: run a step again even if it finished in the run a requeued or resumed
    /// script continues (`steps.rs`).
    pub rerun: bool,
    /// SLURM_RESTART_COUNT of the job (0 on its first run).
    pub restart_count: u32,
    /// The job instance (plugin's `SLURM_CKPT_JOB_INSTANCE`): generations record it, and only its
    /// own are restored. None: submitted with an older plugin.
    pub instance: Option<slurm_ckpt_site::instance::JobInstance>,
    /// The task's CPUs and memory (MB) on this node: the container's limits.
    pub cpus: Option<u32>,
    pub mem_mb: Option<u64>,
    /// The task's CPUs on this node (the container's cpuset); None = not confined.
    pub cpuset: Option<slurm_ckpt_site::CpuList>,
    pub site: SiteConfig,
    pub argv: Vec<String>,
}

/// A user mount `SRC:DST[:ro|rw]`, re-validated here by the rules the plugin applies
/// (`job_paths`): the helper runs as root and must not trust that its caller validated anything.
/// The source is only named here; `job_binds` resolves and checks it as the user.
pub fn parse_mount(spec: &str) -> Result<(String, String, Access)> {
    let m = slurm_ckpt_site::job_paths::parse_mount(spec).map_err(Error::BadMount)?;
    let access = if m.readonly {
        Access::Read
    } else {
        Access::ReadWrite
    };
    Ok((m.src, m.dst, access))
}

/// Whether the working directory is bound at its own path: not where the container has its own
/// tmpfs (a duplicate mount point is an error for Docker) or the root.
fn cwd_is_bound(cwd: &str) -> bool {
    Path::new(cwd).is_absolute() && !["/", "/tmp", "/dev/shm"].contains(&cwd)
}

/// The container's bind mounts: the job directory (root's own files) and what the job named — its
/// working directory and `--container-mounts` — resolved and checked with the user's own
/// credentials, never inside the service's or the daemons' directories.
async fn job_binds(
    a: &SuperviseArgs,
    dir: &Path,
    user: &JobUser,
    docker_root: &Path,
) -> Result<Vec<Bind>> {
    let own = |src: PathBuf, dst: &str| Bind {
        src,
        dst: dst.to_string(),
        read_only: true,
    };
    let mut binds = vec![
        own(dir.to_path_buf(), MOUNT_POINT),
        own(dir.join("passwd"), "/etc/passwd"),
        own(dir.join("group"), "/etc/group"),
    ];
    let mut requests = Vec::new();
    let mut targets = Vec::new();
    if cwd_is_bound(&a.cwd) {
        requests.push(Request {
            what: format!("working directory {}", a.cwd),
            path: a.cwd.clone(),
            access: Access::Read,
        });
        targets.push((a.cwd.clone(), false));
    }
    for m in &a.mounts {
        let (src, dst, access) = parse_mount(m)?;
        requests.push(Request {
            what: format!("mount {m}"),
            path: src,
            access,
        });
        targets.push((dst, access == Access::Read));
    }
    let creds = Creds {
        name: user.name.clone(),
        uid: user.uid,
        gid: user.gid,
    };
    let reserved = reserved_for_node(&a.site, docker_root);
    let resolved = resolve_for_user(&creds, &requests, &reserved).await?;
    binds.extend(
        resolved
            .into_iter()
            .zip(targets)
            .map(|(src, (dst, read_only))| Bind {
                src,
                dst,
                read_only,
            }),
    );
    Ok(binds)
}

/// Slurm's per-task variables with this rank's own values, as a task of a plain `srun` has them
/// (docs/ARCHITECTURE.md, "Environment of the ranks"). Also written to the rank's `env-r<R>` file:
/// MPI launchers start the rank processes with rank 0's environment, and the launch script's
/// `--rank-env` step puts these back.
/// Not the legacy aliases (SLURM_JOBID, SLURM_STEPID, SLURM_NPROCS): Open MPI's mpirun takes
/// SLURM_JOBID as "inside a Slurm allocation" and asks Slurm for nodes instead of reading the
/// hostfile ("ORTE_ERROR_LOG: Not found in ras_base_allocate.c"), and hydra looks at it too.
fn slurm_task_env(a: &SuperviseArgs) -> Vec<String> {
    vec![
        format!("SLURM_JOB_ID={}", a.job),
        format!("SLURM_STEP_ID={}", a.step),
        format!("SLURM_PROCID={}", a.rank),
        format!("SLURM_NTASKS={}", a.ntasks),
        format!("SLURM_CKPT_RANK={}", a.rank),
        format!("SLURM_CKPT_NTASKS={}", a.ntasks),
        // Whether `--rank-env` points the rank's stdout/stderr at its own container's output (the
        // site's split_rank_output); in env-r<R> too, since Open MPI would not forward it.
        format!(
            "SLURM_CKPT_SPLIT_OUTPUT={}",
            if a.site.split_rank_output {
                "yes"
            } else {
                "no"
            }
        ),
    ]
}

/// The user's home as a path inside the container: where a bind (the working directory or a
/// `--container-mounts` entry, `(source, destination)`) shows it, the deepest source winning.
/// None: the home is not in the container, and HOME is /tmp.
fn container_home(home: &Path, binds: &[(String, String)]) -> Option<String> {
    binds
        .iter()
        .filter_map(|(src, dst)| {
            let rest = home.strip_prefix(src).ok()?;
            Some((src.len(), Path::new(dst).join(rest)))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, p)| p.to_string_lossy().trim_end_matches('/').to_string())
        .filter(|p| p.starts_with('/') && p.len() > 1)
}

/// The user-visible binds as `(source, destination)`: the working directory and the mounts.
fn named_binds(a: &SuperviseArgs) -> Result<Vec<(String, String)>> {
    let mut v = Vec::new();
    if cwd_is_bound(&a.cwd) {
        v.push((a.cwd.clone(), a.cwd.clone()));
    }
    for m in &a.mounts {
        let (src, dst, _) = parse_mount(m)?;
        v.push((src, dst));
    }
    Ok(v)
}

/// The container's environment: the Slurm task variables, HOME, the product's transport settings,
/// then the job's `--container-env` over all of them. PATH is not set: the image's own (or
/// Docker's default) applies unless the job sets one.
fn rank_env(a: &SuperviseArgs, home: &str) -> Vec<String> {
    // Open MPI forwards only OMPI_* variables to the ranks it starts over ssh: the launch script
    // adds `-x NAME` for each of the job's own.
    let names: Vec<&str> = a.env.iter().map(|e| env_name(e)).collect();
    let mut defaults = vec![
        format!("SLURM_CKPT_ENV_NAMES={}", names.join(" ")),
        format!("SLURM_CKPT_CWD={}", a.cwd),
        // How long rank 0's launcher waits for every peer's sshd: the site's timeout, since the
        // peers' containers start with the job's other supervisors (slow for large jobs).
        format!("SLURM_CKPT_PEER_TIMEOUT={}", a.site.timeout_secs),
        format!("HOME={home}"),
    ];
    defaults.extend(slurm_task_env(a));
    defaults.extend([
        // MPI between rank containers must be plain TCP over the container network: UCX's
        // shared-memory/CMA transports see peers through the shared kernel and break restores.
        "UCX_TLS=tcp,self".into(),
        "UCX_NET_DEVICES=eth0".into(),
        // UCX's keepalive measures silence in wall-clock time: after a restore (minutes or hours
        // after the checkpoint) every peer would look dead ("Endpoint timeout").
        "UCX_KEEPALIVE_INTERVAL=inf".into(),
        "OMPI_MCA_pml=ob1".into(),
        "OMPI_MCA_btl=tcp,self".into(),
        "OMPI_MCA_btl_tcp_if_include=eth0".into(),
        "OMPI_MCA_oob_tcp_if_include=eth0".into(),
    ]);
    with_overrides(defaults, &a.env)
}

/// NAME of a NAME=VALUE entry.
fn env_name(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(n, _)| n)
}

/// `base` with every NAME=VALUE of `overrides` replacing the entry of the same NAME, or appended.
fn with_overrides(mut base: Vec<String>, overrides: &[String]) -> Vec<String> {
    for o in overrides {
        base.retain(|e| env_name(e) != env_name(o));
        base.push(o.clone());
    }
    base
}

/// Refuse a job whose uid, gid or supplementary groups the daemon's userns-remap ranges do not map
/// to themselves: Docker would otherwise fail late with an obscure error, or run the job as other
/// host ids. `read` returns a file's text (/etc/subuid, /etc/subgid). No remap: every id is itself.
/// The remap user is not known from the daemon; if no subuid user matches its root id, the check is
/// skipped with a warning rather than refusing jobs on a guess.
fn check_ids_mapped(
    user: &JobUser,
    remap_root: Option<(u32, u32)>,
    node: &str,
    read: impl Fn(&str) -> Option<String>,
) -> Result<()> {
    use crate::node_check::{describe_id_map, id_ranges, maps_to_itself, remap_user_with_root};
    let Some((root_uid, root_gid)) = remap_root else {
        return Ok(());
    };
    let mut gids = vec![("gid", user.gid)];
    gids.extend(user.groups.iter().map(|(g, _)| ("supplementary group", *g)));
    let checks = [
        ("/etc/subuid", root_uid, vec![("uid", user.uid)]),
        ("/etc/subgid", root_gid, gids),
    ];
    for (file, root, ids) in checks {
        let Some(text) = read(file) else {
            tracing::warn!("{file} unreadable: job ids not checked against the user-namespace map");
            continue;
        };
        let Some(remap) = remap_user_with_root(&text, u64::from(root)) else {
            tracing::warn!("{file}: not exactly one user's first range starts at the daemon's root id {root}: job ids not checked against the user-namespace map");
            continue;
        };
        let ranges = id_ranges(&text, &remap);
        if let Some((what, id)) = ids
            .into_iter()
            .find(|(_, id)| !maps_to_itself(&ranges, *id))
        {
            return Err(Error::IdNotMapped {
                what,
                id,
                node: node.to_string(),
                file,
                user: remap,
                mapped: describe_id_map(&ranges),
            });
        }
    }
    Ok(())
}

/// Ignore the job-control and termination signals Slurm sends to every process of the step: the
/// supervisor acts on the relay's frames instead, and must outlive a SIGTERM to clean up.
fn ignore_step_signals() -> Result<Vec<tokio::signal::unix::Signal>> {
    use tokio::signal::unix::{signal, SignalKind};
    [
        SignalKind::terminate(),
        SignalKind::interrupt(),
        SignalKind::hangup(),
        SignalKind::user_defined1(),
        SignalKind::user_defined2(),
        SignalKind::quit(),
        SignalKind::alarm(),
        SignalKind::from_raw(nix::sys::signal::Signal::SIGTSTP as i32),
        SignalKind::from_raw(nix::sys::signal::Signal::SIGTTOU as i32),
        SignalKind::from_raw(nix::sys::signal::Signal::SIGTTIN as i32),
    ]
    .into_iter()
    .map(|k| signal(k).map_err(|e| Error::io("signal handler", e)))
    .collect()
}

/// Send to the relay; the relay may be gone (task killed), which the read side notices.
async fn send(tx: &mpsc::Sender<Frame>, f: Frame) {
    let _ = tx.send(f).await;
}

/// Supervise one rank. `log_problem`: why the job's log file could not be opened (the rank's logs
/// are then lost, since the supervisor's stderr is /dev/null): said once in the job's stderr.
pub async fn run(
    args: SuperviseArgs,
    sock: std::os::unix::net::UnixStream,
    log_problem: Option<String>,
) -> i32 {
    if let Some(what) = crate::cgroup::leave_own_step_cgroup() {
        tracing::info!("rank {}: {what}", args.rank);
    }
    let _sigs = match ignore_step_signals() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e}");
            return 1;
        }
    };
    if let Err(e) = sock.set_nonblocking(true) {
        tracing::error!("relay socket: {e}");
        return 1;
    }
    let sock = match tokio::net::UnixStream::from_std(sock) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("relay socket: {e}");
            return 1;
        }
    };
    let (mut rd, mut wr) = sock.into_split();
    let (tx, mut rx) = mpsc::channel::<Frame>(256);
    let writer = tokio::spawn(async move {
        while let Some(f) = rx.recv().await {
            if wr.write_all(&f.encode()).await.is_err() {
                break;
            }
        }
    });
    // Frames from the relay, decoded on their own task; None = the relay is gone (or spoke
    // garbage: the relay is ours, so a bad frame means the task is no longer what it was).
    let (cmd_tx, mut cmd_rx) = mpsc::channel::<Option<Frame>>(16);
    tokio::spawn(async move {
        loop {
            match crate::protocol::read_frame_async(&mut rd).await {
                Ok(Some(f)) => {
                    if cmd_tx.send(Some(f)).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!("relay: {e}");
                    break;
                }
            }
        }
        let _ = cmd_tx.send(None).await;
    });

    if let Some(p) = log_problem {
        send(
            &tx,
            Frame::Stderr(
                format!(
                    "slurm-ckpt: rank {} on {}: {p}; its supervisor logs nothing\n",
                    args.rank, args.node
                )
                .into_bytes(),
            ),
        )
        .await;
    }
    // Every line this rank logs says whose it is (all ranks of a node share the job's log).
    let span = tracing::info_span!("rank", job = args.job, rank = args.rank, node = %args.node);
    let mut restoring = None;
    let mut index_tail = None;
    let code = match supervise(&args, &tx, &mut cmd_rx, &mut restoring, &mut index_tail)
        .instrument(span)
        .await
    {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("rank {}: {e}", args.rank);
            if let Some(r) = &restoring {
                checkpoint::publish_restore_failure(&r.attempt, args.rank, &e);
                if args.rank == 0 {
                    match crate::site_secret::read(&args.site.key_file) {
                        Ok(secret) => {
                            let key = SiteKey::derive(&secret);
                            let policy = args.site.on_restore_failure;
                            restore_failure::act(args.job, policy, r, &e, &key).await;
                        }
                        Err(k) => tracing::error!("after the failed restore: {k}"),
                    }
                }
            }
            if let (0, Error::StorageAtRestart { .. }) = (args.rank, &e) {
                restore_failure::act_on_storage(args.job, args.site.on_restore_failure, &e).await;
            }
            if args.rank == 0 && args.ckpt.is_some() {
                // Written after the failure is reported, like every last update.
                index_tail = index_after_failure(&args, restoring.as_ref(), &e)
                    .map(|job| tokio::spawn(job.run()));
            }
            send(
                &tx,
                Frame::Fatal(format!(
                    "slurm-ckpt: rank {} on {}: {e}",
                    args.rank, args.node
                )),
            )
            .await;
            1
        }
    };
    send(&tx, Frame::Exit(code)).await;
    drop(tx);
    let _ = tokio::time::timeout(Duration::from_secs(10), writer).await;
    // The user's index last: the step's end does not wait for it.
    index::finish(index_tail.take()).await;
    code
}

/// Docker before 23 keeps the runtime-options type of a container only in memory from its
/// creation: after a restart (live-restore) it sends runc-v1 checkpoint options to the v2 shim,
/// which refuses them ("invalid task checkpoint option").
fn readopted_containers_cannot_checkpoint(version: &str) -> bool {
    version
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok())
        .is_some_and(|major| major < 23)
}

/// Everything one rank's supervisor works with once its container exists. Generic over the engine
/// so the checkpoint and restore sequences run against `engine::fake` in unit tests.
struct Rank<'a, E = Engine> {
    a: &'a SuperviseArgs,
    engine: E,
    id: String,
    st: RankState,
    layout: Option<Layout>,
    /// Generation numbers this job incarnation has used so far (identical on every rank, since
    /// every rank sees the same signals): the next checkpoint is `next_gen`.
    next_gen: u32,
    /// The job whose identity (addresses, hostnames, ssh keys) the containers carry
    /// (`identity_job`); recorded in every generation this run writes.
    identity_job: u32,
    remap_root: Option<(u32, u32)>,
    ranks: Vec<RankIdentity>,
    /// The job's address lease (None: a job restored from a generation taken before leases).
    lease: Option<Lease>,
    /// Authenticates the rank records and manifests this job writes and restores.
    key: SiteKey,
    /// Start a `slurm-ckpt guard` process for each checkpoint (off in unit tests: no binary).
    guarded: bool,
    /// This node as a restore depends on it (compat.rs): recorded with each checkpoint, checked
    /// against the generation's record before a restore.
    compat: crate::compat::Compat,
    /// Requeues the job away from a node that cannot restore it.
    jobctl: std::sync::Arc<dyn crate::slurm::JobControl>,
    /// Rank 0's updates of the user's own checkpoint index.
    index: index::IndexUpdates,
    /// The host's processes, to see the container's before a checkpoint holds it (settle.rs).
    procs: std::sync::Arc<dyn crate::settle::ProcTable>,
    /// When this run's container started or was restored (None: not yet).
    running_since: Option<std::time::Instant>,
}

/// `restoring` is set to the restore attempt's directory from the moment this rank knows it
/// restores until it has: a failure in between is then published to the other ranks (see `run`).
async fn supervise(
    a: &SuperviseArgs,
    tx: &mpsc::Sender<Frame>,
    cmds: &mut mpsc::Receiver<Option<Frame>>,
    restoring: &mut Option<restore_failure::Restoring>,
    index_tail: &mut Option<tokio::task::JoinHandle<()>>,
) -> Result<i32> {
    let user = JobUser::lookup(a.uid, a.gid)?;
    let secret = crate::site_secret::read(&a.site.key_file)?;
    let engine = Engine::connect(&a.site.socket_for(&a.node), &a.node).await?;
    engine.check_network(&a.site.network).await?;
    let image_id =
        crate::image_check::ensure(&engine, &a.image, &a.mpi, &a.site.runtime_dir).await?;

    // Every job's address lease lives under ckpt_root too: a node whose storage is not mounted
    // must not hand out addresses from its own disk.
    crate::storage::check_fstype(&a.site.ckpt_root, &a.site.storage_fstype)
        .map_err(|e| storage_at_restart(a, &a.site.ckpt_root, e))?;
    let look = Duration::from_secs(a.site.timeout_secs);
    // Checkpoint/restart: find the newest complete generation of this job, refuse one that does
    // not match it. Each step of the script has its own generations (`steps.rs`).
    if a.ckpt.is_some() {
        crate::storage::check_root_writable(
            &a.site.ckpt_root,
            a.site.storage_root_uid,
            &a.node,
            look,
        )
        .await
        .map_err(|e| storage_at_restart(a, &a.site.ckpt_root, e))?;
    }
    crate::storage::pin_mount(&a.site.ckpt_root, look);
    let dirs = job_layouts(a, &user.name)?;
    let key = SiteKey::derive(&secret);
    if let Some((top, l)) = &dirs {
        // Every checkpointing job marks the directory as its own from the start: a job that
        // resumes from it checks that none of them still runs (`check_resume_source`).
        // Both made traversable (0755): a step's images are read from inside the container's
        // user namespace at restore. Best effort, like every checkpoint: storage that cannot be
        // written fails the checkpoints, not the job.
        let marked = top
            .create()
            .and_then(|()| l.create())
            .and_then(|()| crate::gc::mark_owner(&l.job_dir, a.job))
            .and_then(|()| crate::gc::mark_owner(&top.job_dir, a.job));
        if let Err(e) = marked {
            tracing::warn!("checkpoint directory {}: {e}", l.job_dir.display());
        }
        if let Some(code) = already_finished(a, &top.job_dir, &key, tx).await {
            return Ok(code);
        }
    }
    let layout = dirs.map(|(_, l)| l);
    let restore_from = match &layout {
        Some(l) => restore_point(a, l, &key, &image_id, tx)
            .await
            .map_err(|e| storage_at_restart(a, &l.job_dir, e))?,
        None => None,
    };
    if let (Some(l), Some(m)) = (&layout, &restore_from) {
        check_resume_source(a, l, m, tx).await?;
    }
    if let (0, Some(l)) = (a.rank, &layout) {
        let started = crate::ckpt::Started {
            instance: a.instance.as_ref().map(|i| i.to_string()),
            job: a.job,
            step: a.step,
            time: crate::state::now(),
        };
        // Best effort: without it a later rerun of the script runs finished steps again.
        if let Err(e) = l.mark_started(&started, &key) {
            tracing::warn!("recording the step's start in {}: {e}", l.job_dir.display());
        }
    }
    if let (Some(l), Some(m)) = (&layout, &restore_from) {
        *restoring = Some(restore_failure::Restoring {
            attempt: checkpoint::restore_attempt_dir(l, m.generation, a.job, a.restart_count),
            generation: m.generation,
            layout: l.clone(),
            started: crate::state::now(),
        });
    }
    // A restored process keeps the addresses, hostnames and ssh keys it was started with.
    let identity_job = identity_job(a.job, restore_from.as_ref());

    let (lease, ranks) = network_identity(
        a,
        identity_job,
        restore_from.as_ref(),
        layout.as_ref(),
        &key,
    )
    .await?;
    if let Some(m) = &restore_from {
        same_addresses(m, lease.as_ref())?;
    }
    let me = ranks
        .get(a.rank as usize)
        .ok_or(Error::RankOutOfRange {
            rank: a.rank,
            ntasks: a.ntasks,
        })?
        .clone();
    let home = container_home(&user.home, &named_binds(a)?).unwrap_or_else(|| "/tmp".into());
    let dir = jobdir::prepare(&JobDirSpec {
        runtime_dir: &a.site.runtime_dir,
        job_id: a.job,
        identity_job,
        node: &a.node,
        user: &user,
        home: &home,
        ranks: &ranks,
        secret: &secret,
    })?;
    jobdir::write_rank_env(&dir, a.rank, &slurm_task_env(a))?;
    write_pidfile(&dir, a.rank);

    let info = engine.daemon_info().await?;
    let cpuinfo = a.site.cpuinfo_for(&a.node);
    let version = info.version.clone();
    let runc = a.site.runc_candidates();
    // Only checkpointing jobs record or check it (two small commands run).
    let compat = match a.ckpt {
        Some(_) => {
            tokio::task::spawn_blocking(move || crate::compat::probe(&cpuinfo, &version, &runc))
                .await
                .map_err(|_| Error::ThreadPanicked {
                    what: "probing the node's restore compatibility",
                })?
        }
        None => crate::compat::Compat::default(),
    };
    check_ids_mapped(&user, info.remap_root, &a.node, |f| {
        std::fs::read_to_string(f).ok()
    })?;
    let binds = job_binds(a, &dir, &user, &info.root_dir).await?;
    let mut cmd = vec![
        "/bin/sh".to_string(),
        format!("{MOUNT_POINT}/launch"),
        a.rank.to_string(),
        a.mpi.clone(),
        a.ntasks.to_string(),
    ];
    cmd.extend(a.argv.iter().cloned());
    let name = container_name(a.job, a.rank);
    let spec = RankSpec {
        name: name.clone(),
        job_id: a.job,
        me: &me,
        all: &ranks,
        image: &a.image,
        uid: a.uid,
        gid: a.gid,
        groups: user.group_ids(),
        network: &a.site.network,
        runtime: (!a.site.runtime.is_empty()).then_some(a.site.runtime.as_str()),
        cmd,
        env: rank_env(a, &home),
        binds,
        cwd: &a.cwd,
        nano_cpus: crate::cpus::nano_cpus(a.cpus, a.site.cpu_quota),
        memory_bytes: a
            .mem_mb
            .and_then(|m| i64::try_from(m.saturating_mul(1 << 20)).ok()),
        cpuset_cpus: crate::cpus::container_cpuset(a.rank, a.cpuset.as_ref())?,
    };
    let id = engine.create_rank(&spec).await?;
    let st = RankState {
        job: a.job,
        step: a.step,
        rank: a.rank,
        user: user.name.clone(),
        node: a.node.clone(),
        container: name.clone(),
        container_id: id.clone(),
        hostname: me.hostname.clone(),
        ip: me.ip.to_string(),
        mac: me.mac.clone(),
        image: a.image.clone(),
        state: ContainerState::Created,
        events: vec![],
        last_checkpoint: None,
        dumping: None,
        restoring: None,
        unsaved: None,
        restore_refused: None,
        last_checkpoint_phases: None,
        last_restore: None,
        window_warning: None,
    };
    let next_gen = layout
        .as_ref()
        .and_then(|l| l.generations().last().copied())
        .unwrap_or(0)
        + 1;
    let mut r = Rank {
        a,
        engine,
        id,
        st,
        layout,
        next_gen,
        identity_job,
        remap_root: info.remap_root,
        ranks,
        lease,
        key,
        guarded: true,
        compat,
        jobctl: std::sync::Arc::new(crate::slurm::Scontrol),
        index: index::IndexUpdates::new(a.rank == 0),
        procs: std::sync::Arc::new(crate::settle::HostProcs),
        running_since: None,
    };
    r.st.event("created");
    save(&mut r.st, &a.site.ckpt_root);
    let mut output = r.engine.attach(&r.id, true).await?.output;
    match &restore_from {
        Some(m) => r.restore(m, &info.root_dir).await?,
        None => {
            r.engine.start(&r.id).await?;
            r.st.state = ContainerState::Running;
            r.st.event("started");
        }
    }
    r.running_since = Some(std::time::Instant::now());
    *restoring = None;
    save(&mut r.st, &a.site.ckpt_root);
    if let Some(m) = &restore_from {
        r.index.notes.last_restore = Some(crate::user_index::Restored {
            generation: m.generation,
            time: crate::state::now(),
        });
    }
    r.update_index();
    tracing::info!(
        "rank {} container {name} ({}) running as {} {}",
        a.rank,
        &r.id[..12.min(r.id.len())],
        me.hostname,
        me.ip
    );

    // Will a checkpoint fit in the job's preemption and requeue windows? (rank 0 says so)
    let forced = if a.rank == 0 && r.layout.is_some() {
        r.check_window(tx).await?
    } else {
        None
    };
    let mut periodic = a
        .ckpt_interval
        .or(forced)
        .filter(|_| a.rank == 0 && r.layout.is_some())
        .map(|m| {
            let every = Duration::from_secs(u64::from(m) * 60);
            tokio::time::interval_at(tokio::time::Instant::now() + every, every)
        });
    let id = r.id.clone();
    let engine_wait = Engine::connect(&a.site.socket_for(&a.node), &a.node).await?;
    let mut wait = Box::pin(engine_wait.wait(&id));
    let mut output_open = true;
    // Times the daemon went away under this rank (restarts with live-restore); bounded so a
    // daemon that keeps failing the wait cannot keep the rank looping.
    let mut rejoins = 0u32;
    let mut finished_by_request = false;
    let done_marker = launcher_done_marker(&a.site.ckpt_root, a.job, a.step, a.restart_count);
    let mut done_poll = tokio::time::interval(Duration::from_secs(1));
    let mut resave = tokio::time::interval(RESAVE_EVERY);
    // Set when Slurm ends the step (requeue, preemption, scancel): the launcher's exit is then not
    // the end of the MPI world, and the step id may already belong to the job's next run.
    let mut stopped_by_slurm = false;
    let code: i64 = loop {
        tokio::select! {
            res = &mut wait => match res {
                Ok(code) => break code,
                Err(e) if rejoins < MAX_REJOINS => {
                    rejoins += 1;
                    tracing::warn!("waiting on {name}: {e}; waiting for the container engine to answer again");
                    let state = r.engine.rejoin(&id, DAEMON_GRACE).await?;
                    tracing::info!(?state, "container engine answers again");
                    r.st.event(format!("container engine came back (container {})", state.map_or("unknown".into(), |s| s.to_string())));
                    save(&mut r.st, &a.site.ckpt_root);
                    let version = r.engine.daemon_info().await.map(|i| i.version).unwrap_or_default();
                    if readopted_containers_cannot_checkpoint(&version) {
                        r.st.event("this Docker cannot checkpoint a container it re-adopted: checkpoints of this job fail from now on");
                        send(tx, Frame::Stderr(format!(
                            "slurm-ckpt: rank {} on {}: dockerd was restarted and the container ran on, but Docker {version} cannot checkpoint a container it re-adopted after a restart (it forgets the runtime's option types: moby libcontainerd, fixed in Docker 23); this job's checkpoints fail from now on and a requeue restarts it from its last generation\n",
                            a.rank, a.node
                        ).into_bytes())).await;
                    }
                    // An exited container's wait returns its code at once.
                    wait = Box::pin(engine_wait.wait(&id));
                    if !output_open {
                        match r.engine.attach(&id, false).await {
                            Ok(o) => { output = o.output; output_open = true; }
                            Err(e) => tracing::warn!("re-attaching the output of {name}: {e}"),
                        }
                    }
                }
                Err(e) => return Err(e),
            },
            item = output.next(), if output_open => match item {
                Some(Ok(out)) => { if let Some(f) = output_frame(out) { send(tx, f).await } }
                Some(Err(e)) => { tracing::warn!("attach stream: {e}"); output_open = false; }
                None => output_open = false,
            },
            _ = resave.tick(), if r.st.unsaved.is_some() => save(&mut r.st, &a.site.ckpt_root),
            _ = done_poll.tick(), if a.rank != 0 && !finished_by_request => {
                if done_marker.exists() {
                    r.st.event("launcher finished (marker); stopping");
                    finished_by_request = true;
                    r.end_container().await?;
                }
            }
            _ = async { match periodic.as_mut() { Some(t) => { t.tick().await; } None => std::future::pending::<()>().await } } => {
                // Rank 0 keeps the clock; Slurm delivers the request to every rank of the step.
                crate::slurm::signal_step(a.job, a.step, "USR1").await;
            }
            cmd = cmds.recv() => match cmd.flatten() {
                Some(Frame::Suspend) => r.set_suspended(true).await,
                Some(Frame::Resume) => r.set_suspended(false).await,
                Some(Frame::Checkpoint) => {
                    if r.layout.is_some() {
                        if let Err(e) = r.checkpoint(false).await {
                            tracing::error!("checkpoint failed (job keeps running): {e}");
                            send(tx, Frame::Stderr(format!("slurm-ckpt: rank {}: checkpoint failed, job continues: {e}\n", a.rank).into_bytes())).await;
                        }
                    }
                }
                Some(Frame::Terminate) => {
                    stopped_by_slurm = true;
                    r.st.event("terminate requested");
                    if let (true, crate::window::OnTerminate::Skip { estimate, left }) = (r.layout.is_some(), r.terminate_decision()) {
                        r.skip_checkpoint(tx, estimate, left).await;
                        if a.rank == 0 && crate::slurm::requeue_if_preempted(a.job).await {
                            r.st.event("preempted: requeued without a new checkpoint");
                        }
                    } else if r.layout.is_some() {
                        // Preemption, requeue, scancel or time limit: save the job before it goes.
                        match r.checkpoint(true).await {
                            Ok(g) => {
                                tracing::info!("checkpoint generation {g} complete before termination");
                                if a.rank == 0 && crate::slurm::requeue_if_preempted(a.job).await {
                                    r.st.event(format!("preempted: requeued after checkpoint {}", gen_name(g)));
                                }
                            }
                            Err(e) => tracing::error!("checkpoint before termination failed: {e}"),
                        }
                    }
                    r.end_container().await?;
                }
                Some(Frame::Finish) => {
                    r.st.event("launcher finished; stopping");
                    finished_by_request = true;
                    r.end_container().await?;
                }
                Some(other) => tracing::warn!("unexpected frame from relay: {other:?}"),
                None => {
                    // The task is gone (killed): nobody waits for this container any more.
                    tracing::info!("relay gone; removing {name}");
                    r.st.event("task gone; container removed");
                    r.st.state = ContainerState::Exited;
                    save(&mut r.st, &a.site.ckpt_root);
                    r.engine.remove(&id).await?;
                    return Ok(137);
                }
            },
        }
    };
    // Deliver the rest of the output before the exit code.
    if output_open {
        let drain = async {
            while let Some(item) = output.next().await {
                if let Some(f) = item.ok().and_then(output_frame) {
                    send(tx, f).await;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(10), drain).await;
    }
    let code = if finished_by_request {
        0
    } else {
        i32::try_from(code).unwrap_or(1)
    };
    r.st.state = ContainerState::Exited;
    r.st.event(format!("exited with {code}"));
    save(&mut r.st, &a.site.ckpt_root);
    if a.rank == 0 && a.ntasks > 1 && !stopped_by_slurm {
        // Two ways to tell the other ranks, for robustness: a marker on the shared storage they
        // poll, and SIGUSR2 through Slurm (which also reaches this process tree and may kill the
        // scancel before it has reached every node).
        let _ = touch(&done_marker);
        crate::slurm::signal_step(a.job, a.step, "USR2").await;
    }
    if a.rank == 0 && !stopped_by_slurm {
        r.close_generations(code);
        r.index.notes.ended = Some(crate::user_index::Ended {
            exit_code: Some(code),
            time: crate::state::now(),
        });
        r.update_index();
    }
    *index_tail = r.index.take_pending();
    r.engine.remove(&id).await?;
    Ok(code)
}

/// The frame that carries one piece of container output to the relay (stdin echoes carry none).
fn output_frame(out: LogOutput) -> Option<Frame> {
    match out {
        LogOutput::StdOut { message } | LogOutput::Console { message } => {
            Some(Frame::Stdout(message.to_vec()))
        }
        LogOutput::StdErr { message } => Some(Frame::Stderr(message.to_vec())),
        LogOutput::StdIn { .. } => None,
    }
}

/// The job's address lease and its ranks' identities (rank 0 takes the lease, the others wait for
/// it: `lease.rs`). A job whose newest generation of this instance was taken before leases keeps
/// the old slot formula's addresses, which its restored connections expect.
async fn network_identity(
    a: &SuperviseArgs,
    identity: u32,
    restore_from: Option<&crate::ckpt::Manifest>,
    layout: Option<&Layout>,
    key: &SiteKey,
) -> Result<(Option<Lease>, Vec<RankIdentity>)> {
    a.site
        .check_ntasks(a.ntasks)
        .map_err(|limit| Error::TooManyRanks { job: a.job, limit })?;
    // A generation taken before leases restores onto the slot formula's addresses, which its
    // connections expect; rank 0 registers them so no new lease hands them out meanwhile.
    if restore_from.is_some_and(|m| m.lease.is_none()) {
        let ranks = job_plan(identity, a.ntasks, &a.site.subnet)?;
        if let (0, Some(r0)) = (a.rank, ranks.first()) {
            LeaseStore::new(&a.site.ckpt_root).reserve_legacy(
                identity,
                r0.ip,
                a.ntasks,
                &a.site.subnet,
                layout.map(|l| l.job_dir.as_path()),
                key,
            )?;
        }
        return Ok((None, ranks));
    }
    let req = LeaseRequest {
        job: identity,
        rank: a.rank,
        ntasks: a.ntasks,
        subnet: &a.site.subnet,
        ckpt_dir: layout.map(|l| l.job_dir.as_path()),
        // The step's run of this (real) job: a resumed job shares its identity job's lease.
        run: format!("j{}-s{}-r{}", a.job, a.step, a.restart_count),
    };
    let wait = Duration::from_secs(a.site.timeout_secs);
    let lease = LeaseStore::new(&a.site.ckpt_root)
        .for_rank(&req, key, wait)
        .await?;
    let ranks = leased_plan(identity, a.ntasks, &lease)?;
    Ok((Some(lease), ranks))
}

/// A generation restores only onto the addresses it was taken with.
fn same_addresses(m: &crate::ckpt::Manifest, lease: Option<&Lease>) -> Result<()> {
    let first = |l: Option<&Lease>| l.map(|l| l.first);
    if first(m.lease.as_ref()) == first(lease) {
        return Ok(());
    }
    let show = |l: Option<&Lease>| match l {
        Some(l) => format!("the lease at {}", l.first),
        None => "the old slot formula".to_string(),
    };
    Err(Error::GenerationRefused {
        generation: m.generation,
        reason: format!(
            "it was taken with the addresses of {}, the job now has {}",
            show(m.lease.as_ref()),
            show(lease)
        ),
    })
}

/// The generation to restore: the newest one that is authentic (site-key MAC), taken by this job
/// instance, not closed, and of this job, user, shape, image, program and working directory.
/// Every rank reads the same manifests, so all choose the same one (on network storage not
/// always at once: see [`tell_who_chose_what_i_cannot_read`]). A refused or skipped newer
/// generation is reported (by rank 0, to the job's output) and an older good one used. If every
/// generation is skipped (other instances', or closed) the job starts fresh, saying so; if one of
/// this run is refused and none is usable, the job fails rather than silently starting over.
async fn restore_point(
    a: &SuperviseArgs,
    layout: &Layout,
    key: &SiteKey,
    image_id: &str,
    tx: &mpsc::Sender<Frame>,
) -> Result<Option<crate::ckpt::Manifest>> {
    // Off this thread and bounded (storage.rs): a hung mount fails the start with the storage
    // named, and a directory that cannot be listed is an error, never "no generations" (which
    // would start the job from scratch).
    let (l, k, id) = (layout.clone(), key.clone(), image_id.to_string());
    let (job, step, uid, ntasks, resume) = (a.job, a.step, a.uid, a.ntasks, names_its_dir(a));
    let (instance, image) = (a.instance.as_ref().map(|i| i.to_string()), a.image.clone());
    let (argv, cwd) = (a.argv.clone(), a.cwd.clone());
    let look = Duration::from_secs(a.site.timeout_secs);
    let rp = crate::storage::bounded_async(
        look,
        "reading the checkpoints in",
        &layout.job_dir,
        move || {
            match std::fs::read_dir(&l.job_dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::io(&l.job_dir, e))
                }
                _ => {}
            }
            Ok(l.restore_point_rereading(
                &k,
                &Expect {
                    job,
                    step,
                    instance: instance.as_deref(),
                    uid,
                    ntasks,
                    image: &image,
                    image_id: &id,
                    argv: &argv,
                    cwd: &cwd,
                    resume,
                },
                REREAD_MANIFEST_AFTER,
            ))
        },
    )
    .await?;
    tell_who_chose_what_i_cannot_read(a, layout, &rp);
    for why in &rp.refused {
        tracing::warn!(rank = a.rank, "{why}");
        if a.rank == 0 {
            send(
                tx,
                Frame::Stderr(format!("slurm-ckpt: {why}\n").into_bytes()),
            )
            .await;
        }
    }
    if rp.none_of_this_run() {
        // Another job's computation (or this one's, finished) is never resumed; a job submitted
        // with --container-ckpt into that directory asked to run its own program.
        let msg = format!(
            "starting fresh: none of the {} generation(s) in {} is this job's to restore (see above)",
            rp.refused.len(),
            layout.job_dir.display()
        );
        tracing::warn!(rank = a.rank, "{msg}");
        if a.rank == 0 {
            send(
                tx,
                Frame::Stderr(format!("slurm-ckpt: {msg}\n").into_bytes()),
            )
            .await;
        }
        return Ok(None);
    }
    match (rp.manifest, rp.refused.is_empty()) {
        (Some(m), _) => Ok(Some(m)),
        (None, true) => Ok(None),
        (None, false) => Err(Error::NoUsableGeneration {
            dir: layout.job_dir.clone(),
            refused: rp.refused.len(),
            flag: a.site.flag("container-ckpt"),
        }),
    }
}

/// How long a rank waits before reading a manifest that failed to authenticate once more.
const REREAD_MANIFEST_AFTER: Duration = Duration::from_secs(2);

/// Ranks choose their generation each on its own; a generation this rank cannot read may be the
/// one another rank chose (network storage read through caches that disagree for a while). A
/// failure marker in that generation's attempt directory makes that rank stop at once, and rank
/// 0 act on `on_restore_failure`, instead of every rank waiting out the site timeout in
/// different directories.
fn tell_who_chose_what_i_cannot_read(
    a: &SuperviseArgs,
    layout: &Layout,
    rp: &crate::ckpt::RestorePoint,
) {
    for e in &rp.refused {
        if let Error::GenerationRefused { generation, .. } = e {
            if rp.unreadable.contains(generation) {
                let attempt =
                    checkpoint::restore_attempt_dir(layout, *generation, a.job, a.restart_count);
                checkpoint::publish_restore_failure(&attempt, a.rank, e);
            }
        }
    }
}

/// The job's checkpoint directory and its step's (the same for step 0); None without
/// checkpoints.
fn job_layouts(a: &SuperviseArgs, user: &str) -> Result<Option<(Layout, Layout)>> {
    let Some(d) = &a.ckpt else { return Ok(None) };
    let d = ckpt_subdir(d, a.job, &a.site.ckpt_root.join(user))?;
    let top = Layout::new(&a.site.ckpt_root, user, &d);
    let step = Layout::new(
        &a.site.ckpt_root,
        user,
        &crate::steps::step_subdir(&d, a.step),
    );
    Ok(Some((top, step)))
}

/// Rank 0 of a checkpointing job that failed to start or restore: the reason goes into the
/// user's index too (built when it runs, after a set-aside generation was marked, so the entry
/// shows it).
fn index_after_failure(
    a: &SuperviseArgs,
    restoring: Option<&restore_failure::Restoring>,
    e: &Error,
) -> Option<index::Job> {
    let user = JobUser::lookup(a.uid, a.gid).ok()?;
    let layout = match restoring {
        Some(r) => r.layout.clone(),
        None => job_layouts(a, &user.name).ok()??.1,
    };
    let what = if restoring.is_some() {
        "restore"
    } else {
        "start"
    };
    let notes = crate::user_index::Notes {
        last_failure: Some(index::failure(
            what,
            restoring.map(|r| r.generation),
            e.to_string(),
        )),
        ..Default::default()
    };
    Some(index::Job::new(a, &user.name, &layout, notes))
}

/// A step that already finished in the run this (requeued or resumed) script continues is not run
/// again (`steps.rs`): its recorded exit code, for rank 0 (the step's code, as the launcher's
/// would be), 0 for the others. Rank 0 says so in the job's output. None: run it.
async fn already_finished(
    a: &SuperviseArgs,
    top: &Path,
    key: &SiteKey,
    tx: &mpsc::Sender<Frame>,
) -> Option<i32> {
    if a.rerun {
        return None;
    }
    let runs = crate::steps::load_runs(top, key);
    let instance = a.instance.as_ref().map(|i| i.as_str());
    let c = crate::steps::finished_in_interrupted_run(a.step, &runs, instance, names_its_dir(a))?;
    let code = c.exit_code?;
    let msg = format!(
        "step {} already finished with exit code {code} in job {}'s run ({}, {}): not run again (--container-rerun runs it again)",
        a.step,
        c.job,
        crate::state::utc(c.time),
        top.display()
    );
    tracing::info!("{msg}");
    if a.rank != 0 {
        return Some(0);
    }
    send(
        tx,
        Frame::Stderr(format!("slurm-ckpt: {msg}\n").into_bytes()),
    )
    .await;
    Some(code)
}

/// `--container-ckpt=DIR` named a directory (not the job's default, its id): an earlier job's
/// generation there may be resumed.
/// A storage failure while a job that may have checkpoints (restarted, or resuming a named
/// directory) looks for them: `Error::StorageAtRestart`, so that the job is held, not started over.
fn storage_at_restart(a: &SuperviseArgs, dir: &Path, e: Error) -> Error {
    let may_have_checkpoints = a.restart_count > 0 || names_its_dir(a);
    match e {
        Error::Io { .. } | Error::Storage(_) if may_have_checkpoints => Error::StorageAtRestart {
            dir: dir.to_path_buf(),
            cause: Box::new(e),
        },
        e => e,
    }
}

fn names_its_dir(a: &SuperviseArgs) -> bool {
    a.ckpt
        .as_deref()
        .is_some_and(|d| !matches!(d, "" | "(null)") && d != a.job.to_string())
}

/// A job that resumes an earlier job's generation takes over that job's addresses and hostnames:
/// refused while the generation's job, its identity job or any other job that marked the
/// directory as its own still runs (or may run again: pending, requeued).
async fn check_resume_source(
    a: &SuperviseArgs,
    layout: &Layout,
    m: &crate::ckpt::Manifest,
    tx: &mpsc::Sender<Frame>,
) -> Result<()> {
    if m.job == a.job && m.instance.as_deref() == a.instance.as_ref().map(|i| i.as_str()) {
        return Ok(());
    }
    let mut jobs = crate::gc::marked_owners(&layout.job_dir)?;
    jobs.extend([m.job, m.identity()]);
    jobs.remove(&a.job);
    // A job that was just cancelled or ran out of time stays COMPLETING while its epilog waits
    // for its supervisors (a last checkpoint): wait for that, up to the site timeout.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(a.site.timeout_secs);
    for job in jobs {
        loop {
            match crate::slurm::live_state(job).await {
                None => break,
                Some(s) if s == "COMPLETING" && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_secs(2)).await
                }
                Some(state) => {
                    return Err(Error::ResumeSourceLive {
                        dir: layout.job_dir.clone(),
                        job,
                        state,
                    })
                }
            }
        }
    }
    tracing::info!(
        generation = m.generation,
        from_job = m.job,
        identity_job = m.identity(),
        "resuming an earlier job's generation"
    );
    if a.rank == 0 {
        let msg = format!(
            "slurm-ckpt: resuming generation {} of job {} from {}; the containers keep job {}'s addresses and hostnames (j{}-rN)\n",
            m.generation,
            m.job,
            layout.job_dir.display(),
            m.identity(),
            m.identity()
        );
        send(tx, Frame::Stderr(msg.into_bytes())).await;
    }
    Ok(())
}

/// The job whose network identity and ssh keys the ranks carry: this job on a fresh start; on a
/// restore, the generation's own (a job resumed from an earlier job's generation keeps that job's
/// identity, and so does every later requeue of it).
fn identity_job(job: u32, restore_from: Option<&crate::ckpt::Manifest>) -> u32 {
    restore_from.map_or(job, crate::ckpt::Manifest::identity)
}

/// Marker rank 0 leaves in the job's (shared) state directory when its launcher has exited.
fn launcher_done_marker(ckpt_root: &Path, job: u32, step: u32, restart: u32) -> std::path::PathBuf {
    crate::state::job_state_dir(ckpt_root, job).join(format!(".launcher-done-s{step}-rc{restart}"))
}

/// `--ckpt DIR` names the job's directory inside the user's area `<ckpt_root>/<user>/`: a relative
/// path (or an absolute one inside that area) without `..` or hidden components.
fn ckpt_subdir(d: &str, job: u32, area: &Path) -> Result<String> {
    let d = match d {
        "" | "(null)" => return Ok(job.to_string()),
        d if d.starts_with('/') => Path::new(d)
            .strip_prefix(area)
            .map(|p| p.to_string_lossy().into_owned())
            .map_err(|_| {
                Error::BadCkptDir(format!(
                    "checkpoint directory '{d}' is outside your checkpoint area {}",
                    area.display()
                ))
            })?,
        d => d.to_string(),
    };
    slurm_ckpt_site::job_paths::check_ckpt_subdir(&d).map_err(Error::BadCkptDir)?;
    Ok(d)
}

fn write_pidfile(dir: &Path, rank: u32) {
    let _ = std::fs::write(
        dir.join(format!("supervisor-r{rank}.pid")),
        std::process::id().to_string(),
    );
}

impl<E: ContainerEngine> Rank<'_, E> {
    fn timeout(&self) -> Duration {
        Duration::from_secs(self.a.site.timeout_secs)
    }

    /// The job ended normally (its launcher exited, whatever its code, and Slurm did not stop the
    /// step): its generations are no restart point any more (`ckpt::Closed`). Best effort: the
    /// job's result does not depend on it.
    fn close_generations(&mut self, exit_code: i32) {
        let Some(l) = &self.layout else { return };
        let closed = Closed {
            instance: self.a.instance.as_ref().map(|i| i.to_string()),
            job: self.a.job,
            step: self.a.step,
            time: crate::state::now(),
            through: l.generations().last().copied().unwrap_or(0),
            exit_code: Some(exit_code),
        };
        match l.close(&closed, &self.key) {
            Ok(true) => {
                tracing::info!("job ended normally: {} closed", l.job_dir.display());
                self.st.event(format!(
                    "ended normally: generations through {} closed",
                    gen_name(closed.through)
                ));
                save(&mut self.st, &self.a.site.ckpt_root);
            }
            Ok(false) => {}
            Err(e) => tracing::warn!("closing {}: {e}", l.job_dir.display()),
        }
    }

    /// Rank 0: bring the user's own index up to date (in the background).
    fn update_index(&mut self) {
        if let Some(l) = &self.layout {
            self.index.update(self.a, &self.st.user, l);
        }
    }

    /// Slurm's suspend (`pause`) or resume: pause or unpause the container, once.
    async fn set_suspended(&mut self, pause: bool) {
        if (self.st.state == ContainerState::Frozen) == pause {
            return;
        }
        let (state, done, verb, after) = if pause {
            (
                ContainerState::Frozen,
                "suspended (container paused)",
                "pause",
                ", the container keeps running",
            )
        } else {
            (
                ContainerState::Running,
                "resumed (container unpaused)",
                "unpause",
                "",
            )
        };
        match self.engine.set_paused(&self.id, pause).await {
            Ok(()) => {
                self.st.state = state;
                self.st.event(done);
            }
            Err(e) => {
                tracing::error!("{verb} failed{after}: {e}");
                self.st.event(format!("{verb} failed: {e}"));
            }
        }
        save(&mut self.st, &self.a.site.ckpt_root);
    }

    /// Stop the container for good (thawing it first if frozen: the kill must reach its processes).
    async fn end_container(&mut self) -> Result<()> {
        if self.st.state == ContainerState::Frozen {
            let _ = self.engine.unpause(&self.id).await;
        }
        self.engine.kill(&self.id, "SIGKILL").await
    }
}

/// Longest wait for one state record write: a record is worth less than the supervisor's next
/// step (thawing, reporting), and the CLI reads the records with its own bound.
const STATE_LOOK: Duration = Duration::from_secs(10);

fn save(st: &mut RankState, root: &Path) {
    let (rec, r) = (st.clone(), root.to_path_buf());
    let dir = crate::state::job_state_dir(root, st.job);
    // An abandoned write may still land later, after a newer one: the next save corrects it.
    let res = crate::storage::bounded(STATE_LOOK, "writing the state record in", &dir, move || {
        rec.save(&r)
    });
    // Each new reason is logged once, not every few seconds while it lasts.
    st.unsaved = match res {
        Err(e) => {
            let why = e.to_string();
            if st.unsaved.as_ref() != Some(&why) {
                tracing::warn!("state record: {why} (written again until it succeeds)");
            }
            Some(why)
        }
        Ok(()) => {
            if st.unsaved.is_some() {
                tracing::info!("state record written again");
            }
            None
        }
    };
}

/// How often a record whose last write failed is written again.
const RESAVE_EVERY: Duration = Duration::from_secs(5);

/// Where the helper's per-job logs go on each node.
pub fn log_path(job: u32) -> PathBuf {
    PathBuf::from(format!("/var/log/slurm-ckpt/job-{job}.log"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generation_restores_only_onto_its_own_addresses() {
        let mut m: crate::ckpt::Manifest = serde_json::from_value(serde_json::json!({
            "format": 3, "job": 7, "step": 0, "generation": 2, "user": "u", "uid": 1, "gid": 1,
            "image": "i", "image_id": "x", "ntasks": 1, "mpi": "none", "argv": [],
            "policy": "freeze-all", "created": 0, "criu_version": "", "engine_version": "",
            "total_bytes": 0, "ranks": []
        }))
        .unwrap();
        // A manifest from before leases reads as None and restores with the old formula only.
        assert!(m.lease.is_none());
        assert!(same_addresses(&m, None).is_ok());
        let lease = |first: [u8; 4]| Lease {
            job: 7,
            first: first.into(),
            size: 8,
            ntasks: 1,
            created: 0,
            ckpt_dir: None,
        };
        let e = same_addresses(&m, Some(&lease([10, 88, 1, 0]))).unwrap_err();
        assert!(
            matches!(e, Error::GenerationRefused { generation: 2, .. }),
            "{e}"
        );
        m.lease = Some(lease([10, 88, 1, 0]));
        assert!(same_addresses(&m, Some(&lease([10, 88, 1, 0]))).is_ok());
        assert!(same_addresses(&m, Some(&lease([10, 88, 1, 8]))).is_err());
        assert!(same_addresses(&m, None).is_err());
    }

    #[test]
    fn docker_before_23_cannot_checkpoint_readopted_containers() {
        assert!(readopted_containers_cannot_checkpoint("20.10.24+dfsg1"));
        assert!(!readopted_containers_cannot_checkpoint("23.0.1"));
        assert!(!readopted_containers_cannot_checkpoint("27.3.1"));
        assert!(!readopted_containers_cannot_checkpoint(""));
    }

    #[test]
    fn only_a_named_directory_resumes_earlier_jobs() {
        let a = |ckpt: Option<&str>| SuperviseArgs {
            ckpt: ckpt.map(String::from),
            ..args()
        };
        assert!(names_its_dir(&a(Some("runs/a"))));
        assert!(names_its_dir(&a(Some("5"))));
        for default in [None, Some(""), Some("(null)"), Some("7")] {
            assert!(!names_its_dir(&a(default)), "{default:?}");
        }
    }

    #[test]
    fn a_restore_keeps_the_identity_of_the_generation() {
        let m = |job, identity_job| crate::ckpt::Manifest {
            job,
            identity_job,
            ..crate::ckpt::tests::manifest()
        };
        assert_eq!(identity_job(9, None), 9);
        // A requeue restores its own generation; a manifest of an older helper names none.
        assert_eq!(identity_job(9, Some(&m(9, Some(9)))), 9);
        assert_eq!(identity_job(9, Some(&m(5, None))), 5);
        // Resumed from a job that was itself resumed: the first job's identity.
        assert_eq!(identity_job(9, Some(&m(5, Some(3)))), 3);
    }

    #[test]
    fn checkpoint_dirs_stay_inside_the_user_area() {
        let area = Path::new("/ckpt/alice");
        assert_eq!(ckpt_subdir("", 7, area).unwrap(), "7");
        assert_eq!(ckpt_subdir("(null)", 7, area).unwrap(), "7");
        assert_eq!(ckpt_subdir("runs/a", 7, area).unwrap(), "runs/a");
        assert_eq!(ckpt_subdir("/ckpt/alice/x", 7, area).unwrap(), "x");
        for bad in [
            "../bob",
            "a/../../b",
            ".hidden",
            "/ckpt/bob/x",
            "/etc",
            "a//b",
        ] {
            assert!(ckpt_subdir(bad, 7, area).is_err(), "{bad}");
        }
    }

    #[test]
    fn mounts_are_validated() {
        assert_eq!(
            parse_mount("/data:/data").unwrap(),
            ("/data".into(), "/data".into(), Access::ReadWrite)
        );
        assert_eq!(
            parse_mount("/a/b:/c:ro").unwrap(),
            ("/a/b".into(), "/c".into(), Access::Read)
        );
        for bad in [
            "rel:/x",
            "/x:rel",
            "/x",
            "/x:/y:zz",
            "/a/../etc:/x",
            "/x:/.slurm-ckpt",
            "/x:/proc/1",
            "/x:/etc/passwd",
        ] {
            assert!(parse_mount(bad).is_err(), "{bad}");
        }
    }

    fn user(uid: u32, gid: u32, groups: &[u32]) -> JobUser {
        JobUser {
            name: "alice".into(),
            uid,
            gid,
            groups: groups.iter().map(|g| (*g, None)).collect(),
            home: "/home/alice".into(),
        }
    }

    #[test]
    fn job_ids_outside_the_userns_map_are_refused() {
        let files = |f: &str| {
            Some(match f {
                "/etc/subuid" => "slurmckpt:100000:1\nslurmckpt:1:65535\n".to_string(),
                _ => "slurmckpt:100000:1\nslurmckpt:1:300000\n".to_string(),
            })
        };
        let root = Some((100000, 100000));
        assert!(check_ids_mapped(&user(1000, 1000, &[27]), root, "n1", files).is_ok());
        let e = check_ids_mapped(&user(200001, 1000, &[]), root, "n1", files).unwrap_err();
        assert_eq!(
            e.to_string(),
            "uid 200001 of the job is outside the user-namespace mapping of the Docker daemon on \
             node n1 (/etc/subuid, remap user slurmckpt: container ids 0 → 100000, 1..65535 → \
             1..65535); the site admin must extend slurmckpt's ranges in /etc/subuid so that id \
             200001 maps to itself, then restart dockerd (docs/ARCHITECTURE.md, \"User namespaces\")"
        );
        let e = check_ids_mapped(&user(1000, 1000, &[400000]), root, "n1", files).unwrap_err();
        assert!(matches!(
            e,
            Error::IdNotMapped {
                what: "supplementary group",
                id: 400000,
                file: "/etc/subgid",
                ..
            }
        ));
        // No remap: nothing to check; no matching remap user: not refused on a guess.
        assert!(check_ids_mapped(&user(200001, 1, &[]), None, "n1", files).is_ok());
        assert!(check_ids_mapped(&user(200001, 1, &[]), Some((5, 5)), "n1", files).is_ok());
    }

    #[test]
    fn home_is_where_a_bind_shows_it() {
        let b = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(s, d)| (s.to_string(), d.to_string()))
                .collect()
        };
        let home = Path::new("/home/alice");
        assert_eq!(
            container_home(home, &b(&[("/home", "/home")])).as_deref(),
            Some("/home/alice")
        );
        assert_eq!(
            container_home(home, &b(&[("/home", "/h"), ("/home/alice", "/u")])).as_deref(),
            Some("/u")
        );
        // The working directory below the home does not make the home visible.
        assert_eq!(
            container_home(home, &b(&[("/home/alice/run", "/home/alice/run")])),
            None
        );
        assert_eq!(container_home(home, &b(&[("/home/al", "/x")])), None);
        assert_eq!(container_home(home, &[]), None);
    }

    fn args() -> SuperviseArgs {
        SuperviseArgs {
            job: 7,
            step: 2,
            rank: 3,
            ntasks: 4,
            node: "n1".into(),
            uid: 1000,
            gid: 1000,
            image: "img".into(),
            mpi: "mpich".into(),
            mounts: vec![],
            env: vec![],
            cwd: "/work".into(),
            ckpt: None,
            ckpt_interval: None,
            rerun: false,
            restart_count: 0,
            instance: None,
            cpus: None,
            mem_mb: None,
            cpuset: None,
            site: SiteConfig::default(),
            argv: vec!["prog".into()],
        }
    }

    #[tokio::test]
    async fn ranks_share_rank_0s_lease_and_old_generations_keep_the_slot_formula() {
        let root = std::env::temp_dir().join(format!("slurm-ckpt-ident-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let key = SiteKey::derive(b"k");
        let args = |job: u32, rank: u32, ntasks: u32| {
            let mut a = args();
            a.job = job;
            a.step = 0;
            a.rank = rank;
            a.ntasks = ntasks;
            a.site = SiteConfig {
                ckpt_root: root.clone(),
                timeout_secs: 5,
                ..Default::default()
            };
            a
        };
        let (l0, r0) = network_identity(&args(9, 0, 100), 9, None, None, &key)
            .await
            .unwrap();
        let (l1, r1) = network_identity(&args(9, 1, 100), 9, None, None, &key)
            .await
            .unwrap();
        assert_eq!((l0.clone(), r0.clone()), (l1, r1));
        assert_eq!(r0.len(), 100);
        assert_eq!(r0[99].ip, std::net::Ipv4Addr::new(10, 88, 1, 99));
        assert_eq!(l0.map(|l| l.size), Some(104));
        // Over the site's max_ranks: refused before any lease.
        let e = network_identity(&args(10, 0, 1025), 10, None, None, &key)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::TooManyRanks { .. }), "{e}");
        // A generation of this instance from before leases: the slot formula, registered.
        let layout = Layout::new(&root, "u", "11");
        std::fs::create_dir_all(layout.gen_dir(1)).unwrap();
        std::fs::write(
            layout.gen_dir(1).join("manifest.json"),
            serde_json::json!({
                "format": 3, "job": 11, "step": 0, "generation": 1, "user": "u", "uid": 1,
                "gid": 1, "image": "i", "image_id": "x", "ntasks": 4, "mpi": "none",
                "argv": [], "policy": "freeze-all", "created": 0, "criu_version": "",
                "engine_version": "", "total_bytes": 0, "ranks": []
            })
            .to_string(),
        )
        .unwrap();
        let (l, r) = network_identity(
            &args(11, 0, 4),
            11,
            layout.latest().as_ref(),
            Some(&layout),
            &key,
        )
        .await
        .unwrap();
        assert!(l.is_none());
        assert_eq!(r, job_plan(11, 4, &SiteConfig::default().subnet).unwrap());
        let held = LeaseStore::new(&root).lookup(11, &key).unwrap().unwrap();
        assert_eq!(held.first, r[0].ip);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn ranks_get_their_own_slurm_variables_and_the_image_path() {
        let mut a = args();
        a.env = vec![
            "OMP_NUM_THREADS=4".into(),
            "PATH=/opt/x/bin:/usr/bin".into(),
        ];
        let env = rank_env(&a, "/home/alice");
        let has = |e: &str| env.iter().any(|x| x == e);
        assert!(has("SLURM_PROCID=3") && has("SLURM_CKPT_RANK=3"));
        assert!(
            has(&format!("SLURM_NTASKS={}", a.ntasks)) && has(&format!("SLURM_JOB_ID={}", a.job))
        );
        assert!(has(&format!("SLURM_STEP_ID={}", a.step)));
        assert!(has("HOME=/home/alice") && has("OMP_NUM_THREADS=4"));
        assert!(has("SLURM_CKPT_ENV_NAMES=OMP_NUM_THREADS PATH"));
        assert!(has("SLURM_CKPT_SPLIT_OUTPUT=yes"));
        a.site.split_rank_output = false;
        assert!(rank_env(&a, "/tmp")
            .iter()
            .any(|e| e == "SLURM_CKPT_SPLIT_OUTPUT=no"));
        a.site.split_rank_output = true;
        // The job's PATH only; without one, none (the image's applies).
        assert_eq!(env.iter().filter(|e| e.starts_with("PATH=")).count(), 1);
        a.env.clear();
        assert!(!rank_env(&a, "/tmp").iter().any(|e| e.starts_with("PATH=")));
    }

    #[test]
    fn job_env_overrides_defaults() {
        let base = vec!["UCX_TLS=tcp,self".to_string(), "HOME=/tmp".to_string()];
        let out = with_overrides(base, &["UCX_TLS=tcp".into(), "X=1".into()]);
        assert_eq!(
            out,
            vec!["HOME=/tmp".to_string(), "UCX_TLS=tcp".into(), "X=1".into()]
        );
    }
}
