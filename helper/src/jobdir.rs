//! The per-node job directory bind-mounted read-only at `/.slurm-ckpt` in every rank container:
//! passwd/group entries for the job user (sshd and ssh refuse to run for a uid without one), the
//! job's ssh keys and configs, the MPI hostfile and the in-container launch script.
//!
//! Every rank on every node must agree on the ssh keys without talking to each other, so they are
//! derived from (site secret, job id). The secret is the site's `key_file` (munge's key by
//! default): identical on every node of a Slurm cluster and readable by root only (site_secret.rs). Files are written atomically with
//! deterministic content, so several ranks of a node (or a restore on another node) produce the
//! same directory.
use crate::error::{Error, Result};
use crate::plan::RankIdentity;
use sha2::{Digest, Sha256};
use ssh_key::private::Ed25519Keypair;
use ssh_key::{LineEnding, PrivateKey};
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub const MOUNT_POINT: &str = "/.slurm-ckpt";
pub const SSH_PORT: u16 = 2222;
const LAUNCH: &str = include_str!("launch.sh");

/// The job user as seen inside the containers.
#[derive(Debug, Clone)]
pub struct JobUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (initgroups semantics, without `gid`) and their names where the node
    /// knows one: the containers get them too, so group-shared project directories are reachable.
    pub groups: Vec<(u32, Option<String>)>,
    /// Home directory from the user's passwd entry (host path).
    pub home: PathBuf,
}

impl JobUser {
    pub fn lookup(uid: u32, gid: u32) -> Result<Self> {
        use nix::unistd::{getgrouplist, Gid, Group, Uid, User};
        let user = User::from_uid(Uid::from_raw(uid))
            .ok()
            .flatten()
            .ok_or(Error::NoUser(uid))?;
        let cname = std::ffi::CString::new(user.name.as_str()).map_err(|_| Error::NoUser(uid))?;
        let mut groups: Vec<(u32, Option<String>)> = Vec::new();
        for g in getgrouplist(&cname, Gid::from_raw(gid))
            .map_err(|e| Error::io("getgrouplist", e.into()))?
        {
            let g = g.as_raw();
            // Container gid 0 is the remapped root's group, not the host's: never added.
            if g != gid && g != 0 && !groups.iter().any(|(o, _)| *o == g) {
                let name = Group::from_gid(Gid::from_raw(g))
                    .ok()
                    .flatten()
                    .map(|g| g.name);
                groups.push((g, name));
            }
        }
        Ok(JobUser {
            name: user.name,
            uid,
            gid,
            groups,
            home: user.dir,
        })
    }

    /// Supplementary group ids (Docker's `GroupAdd`).
    pub fn group_ids(&self) -> Vec<u32> {
        self.groups.iter().map(|(g, _)| *g).collect()
    }
}

/// The container's /etc/group: root, the user's primary group, every named supplementary group
/// with the user as member (`id` then shows names), nogroup. A group without a name on this node
/// still applies (by id) but gets no line; names that would break the format are left out.
fn group_file(u: &JobUser) -> String {
    let mut out = format!("root:x:0:\n{}:x:{}:\n", u.name, u.gid);
    for (gid, name) in &u.groups {
        let Some(name) = name else { continue };
        if [0, u.gid, 65534].contains(gid) || name.is_empty() || name.contains([':', '\n']) {
            continue;
        }
        out.push_str(&format!("{name}:x:{gid}:{}\n", u.name));
    }
    out.push_str("nogroup:x:65534:\n");
    out
}

fn derive_seed(secret: &[u8], job_id: u32, purpose: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"slurm-container-ckpt ssh v1\0");
    h.update(purpose.as_bytes());
    h.update(job_id.to_be_bytes());
    h.update(secret);
    h.finalize().into()
}

fn keypair(secret: &[u8], job_id: u32, purpose: &str) -> Result<(String, String)> {
    let key = PrivateKey::from(Ed25519Keypair::from_seed(&derive_seed(
        secret, job_id, purpose,
    )));
    let private = key
        .to_openssh(LineEnding::LF)
        .map_err(|why| Error::SshKey {
            what: "private",
            why,
        })?;
    let public = key.public_key().to_openssh().map_err(|why| Error::SshKey {
        what: "public",
        why,
    })?;
    Ok((private.to_string(), public))
}

/// Write `content` to `dir/name` atomically with `mode`, owned by `owner` (uid, gid) if given.
/// A file that is already exactly so is left alone: every rank on a node prepares the same files,
/// and replacing one would leave running containers with a deleted bind-mount source, which CRIU
/// then records as deleted and cannot restore.
fn put(dir: &Path, name: &str, content: &[u8], mode: u32, owner: Option<(u32, u32)>) -> Result<()> {
    let path = dir.join(name);
    if let (Ok(md), Ok(old)) = (fs::symlink_metadata(&path), fs::read(&path)) {
        use std::os::unix::fs::MetadataExt;
        let (u, g) = owner.unwrap_or((0, 0));
        if md.is_file()
            && md.mode() & 0o7777 == mode
            && md.uid() == u
            && md.gid() == g
            && old == content
        {
            return Ok(());
        }
    }
    let tmp = dir.join(format!(".{name}.{}", std::process::id()));
    let io = |e| Error::io(&tmp, e);
    let mut f = fs::File::create(&tmp).map_err(io)?;
    f.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io)?;
    if let Some((u, g)) = owner {
        std::os::unix::fs::chown(&tmp, Some(u), Some(g)).map_err(io)?;
    }
    f.write_all(content).map_err(io)?;
    f.sync_all().map_err(io)?;
    fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))
}

pub struct JobDirSpec<'a> {
    pub runtime_dir: &'a Path,
    pub job_id: u32,
    /// The job whose ssh keys the ranks use (`Manifest::identity_job`): a restored sshd and ssh
    /// keep the keys they were started with in memory.
    pub identity_job: u32,
    pub node: &'a str,
    pub user: &'a JobUser,
    /// The user's home inside the containers (passwd entry; sshd starts sessions there).
    pub home: &'a str,
    pub ranks: &'a [RankIdentity],
    pub secret: &'a [u8],
}

/// `<runtime_dir>/<job>/<node>`: per node even though `runtime_dir` is node-local on a real
/// cluster, because virtual nodes on one host share it, and one node's epilog must not delete
/// files another node's containers have bind-mounted (CRIU would record them as deleted).
pub fn job_dir(runtime_dir: &Path, job_id: u32, node: &str) -> PathBuf {
    runtime_dir
        .join(job_id.to_string())
        .join(node.replace(['/', '\0'], "_"))
}

/// Create (or refresh) the job directory on this node and return its path.
pub fn prepare(spec: &JobDirSpec) -> Result<PathBuf> {
    let dir = job_dir(spec.runtime_dir, spec.job_id, spec.node);
    fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    // The runtime dir may have been created first by a process with umask 077 (slurmstepd): CRIU's
    // restore opens the job's bind-mount sources from inside the container's user namespace, so
    // they must be reachable by others. Root-owned and not user-writable: the user can read their
    // keys but not swap the launch script.
    for d in [spec.runtime_dir, dir.parent().unwrap_or(&dir), &dir] {
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).map_err(|e| Error::io(d, e))?;
    }
    let u = spec.user;
    let own = Some((u.uid, u.gid));

    put(&dir, "passwd", format!(
        "root:x:0:0:root:/root:/bin/sh\n{}:x:{}:{}::{}:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        u.name, u.uid, u.gid, spec.home.replace([':', '\n'], "_")).as_bytes(), 0o644, None)?;
    put(&dir, "group", group_file(u).as_bytes(), 0o644, None)?;

    let (client_priv, client_pub) = keypair(spec.secret, spec.identity_job, "client")?;
    let (host_priv, host_pub) = keypair(spec.secret, spec.identity_job, "host")?;
    // ssh and sshd insist that private keys belong to the running user and are not readable by others.
    put(&dir, "id_ed25519", client_priv.as_bytes(), 0o600, own)?;
    put(
        &dir,
        "ssh_host_ed25519_key",
        host_priv.as_bytes(),
        0o600,
        own,
    )?;
    put(
        &dir,
        "authorized_keys",
        format!("{client_pub}\n").as_bytes(),
        0o644,
        None,
    )?;
    let known: String = spec
        .ranks
        .iter()
        .map(|r| format!("[{}]:{SSH_PORT},{} {host_pub}\n", r.hostname, r.ip))
        .collect();
    put(&dir, "known_hosts", known.as_bytes(), 0o644, None)?;
    put(&dir, "ssh_config", format!(
        "Host *\n  Port {SSH_PORT}\n  IdentityFile {MOUNT_POINT}/id_ed25519\n  UserKnownHostsFile {MOUNT_POINT}/known_hosts\n  StrictHostKeyChecking yes\n  BatchMode yes\n  LogLevel ERROR\n  ConnectTimeout 10\n  ServerAliveInterval 0\n").as_bytes(), 0o644, None)?;
    put(&dir, "sshd_config", format!(
        "Port {SSH_PORT}\nHostKey {MOUNT_POINT}/ssh_host_ed25519_key\nAuthorizedKeysFile {MOUNT_POINT}/authorized_keys\nPidFile none\nUsePAM no\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitUserEnvironment no\nAllowTcpForwarding no\nX11Forwarding no\nPrintMotd no\nLogLevel ERROR\nAcceptEnv *\n").as_bytes(), 0o644, None)?;
    put(
        &dir,
        "ssh",
        format!("#!/bin/sh\nexec ssh -F {MOUNT_POINT}/ssh_config \"$@\"\n").as_bytes(),
        0o755,
        None,
    )?;
    let hosts: String = spec
        .ranks
        .iter()
        .map(|r| format!("{}\n", r.hostname))
        .collect();
    put(&dir, "hostfile", hosts.as_bytes(), 0o644, None)?;
    put(&dir, "launch", LAUNCH.as_bytes(), 0o755, None)?;
    Ok(dir)
}

/// `env-r<RANK>`: the rank's own Slurm variables (NAME=VALUE) as shell `export` lines, sourced by
/// the launch script's `--rank-env` step in the rank's container (MPI launchers start every rank
/// with rank 0's environment). Values are single-quoted.
pub fn write_rank_env(dir: &Path, rank: u32, vars: &[String]) -> Result<()> {
    put(
        dir,
        &format!("env-r{rank}"),
        rank_env_script(vars).as_bytes(),
        0o644,
        None,
    )
}

fn rank_env_script(vars: &[String]) -> String {
    vars.iter()
        .filter_map(|v| v.split_once('='))
        .filter(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .map(|(n, v)| format!("export {n}='{}'\n", v.replace('\'', "'\\''")))
        .collect()
}

/// Remove the job directory (job end on this node).
pub fn remove(runtime_dir: &Path, job_id: u32, node: &str) -> Result<()> {
    let dir = job_dir(runtime_dir, job_id, node);
    let res = match fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(&dir, e)),
    };
    // The job's directory goes with its last node (fails while another node's is still there).
    if let Some(parent) = dir.parent() {
        let _ = fs::remove_dir(parent);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unchanged_file_keeps_its_inode() {
        use std::os::unix::fs::MetadataExt;
        let dir = std::env::temp_dir().join(format!("slurm-ckpt-put-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let ino = |d: &Path| fs::metadata(d.join("f")).unwrap().ino();
        put(&dir, "f", b"a", 0o644, None).unwrap();
        let first = ino(&dir);
        put(&dir, "f", b"a", 0o644, None).unwrap();
        assert_eq!(
            ino(&dir),
            first,
            "identical content must not replace a bind-mounted file"
        );
        put(&dir, "f", b"b", 0o644, None).unwrap();
        assert_eq!(fs::read(dir.join("f")).unwrap(), b"b");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn group_file_lists_named_supplementary_groups() {
        let u = JobUser {
            name: "alice".into(),
            uid: 200001,
            gid: 200001,
            groups: vec![
                (300000, Some("proj".into())),
                (300001, None),
                (0, Some("root".into())),
                (5, Some("bad:name".into())),
            ],
            home: "/home/alice".into(),
        };
        assert_eq!(
            group_file(&u),
            "root:x:0:\nalice:x:200001:\nproj:x:300000:alice\nnogroup:x:65534:\n"
        );
        assert_eq!(u.group_ids(), vec![300000, 300001, 0, 5]);
    }

    #[test]
    fn rank_env_is_quoted_shell() {
        let s = rank_env_script(&["SLURM_PROCID=3".into(), "X=a'b".into(), "bad-name=1".into()]);
        assert_eq!(s, "export SLURM_PROCID='3'\nexport X='a'\\''b'\n");
    }

    #[test]
    fn job_dirs_are_per_node() {
        let r = Path::new("/run/x");
        assert_eq!(job_dir(r, 7, "node2"), Path::new("/run/x/7/node2"));
        assert_eq!(job_dir(r, 7, "a/b"), Path::new("/run/x/7/a_b"));
    }

    #[test]
    fn keys_are_deterministic_per_job_and_secret() {
        let a = keypair(b"s1", 7, "client").unwrap();
        assert_eq!(a, keypair(b"s1", 7, "client").unwrap());
        assert_ne!(a, keypair(b"s1", 8, "client").unwrap());
        assert_ne!(a, keypair(b"s2", 7, "client").unwrap());
        assert_ne!(a, keypair(b"s1", 7, "host").unwrap());
        assert!(a.0.contains("OPENSSH PRIVATE KEY") && a.1.starts_with("ssh-ed25519 "));
    }
}
