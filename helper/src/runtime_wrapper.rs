//! `slurm-ckpt-runc`: an OCI runtime registered with dockerd that execs the real runc, except that
//! `checkpoint` and `restore` read/write CRIU images directly on the checkpoint storage instead of
//! the temp dir that containerd tars through its content store (10x slower than the disk; see
//! docs/PERFORMANCE.md). Containers stay fully Docker-managed.
//!
//! Checkpoint: the supervisor (root) first writes `<runtime_dir>/redirect/<container-id>` holding
//! the destination; the wrapper passes that as `--image-path` and leaves a pointer file in
//! containerd's dir, so Docker stores only the pointer. Restore: the supervisor puts that pointer in
//! the new container's checkpoint; the wrapper finds it in the `--image-path` it is given and passes
//! the real location. Inputs are trusted only if owned by root and not writable by others, and the
//! destination must lie inside the site's checkpoint root.
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub const POINTER: &str = "slurm-ckpt-pointer";
pub const REAL_RUNC: &str = "/usr/sbin/runc";

#[derive(Debug, PartialEq)]
pub enum Op {
    Checkpoint { image_path_idx: usize, id: String },
    Restore { image_path_idx: usize },
    Other,
}

/// Find the runc subcommand and the index of the `--image-path` value in `args` (argv without [0]).
pub fn classify(args: &[String]) -> Op {
    let Some(pos) = args
        .iter()
        .position(|a| a == "checkpoint" || a == "restore")
    else {
        return Op::Other;
    };
    let value_idx = args[pos..]
        .iter()
        .position(|a| a == "--image-path")
        .map(|i| pos + i + 1);
    let Some(idx) = value_idx.filter(|i| *i < args.len()) else {
        return Op::Other;
    };
    if args[pos] == "checkpoint" {
        match args.last() {
            Some(id) if !id.starts_with('-') => Op::Checkpoint {
                image_path_idx: idx,
                id: id.clone(),
            },
            _ => Op::Other,
        }
    } else {
        Op::Restore {
            image_path_idx: idx,
        }
    }
}

/// Read a small root-owned, not group/other-writable file.
pub fn read_trusted(path: &Path) -> Option<String> {
    let md = std::fs::symlink_metadata(path).ok()?;
    if !md.is_file() || md.uid() != 0 || md.mode() & 0o022 != 0 {
        return None;
    }
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// A destination is acceptable if absolute, free of `..`, and inside `root`.
pub fn inside(dest: &str, root: &Path) -> Option<PathBuf> {
    let p = PathBuf::from(dest);
    if !p.is_absolute()
        || p.components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return None;
    }
    p.starts_with(root).then_some(p)
}

/// `inside` any of `roots`.
fn inside_any(dest: &str, roots: &[&Path]) -> Option<PathBuf> {
    roots.iter().find_map(|r| inside(dest, r))
}

/// Compute the argv for the real runc. Images may only go to or come from `roots` (the checkpoint
/// root and the node's staging directory). Errors are reported, and the original argv is used
/// (Docker's own path), so a misconfiguration degrades to slow instead of failing.
pub fn rewrite(
    args: Vec<String>,
    runtime_dir: &Path,
    roots: &[&Path],
) -> (Vec<OsString>, Option<String>) {
    let mut out = args.clone();
    let note = match classify(&args) {
        Op::Checkpoint { image_path_idx, id } => {
            let redirect = runtime_dir.join("redirect").join(&id);
            match read_trusted(&redirect).and_then(|d| inside_any(&d, roots)) {
                Some(dest) => {
                    let tmp = PathBuf::from(&args[image_path_idx]);
                    let _ = std::fs::create_dir_all(&tmp);
                    match std::fs::write(tmp.join(POINTER), dest.to_string_lossy().as_bytes()) {
                        Ok(()) => {
                            out[image_path_idx] = dest.to_string_lossy().into_owned();
                            Some(format!("checkpoint {id} -> {}", dest.display()))
                        }
                        Err(e) => Some(format!(
                            "checkpoint {id}: cannot write pointer: {e}; using Docker's path"
                        )),
                    }
                }
                None => None,
            }
        }
        Op::Restore { image_path_idx } => {
            let ptr = Path::new(&args[image_path_idx]).join(POINTER);
            if ptr.exists() {
                match read_trusted(&ptr).and_then(|d| inside_any(&d, roots)) {
                    Some(dest) => {
                        out[image_path_idx] = dest.to_string_lossy().into_owned();
                        let lock = match add_netlock_hook(&bundle_of(&args)) {
                            Ok(()) => String::new(),
                            Err(e) => format!(" (network lock hook not added: {e})"),
                        };
                        Some(format!("restore <- {}{lock}", dest.display()))
                    }
                    None => Some(format!(
                        "restore: untrusted pointer {} ignored",
                        ptr.display()
                    )),
                }
            } else {
                // Docker's own path (site data_path=docker or no redirect): containerd unpacked the
                // images into a 0700 root directory, which CRIU's restore cannot search from inside
                // the container's user namespace ("Unable to open tty-info.img: Permission denied").
                let bundle = bundle_of(&args);
                let dir = Path::new(&args[image_path_idx]);
                let mut note = format!("restore <- {} (Docker's path)", dir.display());
                if let Err(e) = let_container_root_search(dir, &bundle) {
                    note.push_str(&format!(
                        " (image dir not opened to the container's root: {e})"
                    ));
                }
                if let Err(e) = add_netlock_hook(&bundle) {
                    note.push_str(&format!(" (network lock hook not added: {e})"));
                }
                Some(note)
            }
        }
        Op::Other => None,
    };
    (out.into_iter().map(OsString::from).collect(), note)
}

/// Where the wrapper keeps CRIU's log of a failed checkpoint or restore of container `id`.
pub fn kept_criu_log(id: &str, op: &str) -> PathBuf {
    PathBuf::from(format!("/var/log/slurm-ckpt/criu/{id}-{op}.log"))
}

/// Argument of the hook mode of the wrapper binary (`slurm-ckpt-runc netlock-hook`).
pub const NETLOCK_HOOK: &str = "netlock-hook";

/// The bundle directory of a runc invocation (`--bundle DIR`, or runc's default: the cwd).
fn bundle_of(args: &[String]) -> PathBuf {
    match args
        .iter()
        .position(|a| a == "--bundle" || a == "-b")
        .and_then(|i| args.get(i + 1))
    {
        Some(b) => PathBuf::from(b),
        None => PathBuf::from("."),
    }
}

/// The host gid of the container's root, from the bundle's OCI config (None: no user namespace).
fn container_root_gid(bundle: &Path) -> std::io::Result<Option<u32>> {
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json"))?)?;
    let maps = spec["linux"]["gidMappings"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    Ok(maps
        .iter()
        .find(|m| m["containerID"].as_u64() == Some(0))
        .and_then(|m| m["hostID"].as_u64())
        .and_then(|g| u32::try_from(g).ok()))
}

/// Let the container's root search a root-owned image directory (group = its gid, mode 0710); the
/// files in it keep the owner and mode they were sealed with.
fn let_container_root_search(dir: &Path, bundle: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let Some(gid) = container_root_gid(bundle)? else {
        return Ok(());
    };
    let md = std::fs::symlink_metadata(dir)?;
    if !md.is_dir() || md.uid() != 0 {
        return Err(std::io::Error::other("not a root-owned directory"));
    }
    std::os::unix::fs::chown(dir, None, Some(gid))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o710))
}

/// Make the restored container start with its network dropped (see `netlock_hook`): add a
/// prestart hook to the bundle's OCI config, first in line. runc runs prestart hooks during a
/// restore once CRIU has created the namespaces, before any socket is restored.
///
/// Why: Docker configures the new network namespace (IP address up) before CRIU restores the
/// sockets, and CRIU does not lock a namespace it did not create. A segment a restored peer
/// retransmits in that window meets no socket and is answered with a RST: the MPI connection dies.
/// The supervisor lifts the block once every rank of the job is restored.
pub fn add_netlock_hook(bundle: &Path) -> std::io::Result<()> {
    let cfg = bundle.join("config.json");
    let mut spec: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg)?)?;
    let exe = std::env::current_exe()?;
    let hook =
        serde_json::json!({"path": exe, "args": ["slurm-ckpt-runc", NETLOCK_HOOK], "timeout": 60});
    let obj = spec
        .as_object_mut()
        .ok_or_else(|| std::io::Error::other("config.json is not an object"))?;
    let hooks = obj.entry("hooks").or_insert_with(|| serde_json::json!({}));
    let prestart = hooks
        .as_object_mut()
        .ok_or_else(|| std::io::Error::other("hooks is not an object"))?
        .entry("prestart")
        .or_insert_with(|| serde_json::json!([]));
    let list = prestart
        .as_array_mut()
        .ok_or_else(|| std::io::Error::other("hooks.prestart is not a list"))?;
    list.insert(0, hook);
    let tmp = bundle.join(".config.json.slurm-ckpt");
    std::fs::write(&tmp, serde_json::to_vec(&spec)?)?;
    std::fs::rename(&tmp, &cfg)
}

/// The iptables rules that isolate a container's network namespace, as (chain, argv) pairs; the
/// supervisor uses the same rules around checkpoints, and deletes them by the same spec.
pub fn drop_rule(op: &'static str, chain: &'static str) -> [&'static str; 10] {
    [
        "iptables",
        "-w",
        op,
        chain,
        "-m",
        "comment",
        "--comment",
        "slurm-ckpt",
        "-j",
        "DROP",
    ]
}

/// The prestart hook: read the OCI state from stdin and drop all traffic in the namespace of its pid.
pub fn netlock_hook(state: &[u8]) -> Result<(), String> {
    let v: serde_json::Value =
        serde_json::from_slice(state).map_err(|e| format!("OCI state: {e}"))?;
    let pid = v
        .get("pid")
        .and_then(|p| p.as_i64())
        .filter(|p| *p > 0)
        .ok_or("OCI state has no pid")?;
    for chain in ["INPUT", "OUTPUT"] {
        let status = std::process::Command::new("nsenter")
            .arg(format!("--net=/proc/{pid}/ns/net"))
            .args(drop_rule("-I", chain))
            .status()
            .map_err(|e| format!("nsenter: {e}"))?;
        if !status.success() {
            return Err(format!(
                "iptables {chain} in the namespace of pid {pid}: {status}"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn classifies_containerd_argv() {
        let ck = v("--root /r --log /l --log-format json checkpoint --image-path /tmp/x --work-path /w --leave-running abc123");
        assert_eq!(
            classify(&ck),
            Op::Checkpoint {
                image_path_idx: 8,
                id: "abc123".into()
            }
        );
        let rs = v("--root /r --log /l restore --image-path /tmp/y --work-path /w --detach --pid-file p -no-subreaper --bundle /b id");
        assert_eq!(classify(&rs), Op::Restore { image_path_idx: 6 });
        assert_eq!(classify(&v("--root /r start abc")), Op::Other);
        assert_eq!(classify(&v("checkpoint --image-path")), Op::Other);
    }

    #[test]
    fn destinations_must_be_inside_the_root() {
        let root = Path::new("/ckpt");
        assert!(inside("/ckpt/u/1/g1/rank-0", root).is_some());
        assert!(inside("/ckpt/../etc", root).is_none());
        assert!(inside("/etc/x", root).is_none());
        assert!(inside("rel", root).is_none());
        let roots = [root, Path::new("/stage")];
        assert!(inside_any("/stage/1/node1/x", &roots).is_some());
        assert!(inside_any("/stagex/1", &roots).is_none());
    }

    #[test]
    fn netlock_hook_goes_first() {
        let dir = std::env::temp_dir().join(format!("slurm-ckpt-hook-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("config.json"),
            r#"{"ociVersion":"1.0.2","hooks":{"prestart":[{"path":"/x","args":["setkey"]}]}}"#,
        )
        .unwrap();
        add_netlock_hook(&dir).unwrap();
        let spec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
        assert_eq!(spec["hooks"]["prestart"][0]["args"][1], NETLOCK_HOOK);
        assert_eq!(spec["hooks"]["prestart"][1]["path"], "/x");
        assert_eq!(spec["ociVersion"], "1.0.2");
        std::fs::write(dir.join("config.json"), "{}").unwrap();
        add_netlock_hook(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(bundle_of(&v("restore --bundle /b id")), PathBuf::from("/b"));
        assert!(netlock_hook(b"{}").is_err());
    }

    #[test]
    fn untrusted_inputs_leave_argv_alone() {
        let args = v("--root /r restore --image-path /nonexistent/dir --bundle /b id");
        let (out, note) = rewrite(
            args.clone(),
            Path::new("/nonexistent"),
            &[Path::new("/ckpt")],
        );
        assert_eq!(out, args.iter().map(OsString::from).collect::<Vec<_>>());
        assert!(note.is_some_and(|n| n.contains("Docker's path")));
    }
}
