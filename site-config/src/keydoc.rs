//! One documentation line per site setting, in the order of [`crate::KEYS`]: the source of the
//! container_ckpt(8) manual page, so the page and the parser cannot drift (defaults come from
//! [`crate::SiteConfig::default`], never written twice).

use crate::{SiteConfig, KEYS};

/// A site setting as documented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyDoc {
    pub key: &'static str,
    /// What the value looks like (for the manual page: `key=VALUE`).
    pub value: &'static str,
    pub doc: &'static str,
}

const fn d(key: &'static str, value: &'static str, doc: &'static str) -> KeyDoc {
    KeyDoc { key, value, doc }
}

/// Every key of [`KEYS`], same order.
pub const KEY_DOCS: [KeyDoc; KEYS.len()] = [
    d("helper", "PATH", "Absolute path of the slurm-ckpt helper binary the plugin runs (root-owned, not writable by others). The Debian package installs it as /usr/bin/slurm-ckpt (the default)."),
    d("ckpt_root", "DIR", "Checkpoint root on storage shared by all nodes; also holds the rank status records (.state/)."),
    d("runtime_dir", "DIR", "Node-local directory for the runtime files of running jobs."),
    d("docker_socket", "URL", "Docker endpoint of the node's daemon; %n is replaced by the node name."),
    d("network", "NAME", "Docker network (e.g. macvlan) spanning the nodes, created by the admin."),
    d("subnet", "CIDR", "That network's IPv4 subnet; rank addresses are derived from it."),
    d("image_allowlist", "PATTERN,...", "Comma-separated glob patterns (* ?) of images jobs may use; empty allows every image."),
    d("mpi_default", "mpich|openmpi|none", "In-container MPI launcher when a job gives no --container-mpi."),
    d("order_policy", "freeze-all|cf-rl|cl-rl|cf-rf|cl-rf", "Order in which ranks are frozen and resumed around a checkpoint/restore."),
    d("timeout", "SECONDS", "Longest any helper call from the plugin may take (1..86400)."),
    d("enabled", "yes|no", "no: the plugin registers its options but refuses container jobs."),
    d("runtime", "NAME", "Docker runtime of the rank containers: the slurm-ckpt-runc wrapper registered with dockerd under this name; empty = plain runc (Docker's path)."),
    d("keep_generations", "N", "Complete checkpoint generations kept per job (1..100)."),
    d("dump_parallel", "N", "Rank dumps running at once per node (0 = no limit)."),
    d("data_path", "direct|docker", "How CRIU images travel: direct (runtime wrapper to storage) or docker (Docker's own, slower path)."),
    d("compress", "none|zstd|zstd:LEVEL", "Compression of stored images (LEVEL 1..19); anything but none dumps to stage_dir first. Jobs may override it with --container-ckpt-compress."),
    d("stage_dir", "DIR", "Node-local directory where CRIU dumps before images are packed or copied to the storage (needs room for the node's ranks)."),
    d("stage_dumps", "auto|yes|no", "Uncompressed images dumped to stage_dir too, then copied to the storage (summed on the way): the job is held only for a local dump. auto: when ckpt_root lies on a network file system (NFS, Lustre, GPFS, CephFS, BeeGFS, FUSE, ...). Restores then copy the images back to stage_dir while verifying them. no: straight to the storage, both ways (nodes with a small or in-memory stage_dir)."),
    d("incremental", "yes|no", "yes: page images are stored in 4 MiB chunks, unchanged ones linked from the previous generation."),
    d("cpu_quota", "yes|no", "yes: also cap each rank container's CPU time at its task's CPUs (CFS quota); the cpuset applies either way."),
    d("encrypt", "yes|no", "yes: stored images are encrypted (XChaCha20-Poly1305, per-user key derived from the site key, key_file); dumps to stage_dir first."),
    d("on_restore_failure", "fail|hold|previous", "A restore that fails on any rank: fail the job, requeue and hold it, or mark the generation bad and requeue the job to restore the previous good one (held when there is none). The reason goes into the job's Comment."),
    d("restore_compat", "strict|cpu|off", "Check of a node before a rank restores on it, against what the generation recorded: cpu = same CPU vendor, the CPU flags it recorded, same page size; strict = also the same kernel, CRIU, runc and Docker versions; off = no check. An incompatible node is excluded and the job requeued."),
    d("cpuinfo_path", "PATH", "Where a node's CPU description is read (%n = node name). Only for testing or emulation, e.g. per-node files for virtual nodes that share one host."),
    d("preempt_window", "warn|error|periodic:MIN", "When a job's checkpoint (its memory at its nodes' measured speed) will not fit in its partition's GraceTime+KillWait or the cluster's KillWait: warn in its output and status, fail it at start (error), or also checkpoint it every MIN minutes unless it set --container-ckpt-interval."),
    d("key_file", "PATH", "The site secret the job ssh keys and the checkpoint signing/encryption keys are derived from: a root-only file (no group or other read permission) of at least 32 bytes, identical on every node. munge's key by default; on Slurm's auth/slurm (no munge) use Slurm's key, e.g. /etc/slurm/slurm.key, or any such file of random bytes. Changing it makes existing checkpoints unverifiable."),
    d("runc_path", "PATH", "The runc the runtime wrapper runs (and whose version a generation records). Empty = the first of /usr/sbin/runc (Debian's runc package) and /usr/bin/runc (Docker CE's containerd.io) that exists. The wrapper reads it from plugstack.conf."),
    d("option_prefix", "PREFIX", "Replaces container in the user options' names, so the plugin can be loaded beside pyxis (which registers --container-image, --container-mounts, --container-env with other meanings). With PREFIX other than container, the checkpoint options spell checkpoint out: option_prefix=ckpt gives --ckpt-image, --ckpt-mounts, --ckpt-env, --ckpt-mpi, --ckpt-checkpoint, --ckpt-checkpoint-interval, --ckpt-checkpoint-compress. The SLURM_CKPT_CONTAINER_* variables keep their names. Every node and submit host must use the same value."),
    d("max_ranks", "N", "Most ranks (one container each) a job may run (1..65536); a job also needs that many free addresses in subnet (after its first 256), leased to it while it or a checkpoint of it exists."),
    d("split_rank_output", "yes|no", "yes: each MPI rank writes its stdout/stderr to its own container's output, so it is its own Slurm task's output (srun -l labels, --output=%t files) as in a native step; no: every rank's output goes through the MPI launcher and comes out as rank 0's."),
    d("storage_root_uid", "UID", "Who root is on the checkpoint storage: 0, or, if the storage squashes root, the dedicated account it maps root to (NFS anonuid, GlusterFS server.anonuid); ckpt_root must then be owned by that uid, and only files owned by it are trusted as root's (docs/STORAGE.md)."),
    d("storage_fstype", "TYPE[,TYPE...]", "The file system types ckpt_root must lie on, as /proc/self/mountinfo names them (nfs4, fuse.glusterfs, lustre, gpfs, ceph); empty = any. A job on a node where ckpt_root lies on another file system (its storage not mounted: the mount point's directory on the node's own disk) is refused at its start, or held at a restart (docs/STORAGE.md)."),
];

impl KeyDoc {
    /// The key's default as written in plugstack.conf (empty when the default is empty).
    pub fn default_value(&self) -> String {
        SiteConfig::default().value_of(self.key).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_the_parser_accepts_is_documented_in_order() {
        let documented: Vec<&str> = KEY_DOCS.iter().map(|k| k.key).collect();
        assert_eq!(documented, KEYS.to_vec());
        for k in &KEY_DOCS {
            assert!(!k.doc.is_empty() && !k.value.is_empty(), "{}", k.key);
            // The documented default is one the parser accepts and reproduces.
            let arg = format!("{}={}", k.key, k.default_value());
            let cfg = SiteConfig::parse(&[arg.as_str()])
                .unwrap_or_else(|e| panic!("default of {} not accepted: {e}", k.key));
            assert_eq!(cfg, SiteConfig::default(), "{}", k.key);
        }
        assert!(SiteConfig::parse(&["not_a_key=1"]).is_err());
    }

    #[test]
    fn example_plugstack_conf_shows_every_key() {
        let example = include_str!("../../slurm-conf/plugstack.conf");
        for key in KEYS {
            assert!(
                example.contains(&format!("#   {key}=")),
                "slurm-conf/plugstack.conf does not document {key}"
            );
        }
    }
}
