//! `slurm-ckpt-runc`: an OCI runtime registered with dockerd that execs the real runc, except that
//! `checkpoint` and `restore` read/write CRIU images directly on the checkpoint storage instead of
//! the temp dir that containerd tars through its content store (10x slower than the disk; see
//! docs/PERFORMANCE.md). Containers stay fully Docker-managed.
//!
//! Checkpoint: the supervisor (root) first writes a redirect file naming the destination; the
//! wrapper passes that as `--image-path` and leaves a pointer file in containerd's dir, so Docker
//! stores only the pointer. Restore: the supervisor puts that pointer in the new container's
//! checkpoint; the wrapper finds it in the `--image-path` it is given and passes the real location.
//! No redirect (or no pointer) is Docker's own path. The files' names, places and format are in
//! `crate::redirect`.
//!
//! This runs as root, so it fails closed: a redirect or pointer that is not trusted (`crate::trust`:
//! root-owned, not writable by others, up to `/`, no links), a destination that does not resolve
//! inside the checkpoint root or stage dir, or site settings that cannot be read or parsed make it
//! refuse the checkpoint/restore instead of guessing. Other runc subcommands never need the site
//! settings and pass through unchanged, so containers can still be created, killed and deleted.
use crate::redirect;
use crate::site::{ConfigError, SiteConfig};
use crate::trust::{read_trusted, resolve_trusted, TrustError};
use oci_spec::runtime::{Hook, Hooks, LinuxIdMapping};
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The runc the wrapper runs without a (readable) `runc_path` site setting: the first of these
/// that exists. Never taken from the environment: whoever could set it would choose what runs as
/// root; plugstack.conf is root's and read through the trust checks.
pub use crate::site::RUNC_DEFAULTS as REAL_RUNC;
/// Where the site settings are read (and its `include`s followed).
pub const PLUGSTACK: &str = "/etc/slurm/plugstack.conf";
/// Largest plugstack.conf (or included file).
const PLUGSTACK_MAX: u64 = 1 << 20;

/// Why the wrapper refuses a checkpoint/restore (or, for `Runc`/`NoRunc`, any runc call).
#[derive(Debug, thiserror::Error)]
pub enum WrapperError {
    #[error("site settings unusable: {0}")]
    Site(#[from] ConfigError),
    #[error("redirect file not trusted: {0}")]
    Redirect(#[source] TrustError),
    #[error("checkpoint pointer not trusted: {0}")]
    Pointer(#[source] TrustError),
    #[error("{file} names '{dest}', not an absolute path without '..'")]
    BadDestination { file: PathBuf, dest: String },
    #[error("{file} names {dest}, which cannot be resolved: {source}")]
    Unresolvable {
        file: PathBuf,
        dest: PathBuf,
        source: std::io::Error,
    },
    #[error("{file} names {dest} (resolved: {resolved}), which is outside {roots}")]
    Outside {
        file: PathBuf,
        dest: PathBuf,
        resolved: PathBuf,
        roots: String,
    },
    #[error("cannot write the pointer {path}: {source}")]
    WritePointer {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no runc at {0}: install runc, or name it with the site setting runc_path in plugstack.conf")]
    NoRunc(String),
    #[error("the real runc is not trusted: {0}")]
    Runc(#[source] TrustError),
}

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

/// Site settings for a checkpoint/restore, every file (plugstack.conf and its includes) read
/// through the trust check: whoever could edit them would choose where root writes images.
pub fn load_site(plugstack: &Path) -> Result<SiteConfig, ConfigError> {
    let mut read = |p: &Path| {
        resolve_trusted(p)
            .and_then(|real| read_trusted(&real, PLUGSTACK_MAX))
            .map_err(|e| ConfigError::Unreadable {
                path: p.display().to_string(),
                reason: format!("not trusted ({e})"),
            })
    };
    SiteConfig::from_plugstack_with(plugstack, &mut read)
}

/// The runc to run: the first of `candidates` that exists, resolved and trusted.
pub fn real_runc<P: AsRef<Path>>(candidates: &[P]) -> Result<PathBuf, WrapperError> {
    let found = candidates
        .iter()
        .map(AsRef::as_ref)
        .find(|p| std::fs::symlink_metadata(p).is_ok())
        .ok_or_else(|| {
            let tried: Vec<String> = candidates
                .iter()
                .map(|p| p.as_ref().display().to_string())
                .collect();
            WrapperError::NoRunc(tried.join(" or "))
        })?;
    resolve_trusted(found).map_err(WrapperError::Runc)
}

/// Where images may go to or come from: the checkpoint root and the node's staging directory.
pub struct Roots<'a> {
    pub runtime_dir: &'a Path,
    pub allowed: Vec<&'a Path>,
}

impl<'a> Roots<'a> {
    pub fn of(site: &'a SiteConfig) -> Self {
        Roots {
            runtime_dir: &site.runtime_dir,
            allowed: vec![site.ckpt_root.as_path(), site.stage_dir.as_path()],
        }
    }

    fn display(&self) -> String {
        let all: Vec<String> = self
            .allowed
            .iter()
            .map(|r| r.display().to_string())
            .collect();
        all.join(" and ")
    }
}

/// The destination named in trusted `file` (text `text`), resolved (links, `..` of the storage)
/// and inside one of the resolved roots.
pub fn destination(file: &Path, text: &str, roots: &Roots) -> Result<PathBuf, WrapperError> {
    let dest = redirect::parse(text).ok_or_else(|| WrapperError::BadDestination {
        file: file.to_path_buf(),
        dest: text.trim().to_string(),
    })?;
    let resolved = std::fs::canonicalize(dest).map_err(|source| WrapperError::Unresolvable {
        file: file.to_path_buf(),
        dest: dest.into(),
        source,
    })?;
    // A root that does not exist contains nothing; one that is a link counts where it leads.
    let inside = roots
        .allowed
        .iter()
        .filter_map(|r| std::fs::canonicalize(r).ok())
        .any(|r| resolved.starts_with(r));
    if !inside {
        return Err(WrapperError::Outside {
            file: file.to_path_buf(),
            dest: dest.into(),
            resolved,
            roots: roots.display(),
        });
    }
    Ok(resolved)
}

/// The checkpoint destination the supervisor asked for container `id`, if it asked.
pub fn redirect_for(id: &str, roots: &Roots) -> Result<Option<PathBuf>, WrapperError> {
    let file = redirect::redirect_file(roots.runtime_dir, id);
    match redirect::read(&file).map_err(WrapperError::Redirect)? {
        Some(text) => destination(&file, &text, roots).map(Some),
        None => Ok(None),
    }
}

/// The real images of a restore, if the checkpoint Docker unpacked is a pointer.
pub fn pointer_in(image_dir: &Path, roots: &Roots) -> Result<Option<PathBuf>, WrapperError> {
    let file = redirect::pointer_file(image_dir);
    match redirect::read(&file).map_err(WrapperError::Pointer)? {
        Some(text) => destination(&file, &text, roots).map(Some),
        None => Ok(None),
    }
}

/// Leave the pointer to `dest` in containerd's image directory (what Docker stores).
fn write_pointer(image_dir: &Path, dest: &Path) -> Result<(), WrapperError> {
    redirect::write_pointer(image_dir, dest).map_err(|source| WrapperError::WritePointer {
        path: redirect::pointer_file(image_dir),
        source,
    })
}

/// The argv for the real runc and a line for the wrapper's log.
#[derive(Debug)]
pub struct Rewritten {
    pub argv: Vec<OsString>,
    pub note: Option<String>,
}

/// Compute the argv of a checkpoint/restore (other calls pass unchanged). Images may only go to
/// or come from `roots`; any trust or config error refuses the call (see the module doc).
pub fn rewrite(args: Vec<String>, roots: &Roots) -> Result<Rewritten, WrapperError> {
    let mut out = args.clone();
    let note = match classify(&args) {
        Op::Checkpoint { image_path_idx, id } => match redirect_for(&id, roots)? {
            Some(dest) => {
                write_pointer(Path::new(&args[image_path_idx]), &dest)?;
                out[image_path_idx] = dest.to_string_lossy().into_owned();
                Some(format!("checkpoint {id} -> {}", dest.display()))
            }
            None => Some(format!("checkpoint {id} (Docker's path)")),
        },
        Op::Restore { image_path_idx } => {
            let dir = Path::new(&args[image_path_idx]);
            match pointer_in(dir, roots)? {
                Some(dest) => {
                    out[image_path_idx] = dest.to_string_lossy().into_owned();
                    let mut note = format!("restore <- {}", dest.display());
                    add_lock(&args, &mut note);
                    Some(note)
                }
                None => Some(restore_docker_path(&args, dir)),
            }
        }
        Op::Other => None,
    };
    Ok(Rewritten {
        argv: out.into_iter().map(OsString::from).collect(),
        note,
    })
}

/// Add the network lock to the restore's bundle; a failure is noted, not fatal (the restore
/// works, only the window in which a peer's retransmission meets no socket stays open).
fn add_lock(args: &[String], note: &mut String) {
    if let Err(e) = add_netlock_hook(&bundle_of(args)) {
        note.push_str(&format!(" (network lock hook not added: {e})"));
    }
}

/// Docker's own path (site data_path=docker or no redirect): containerd unpacked the images into
/// a 0700 root directory, which CRIU's restore cannot search from inside the container's user
/// namespace ("Unable to open tty-info.img: Permission denied").
fn restore_docker_path(args: &[String], dir: &Path) -> String {
    let mut note = format!("restore <- {} (Docker's path)", dir.display());
    if let Err(e) = let_container_root_search(dir, &bundle_of(args)) {
        note.push_str(&format!(
            " (image dir not opened to the container's root: {e})"
        ));
    }
    add_lock(args, &mut note);
    note
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

/// A bundle's OCI `config.json`, typed (`oci-spec`) only in the parts the wrapper reads or changes.
/// The rest stays the JSON Docker wrote: a whole `oci_spec::runtime::Spec` drops fields it does not
/// know (a runtime-spec newer than the crate) and refuses values it does not know (e.g. a seccomp
/// action or architecture), so a full typed round trip could silently change what runc restores.
struct BundleConfig {
    path: PathBuf,
    raw: serde_json::Map<String, serde_json::Value>,
}

impl BundleConfig {
    fn read(bundle: &Path) -> std::io::Result<Self> {
        let path = bundle.join("config.json");
        let raw = serde_json::from_slice(&std::fs::read(&path)?)?;
        Ok(BundleConfig { path, raw })
    }

    /// `linux.gidMappings` (empty when there is none: no user namespace).
    fn gid_mappings(&self) -> std::io::Result<Vec<LinuxIdMapping>> {
        match self.raw.get("linux").and_then(|l| l.get("gidMappings")) {
            Some(v) => Ok(serde_json::from_value(v.clone())?),
            None => Ok(Vec::new()),
        }
    }

    fn hooks(&self) -> std::io::Result<Hooks> {
        match self.raw.get("hooks") {
            Some(v) => Ok(serde_json::from_value(v.clone())?),
            None => Ok(Hooks::default()),
        }
    }

    fn set_hooks(&mut self, hooks: &Hooks) -> std::io::Result<()> {
        self.raw
            .insert("hooks".into(), serde_json::to_value(hooks)?);
        Ok(())
    }

    /// Replace the file in one step (runc must never read half a config).
    fn write(&self) -> std::io::Result<()> {
        let tmp = self.path.with_file_name(".config.json.slurm-ckpt");
        std::fs::write(&tmp, serde_json::to_vec(&self.raw)?)?;
        std::fs::rename(&tmp, &self.path)
    }
}

/// The host gid of the container's root, from the bundle's OCI config (None: no user namespace).
fn container_root_gid(bundle: &Path) -> std::io::Result<Option<u32>> {
    Ok(BundleConfig::read(bundle)?
        .gid_mappings()?
        .iter()
        .find(|m| m.container_id() == 0)
        .map(|m| m.host_id()))
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
    let mut cfg = BundleConfig::read(bundle)?;
    let mut hooks = cfg.hooks()?;
    hooks
        .prestart_mut()
        .get_or_insert_with(Vec::new)
        .insert(0, netlock_hook_entry()?);
    cfg.set_hooks(&hooks)?;
    cfg.write()
}

/// The prestart hook that runs this binary in its hook mode.
fn netlock_hook_entry() -> std::io::Result<Hook> {
    let mut hook = Hook::default();
    hook.set_path(std::env::current_exe()?);
    hook.set_args(Some(vec!["slurm-ckpt-runc".into(), NETLOCK_HOOK.into()]));
    hook.set_timeout(Some(60));
    Ok(hook)
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
    fn config_edit_keeps_what_it_does_not_type() {
        let dir = tempfile::tempdir().unwrap();
        // Fields oci-spec does not know (a newer runtime-spec, a seccomp action it has no variant
        // for) must reach runc unchanged; other hook kinds and hook fields too.
        let cfg = serde_json::json!({
            "ociVersion": "1.2.0",
            "futureField": {"x": [1, 2]},
            "linux": {
                "gidMappings": [{"containerID": 1, "hostID": 2000, "size": 10},
                                {"containerID": 0, "hostID": 1000, "size": 1}],
                "seccomp": {"defaultAction": "SCMP_ACT_SOMETHING_NEW", "syscalls": []},
                "netDevices": {"eth1": {"name": "x"}}
            },
            "hooks": {
                "createRuntime": [{"path": "/c", "env": ["A=1"], "timeout": 5}],
                "prestart": [{"path": "/x", "args": ["setkey"]}]
            }
        });
        std::fs::write(dir.path().join("config.json"), cfg.to_string()).unwrap();
        assert_eq!(container_root_gid(dir.path()).unwrap(), Some(1000));
        add_netlock_hook(dir.path()).unwrap();
        let got: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap())
                .unwrap();
        let mut want = cfg.clone();
        let exe = std::env::current_exe().unwrap();
        want["hooks"]["prestart"]
            .as_array_mut()
            .unwrap()
            .insert(
                0,
                serde_json::json!({"path": exe, "args": ["slurm-ckpt-runc", NETLOCK_HOOK], "timeout": 60}),
            );
        assert_eq!(got, want);
        assert!(!dir.path().join(".config.json.slurm-ckpt").exists());
        // No user namespace: nothing to open up.
        std::fs::write(dir.path().join("config.json"), r#"{"linux":{}}"#).unwrap();
        assert_eq!(container_root_gid(dir.path()).unwrap(), None);
        // A hooks entry that is not what the spec says is refused, not overwritten.
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"hooks":{"prestart":{}}}"#,
        )
        .unwrap();
        assert!(add_netlock_hook(dir.path()).is_err());
    }

    /// A root-owned 0755 tree: `rt` (runtime dir, with `redirect/`), `ckpt` and `stage` (the
    /// allowed roots), `ctrd` (containerd's image dir), `elsewhere`.
    struct Tree {
        dir: tempfile::TempDir,
    }

    impl Tree {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            chmod(dir.path(), 0o755);
            for d in [
                "rt/redirect",
                "ckpt/u/1/g0001/rank-0",
                "stage",
                "ctrd",
                "elsewhere",
            ] {
                std::fs::create_dir_all(dir.path().join(d)).unwrap();
            }
            Tree { dir }
        }
        fn p(&self, rel: &str) -> PathBuf {
            self.dir.path().join(rel)
        }
        fn roots(&self) -> (PathBuf, PathBuf, PathBuf) {
            (self.p("rt"), self.p("ckpt"), self.p("stage"))
        }
        /// Write a root-owned 0644 file.
        fn file(&self, rel: &str, text: &str) -> PathBuf {
            let p = self.p(rel);
            std::fs::write(&p, text).unwrap();
            chmod(&p, 0o644);
            p
        }
        fn checkpoint_args(&self) -> Vec<String> {
            v(&format!(
                "--root /r checkpoint --image-path {} --work-path /w --leave-running c1",
                self.p("ctrd").display()
            ))
        }
        fn restore_args(&self) -> Vec<String> {
            v(&format!(
                "--root /r restore --image-path {} --bundle {} c1",
                self.p("ctrd").display(),
                self.p("elsewhere").display()
            ))
        }
    }

    fn chmod(p: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn run(t: &Tree, args: Vec<String>) -> Result<Rewritten, WrapperError> {
        let (rt, ckpt, stage) = t.roots();
        let roots = Roots {
            runtime_dir: &rt,
            allowed: vec![&ckpt, &stage],
        };
        rewrite(args, &roots)
    }

    fn os(args: &[String]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn checkpoint_without_redirect_is_dockers_path() {
        let t = Tree::new();
        let args = t.checkpoint_args();
        let out = run(&t, args.clone()).unwrap();
        assert_eq!(out.argv, os(&args));
        assert!(out.note.is_some_and(|n| n.contains("Docker's path")));
        assert_eq!(
            run(&t, v("--root /r start c1")).unwrap().argv,
            os(&v("--root /r start c1"))
        );
    }

    #[test]
    fn checkpoint_goes_to_the_resolved_destination_and_leaves_a_pointer() {
        let t = Tree::new();
        let dest = t.p("ckpt/u/1/g0001/rank-0");
        t.file("rt/redirect/c1", &format!("{}\n", dest.display()));
        let out = run(&t, t.checkpoint_args()).unwrap();
        let real = std::fs::canonicalize(&dest).unwrap();
        assert_eq!(out.argv[4], OsString::from(&real));
        let ptr = std::fs::read_to_string(redirect::pointer_file(&t.p("ctrd"))).unwrap();
        assert_eq!(Path::new(&ptr), real);
    }

    #[test]
    fn untrusted_redirects_are_refused() {
        let t = Tree::new();
        let dest = t.p("ckpt/u/1/g0001/rank-0");
        let f = t.file("rt/redirect/c1", &dest.display().to_string());
        // A parent anyone may write.
        chmod(&t.p("rt/redirect"), 0o777);
        assert!(matches!(
            run(&t, t.checkpoint_args()),
            Err(WrapperError::Redirect(TrustError::Writable { .. }))
        ));
        chmod(&t.p("rt/redirect"), 0o700);
        // A file another user owns.
        std::os::unix::fs::chown(&f, Some(1000), None).unwrap();
        assert!(matches!(
            run(&t, t.checkpoint_args()),
            Err(WrapperError::Redirect(TrustError::NotRootOwned { .. }))
        ));
        // A link in place of the file.
        std::fs::remove_file(&f).unwrap();
        let real = t.file("elsewhere/r", &dest.display().to_string());
        std::os::unix::fs::symlink(real, &f).unwrap();
        assert!(matches!(
            run(&t, t.checkpoint_args()),
            Err(WrapperError::Redirect(TrustError::Symlink { .. }))
        ));
        assert!(!redirect::pointer_file(&t.p("ctrd")).exists());
    }

    #[test]
    fn destinations_outside_the_roots_are_refused_after_resolving() {
        let t = Tree::new();
        let f = t.file("rt/redirect/c1", &t.p("elsewhere").display().to_string());
        assert!(matches!(
            run(&t, t.checkpoint_args()),
            Err(WrapperError::Outside { .. })
        ));
        // Inside as text, outside once the link is resolved.
        std::os::unix::fs::symlink(t.p("elsewhere"), t.p("ckpt/u/1/escape")).unwrap();
        std::fs::write(&f, t.p("ckpt/u/1/escape").display().to_string()).unwrap();
        assert!(matches!(
            run(&t, t.checkpoint_args()),
            Err(WrapperError::Outside { .. })
        ));
        for bad in ["relative/dir", "/x/../etc"] {
            std::fs::write(&f, bad).unwrap();
            assert!(matches!(
                run(&t, t.checkpoint_args()),
                Err(WrapperError::BadDestination { .. })
            ));
        }
        std::fs::write(&f, t.p("ckpt/missing").display().to_string()).unwrap();
        assert!(matches!(
            run(&t, t.checkpoint_args()),
            Err(WrapperError::Unresolvable { .. })
        ));
    }

    #[test]
    fn restore_follows_trusted_pointers_only() {
        let t = Tree::new();
        std::fs::write(t.p("elsewhere/config.json"), "{}").unwrap();
        // No pointer: Docker's own path, argv unchanged.
        let args = t.restore_args();
        let out = run(&t, args.clone()).unwrap();
        assert_eq!(out.argv, os(&args));
        assert!(out.note.is_some_and(|n| n.contains("Docker's path")));

        let dest = t.p("ckpt/u/1/g0001/rank-0");
        let ptr = t.file(
            &format!("ctrd/{}", redirect::POINTER),
            &dest.display().to_string(),
        );
        let out = run(&t, t.restore_args()).unwrap();
        assert_eq!(
            out.argv[4],
            OsString::from(std::fs::canonicalize(&dest).unwrap())
        );

        chmod(&ptr, 0o666);
        assert!(matches!(
            run(&t, t.restore_args()),
            Err(WrapperError::Pointer(TrustError::Writable { .. }))
        ));
        chmod(&ptr, 0o644);
        chmod(&t.p("ctrd"), 0o775);
        assert!(matches!(
            run(&t, t.restore_args()),
            Err(WrapperError::Pointer(TrustError::Writable { .. }))
        ));
        chmod(&t.p("ctrd"), 0o700);
        std::fs::write(&ptr, t.p("elsewhere").display().to_string()).unwrap();
        assert!(matches!(
            run(&t, t.restore_args()),
            Err(WrapperError::Outside { .. })
        ));
    }

    #[test]
    fn site_settings_must_parse_and_be_trusted() {
        let t = Tree::new();
        std::fs::create_dir(t.p("etc")).unwrap();
        let conf = t.file("etc/plugstack.conf", "include plugstack.conf.d/*.conf\n");
        std::fs::create_dir(t.p("etc/plugstack.conf.d")).unwrap();
        let inc = t.file(
            "etc/plugstack.conf.d/ckpt.conf",
            "required /usr/lib/spank_container_ckpt.so ckpt_root=/srv/ckpt\n",
        );
        assert_eq!(load_site(&conf).unwrap().ckpt_root, Path::new("/srv/ckpt"));
        // An included file another user may write.
        chmod(&inc, 0o666);
        let e = load_site(&conf).unwrap_err();
        assert!(e.to_string().contains("not trusted"), "{e}");
        chmod(&inc, 0o644);
        chmod(&t.p("etc/plugstack.conf.d"), 0o777);
        assert!(load_site(&conf).is_err());
        chmod(&t.p("etc/plugstack.conf.d"), 0o755);
        // A setting that does not parse.
        std::fs::write(&inc, "required /usr/lib/spank_container_ckpt.so bogus=1\n").unwrap();
        assert!(matches!(
            load_site(&conf),
            Err(ConfigError::UnknownKey { .. })
        ));
        assert!(matches!(
            load_site(&t.p("etc/missing.conf")),
            Err(ConfigError::Unreadable { .. })
        ));
    }

    #[test]
    fn the_real_runc_is_fixed_and_trusted() {
        let t = Tree::new();
        let missing = t.p("bin/runc");
        let missing = missing.to_str().unwrap();
        let e = real_runc(&[missing, "/nonexistent/runc"]).unwrap_err();
        assert!(matches!(e, WrapperError::NoRunc(_)));
        // Both paths and the fix are named.
        let msg = e.to_string();
        assert!(
            msg.contains(missing) && msg.contains("/nonexistent/runc"),
            "{msg}"
        );
        assert!(msg.contains("runc_path"), "{msg}");
        let runc = t.file("elsewhere/runc", "#!/bin/true\n");
        chmod(&runc, 0o755);
        let name = runc.to_str().unwrap();
        assert_eq!(
            real_runc(&[missing, name]).unwrap(),
            std::fs::canonicalize(&runc).unwrap()
        );
        chmod(&runc, 0o777);
        assert!(matches!(
            real_runc(&[name]),
            Err(WrapperError::Runc(TrustError::Writable { .. }))
        ));
        assert!(REAL_RUNC.iter().all(|p| Path::new(p).is_absolute()));
    }
}
