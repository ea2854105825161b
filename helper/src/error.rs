//! The helper library's error type: one enum, each variant names what was wrong.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Site(#[from] slurm_ckpt_site::ConfigError),
    #[error("job {job}: {limit}")]
    TooManyRanks {
        job: u32,
        limit: slurm_ckpt_site::RankLimit,
    },
    #[error("subnet {0} is too small for per-job address slots")]
    SubnetTooSmall(String),
    /// The lease store cannot be read or written: the job is refused, never given a guessed
    /// address. Like `Io`, the cause is in the message only.
    #[error("address lease store {path}: {err}; the job is refused rather than given addresses another job may hold (is the checkpoint storage mounted and writable by root? On storage that squashes root, ckpt_root must belong to the account root is mapped to, named by the site's storage_root_uid: docs/STORAGE.md)")]
    LeaseStore { path: PathBuf, err: std::io::Error },
    #[error("job {job}: no free block of {ntasks} addresses in subnet {subnet} ({used} addresses leased to other jobs or their checkpoints; `slurm-ckpt gc` releases stale leases)")]
    SubnetFull {
        job: u32,
        ntasks: u32,
        subnet: String,
        used: u32,
    },
    #[error("job {job}: its address lease holds {size} addresses but the job now runs {ntasks} ranks (a lease of an earlier job with this id? `slurm-ckpt gc` releases stale leases)")]
    LeaseTooSmall { job: u32, ntasks: u32, size: u32 },
    #[error("job {job} restores a checkpoint taken before address leases, with the addresses from {first}, but part of them are now leased to {}; requeue it once that job has ended", .holder.map_or("another job".to_string(), |h| format!("job {h}")))]
    LegacyAddressesTaken {
        job: u32,
        first: std::net::Ipv4Addr,
        holder: Option<u32>,
    },
    /// The cause is in the message and not also a `source()`: printed with `{e}` (logs, the job's
    /// output) or as an anyhow chain (`{e:#}`), it then appears once either way.
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    /// Like `Io`: the cause in the message, not also a `source()`.
    #[error("docker ({socket}): {err}")]
    Docker {
        socket: String,
        err: bollard::errors::Error,
    },
    #[error("docker network '{network}' does not exist on node {node}: the site must create it (see slurm-conf/README.md)")]
    NoNetwork { network: String, node: String },
    #[error("image '{image}' is not available on node {node}: load it into the node's Docker daemon first")]
    NoImage { image: String, node: String },
    #[error("user id {0} has no passwd entry on this node")]
    NoUser(u32),
    #[error("{what} refused: {reason}")]
    PathRefused { what: String, reason: String },
    #[error("checking the job's paths as its user failed: {0}")]
    PathCheck(String),
    #[error("cannot become the job's user: {0}")]
    DropPrivileges(String),
    #[error("user index directory {}: {why}", path.display())]
    IndexDir { path: PathBuf, why: String },
    #[error("user index {}: {why}", path.display())]
    IndexWrite { path: PathBuf, why: String },
    #[error("{path}: encrypted image refused: {why}")]
    Undecryptable {
        path: PathBuf,
        why: crate::crypt::CryptError,
    },
    #[error("{path}: not authenticated: {why}")]
    Unauthenticated { path: PathBuf, why: &'static str },
    #[error("checkpoint generation {generation} refused: {reason}")]
    GenerationRefused { generation: u32, reason: String },
    /// Not this run's to restore — another job instance's computation, or this instance's own after
    /// it ended normally — rather than a generation of this run that cannot be used.
    #[error("checkpoint generation {generation} skipped: {reason}")]
    GenerationSkipped { generation: u32, reason: String },
    #[error(transparent)]
    CpuList(#[from] slurm_ckpt_site::CpuListError),
    #[error("cpuset {cpus} names CPUs this node does not have online ({online})")]
    CpusOffline { cpus: String, online: String },
    #[error("bad frame from peer: {0}")]
    Protocol(String),
    /// Another rank failed (`gone`: stopped responding, its supervisor or node lost;
    /// `storage_refused`: it said the storage refused it, full or cut off) and this rank stops
    /// waiting, but is not the cause.
    #[error("{why}")]
    Peer {
        rank: u32,
        gone: bool,
        storage_refused: bool,
        why: String,
    },
    #[error("rank {rank} is out of range for a job of {ntasks} ranks")]
    RankOutOfRange { rank: u32, ntasks: u32 },
    #[error("{0}")]
    BadMount(String),
    #[error("{0}")]
    BadCkptDir(String),
    #[error("encoding {what}: {source}")]
    Encode {
        what: String,
        source: serde_json::Error,
    },
    #[error("the container engine at {socket} did not answer for {secs} s (last: {last}); is dockerd running with live-restore?")]
    DaemonGone {
        socket: String,
        secs: u64,
        last: String,
    },
    #[error("wait on container {container} ended without a status")]
    WaitEnded { container: String },
    /// Docker refused to pause a paused container or unpause a running one: the wanted state holds.
    #[error("container {container} is already {}", if *paused { "paused" } else { "not paused" })]
    AlreadyInState { container: String, paused: bool },
    #[error("container {container} is not running")]
    NotRunning { container: String },
    #[error("could not block the network of container {container} ({chain}: {status})")]
    NetworkLock {
        container: String,
        chain: &'static str,
        status: String,
    },
    /// A Docker endpoint bollard lacks (checkpoints) answered with an error.
    #[error("docker {method} {path}: HTTP {status}: {message}")]
    DockerApi {
        method: String,
        path: String,
        status: u16,
        message: String,
    },
    /// The node's daemon speaks an API older than the checkpoint endpoints (engine/api_version.rs).
    #[error("the Docker daemon of node {node} ({socket}) speaks API {version}, older than {min}, the first with the checkpoint API the product needs: upgrade Docker on that node")]
    DockerApiTooOld {
        socket: String,
        node: String,
        version: String,
        min: String,
    },
    /// A checkpoint or restore failed and CRIU's log said why (its log is gone with the container).
    // `failed` is not a `source`: its text is already part of this message.
    #[error("{failed}\nCRIU errors:\n{errors}")]
    Criu { failed: Box<Error>, errors: String },
    #[error("checkpointing is not enabled")]
    CkptDisabled,
    #[error("generation {generation} has no rank {rank}")]
    RankNotInGeneration { generation: u32, rank: u32 },
    #[error("no CRIU images in {} (is the container's runtime the slurm-ckpt wrapper?)", dir.display())]
    NoImages { dir: PathBuf },
    #[error("no usable checkpoint generation in {} ({refused} refused, see above); remove them or submit a new job without {flag} to start over", dir.display())]
    NoUsableGeneration {
        dir: PathBuf,
        refused: usize,
        /// The checkpoint option as this site names it (`option_prefix`).
        flag: String,
    },
    #[error("checkpoint directory {} is still in use by job {job} ({state}): a job resumes from a directory only once every earlier job that used it has ended, since it takes over their containers' addresses", dir.display())]
    ResumeSourceLive {
        dir: PathBuf,
        job: u32,
        state: String,
    },
    /// The checkpoint storage failed while a restarted or resuming job looked for its checkpoints:
    /// starting it from scratch could throw its work away (restore_failure.rs holds it).
    #[error("cannot look for the job's checkpoints in {}: {cause}; the job is not started from scratch, its work may be there: once the checkpoint storage answers again, release (or requeue) the job", dir.display())]
    StorageAtRestart { dir: PathBuf, cause: Box<Error> },
    /// The checkpoint storage did not answer in time (storage.rs): the operation was abandoned.
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error("timed out after {secs}s waiting for {what}")]
    Timeout { what: String, secs: u64 },
    #[error("cannot encode the job's ssh {what} key: {why}")]
    SshKey {
        what: &'static str,
        why: ssh_key::Error,
    },
    #[error("{path}: bad {what}: {why}")]
    BadJson {
        path: PathBuf,
        what: &'static str,
        why: serde_json::Error,
    },
    #[error("{path}: cannot encode {what}: {why}")]
    EncodeJson {
        path: PathBuf,
        what: &'static str,
        why: serde_json::Error,
    },
    #[error("{path}: chunk {chunk} of {file} out of sequence (expected {expected})")]
    ChunkOutOfSequence {
        path: PathBuf,
        file: String,
        chunk: u32,
        expected: u32,
    },
    #[error("{path}: damaged compressed image: {why}")]
    DamagedImage { path: PathBuf, why: std::io::Error },
    #[error("{path}: unexpected directory among CRIU images")]
    UnexpectedDirectory { path: PathBuf },
    #[error("{path}: not listed in the manifest (images altered)")]
    ImageNotListed { path: PathBuf },
    #[error("manifest lists a bad image name '{name}'")]
    BadImageName { name: String },
    #[error("{path}: checksum mismatch (images altered or incomplete)")]
    ChecksumMismatch { path: PathBuf },
    #[error("{what}: thread panicked")]
    ThreadPanicked { what: &'static str },
    #[error("unknown MPI family '{family}' (mpich, openmpi, none)")]
    UnknownMpi { family: String },
    #[error("program path '{program}' has unexpected characters (letters, digits and /._-+ only)")]
    BadProgramPath { program: String },
    #[error("image '{image}' cannot run {mpi} rank containers: missing {} (see docs/IMAGES.md)", missing.join("; "))]
    ImageUnfit {
        image: String,
        mpi: String,
        missing: Vec<String>,
    },
    /// The image's MPI is Open MPI 5 (PRRTE), which the launcher cannot start or checkpoint.
    #[error("image '{image}' has {found} (PRRTE runtime: prterun/prted, no orted), which is not supported: the product starts the MPI world with Open MPI 4's rsh/orted daemon tree inside the rank containers and checkpoints those daemons, and PRRTE's DVM is not supported yet; use an image with Open MPI 4.x, or MPICH (the mpich MPI family) (see docs/IMAGES.md)")]
    MpiUnsupported { image: String, found: String },
    /// A request to a Docker endpoint bollard lacks could not be made or its answer not read.
    #[error("docker {method} {path}: {why}")]
    DockerHttp {
        method: String,
        path: String,
        why: HttpFailure,
    },
    /// The job's uid, gid or a supplementary group is not mapped to itself by the node's
    /// userns-remap ranges: the container could not run as the job's real ids.
    /// The node a rank is to restore on cannot run what the generation recorded (compat.rs).
    #[error("node {node} cannot restore rank {rank} of checkpoint generation {generation} (taken on {taken_on}): {}", crate::compat::describe(mismatches))]
    NodeIncompatible {
        node: String,
        rank: u32,
        generation: u32,
        taken_on: String,
        mismatches: Vec<crate::compat::Mismatch>,
    },
    /// Site `preempt_window=error`: the job's checkpoint is not expected to fit (window.rs).
    #[error("{why}; the site refuses such jobs (preempt_window=error): ask for less memory or a partition with a longer GraceTime")]
    CheckpointWontFit { why: String },
    #[error("`{command}` failed: {stderr}")]
    SlurmCommand { command: String, stderr: String },
    #[error("`{command}` could not run or gave no answer in time")]
    SlurmUnanswered { command: String },
    #[error("{what} {id} of the job is outside the user-namespace mapping of the Docker daemon on node {node} ({file}, remap user {user}: container ids {mapped}); the site admin must extend {user}'s ranges in {file} so that id {id} maps to itself, then restart dockerd (docs/ARCHITECTURE.md, \"User namespaces\")")]
    IdNotMapped {
        what: &'static str,
        id: u32,
        node: String,
        file: &'static str,
        user: String,
        mapped: String,
    },
    /// node-setup: daemon.json already remaps to another user; changing it would give dockerd a
    /// new data root (every image and container of the old one unseen), so that is the admin's call.
    #[error("{path}: userns-remap is '{configured}' but node-setup was asked for user {wanted}: change it by hand (dockerd then starts with an empty data root) or pass --remap-user {configured}")]
    RemapUserConflict {
        path: PathBuf,
        configured: String,
        wanted: String,
    },
    #[error("{path}: {why}: node-setup changes only a JSON object with an object \"runtimes\"")]
    DaemonJsonShape { path: PathBuf, why: &'static str },
    #[error("creating the remap user {user}: {why}")]
    UserAdd { user: String, why: String },
    #[error("ids 1..{max_id} cannot map to themselves: the container root needs a host id above them below 2^32-1")]
    IdRangeTooWide { max_id: u64 },
    /// The site secret (`key_file`) may be read by others than its owner: they could forge
    /// checkpoints that root restores (site_secret.rs).
    #[error("{path}: the site key (site setting key_file) is readable by group or others (mode {mode:o}): make it readable by its owner only, e.g. chmod 0400 {path}")]
    KeyFileExposed { path: PathBuf, mode: u32 },
    #[error("{path}: the site key (site setting key_file) has {len} bytes, fewer than {min}: name a root-only file of at least {min} random bytes, identical on every node (munge's key, or on auth/slurm sites /etc/slurm/slurm.key)")]
    KeyFileShort {
        path: PathBuf,
        len: usize,
        min: usize,
    },
}

/// Why an HTTP exchange with the daemon failed (see `Error::DockerHttp`).
#[derive(Debug, thiserror::Error)]
pub enum HttpFailure {
    #[error("bad request: {0}")]
    Request(hyper::http::Error),
    #[error("{0}")]
    Http(hyper::Error),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, err: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            err,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn io_says_its_cause_once() {
        let e = Error::io("/x/y", std::io::Error::from(std::io::ErrorKind::NotFound));
        assert_eq!(e.to_string(), "/x/y: entity not found");
        assert!(e.source().is_none());
    }

    #[test]
    fn typed_variants_name_what_and_where() {
        // The option as the site names it (option_prefix), not the default spelling.
        let site = slurm_ckpt_site::SiteConfig::parse(&["option_prefix=ckpt".to_string()]).unwrap();
        let e = Error::NoUsableGeneration {
            dir: "/c/u/7".into(),
            refused: 2,
            flag: site.flag("container-ckpt"),
        }
        .to_string();
        assert!(
            e.contains("without --ckpt-checkpoint to start over")
                && !e.contains("--container-ckpt"),
            "{e}"
        );
        let e = Error::Timeout {
            what: "one of 2 dump slots on this node".into(),
            secs: 5,
        };
        assert_eq!(
            e.to_string(),
            "timed out after 5s waiting for one of 2 dump slots on this node"
        );
        let e = Error::ImageUnfit {
            image: "img".into(),
            mpi: "mpich".into(),
            missing: vec!["ssh".into(), "mpiexec".into()],
        };
        assert_eq!(
            e.to_string(),
            "image 'img' cannot run mpich rank containers: missing ssh; mpiexec (see docs/IMAGES.md)"
        );
        let e = Error::ChunkOutOfSequence {
            path: "/s".into(),
            file: "pages-1.img".into(),
            chunk: 3,
            expected: 2,
        };
        assert_eq!(
            e.to_string(),
            "/s: chunk 3 of pages-1.img out of sequence (expected 2)"
        );
    }
}
