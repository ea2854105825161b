//! `slurm-ckpt node-setup`: make a node's configuration files what rank containers need, and check
//! them. Each step compares what is there with what is wanted and rewrites a file only when they
//! differ (atomically, keeping what it does not own), so a second run changes nothing. Nothing is
//! restarted: a step that changed a file a daemon reads at start says which daemon and why.
//!
//! The planners (`plan_*`) are pure: text in, new text (or None) out. Paths all come from
//! `NodePaths`, so a temp tree (`--root`) drives the whole thing in tests.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::node_check::{self as nc, Finding};
use crate::{Error, Result};

/// The files node-setup reads and writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePaths {
    /// `/` for the running system, else a tree prepared for a node (diskless image, tests).
    pub root: PathBuf,
    pub daemon_json: PathBuf,
    pub subuid: PathBuf,
    pub subgid: PathBuf,
    pub passwd: PathBuf,
    pub criu_conf: PathBuf,
    pub plugstack: PathBuf,
}

impl NodePaths {
    /// The standard locations under `root`.
    pub fn under(root: &Path) -> Self {
        let p = |rel: &str| root.join(rel);
        NodePaths {
            root: root.to_path_buf(),
            daemon_json: p("etc/docker/daemon.json"),
            subuid: p("etc/subuid"),
            subgid: p("etc/subgid"),
            passwd: p("etc/passwd"),
            criu_conf: p("etc/criu/runc.conf"),
            plugstack: p("etc/slurm/plugstack.conf"),
        }
    }

    /// Whether these are the running system's files (live probes then make sense).
    pub fn is_live(&self) -> bool {
        self.root == Path::new("/")
    }

    /// The package's plugstack.conf.d snippet beside `plugstack`.
    pub fn snippet(&self) -> PathBuf {
        self.plugstack
            .parent()
            .unwrap_or(Path::new("/"))
            .join(SNIPPET_DIR)
            .join("container_ckpt.conf")
    }
}

/// Relative to plugstack.conf: Slurm resolves a relative include from the including file's
/// directory, so the same line works in a node image prepared under `--root`.
pub const SNIPPET_DIR: &str = "plugstack.conf.d";
pub const INCLUDE_LINE: &str = "include plugstack.conf.d/*.conf";

/// What the node should have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// The user dockerd remaps container ids to (`userns-remap`).
    pub remap_user: String,
    /// The runtime name the plugin asks for (site setting `runtime`; empty: none registered).
    pub runtime: String,
    /// The runtime wrapper's path.
    pub runtime_path: PathBuf,
    /// Job ids 1..=max_id map to themselves.
    pub max_id: u64,
    /// CRIU's ghost-limit written when runc.conf lacks one.
    pub ghost_limit: String,
}

impl Default for Wanted {
    fn default() -> Self {
        Wanted {
            remap_user: "slurmckpt".into(),
            runtime: "slurm-ckpt".into(),
            runtime_path: "/usr/bin/slurm-ckpt-runc".into(),
            max_id: *nc::IDENTITY_IDS.end(),
            ghost_limit: "1G".into(),
        }
    }
}

/// The node's accounts: looked up and created through the system (or a fake in tests).
pub trait Accounts {
    fn exists(&self, user: &str) -> bool;
    fn create_system_user(&mut self, user: &str) -> Result<()>;
}

/// What a step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Unchanged,
    Changed,
    /// Not done by node-setup (needs a live daemon or the admin's choice): `detail` says what to do.
    Manual,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    pub item: &'static str,
    pub outcome: Outcome,
    pub detail: String,
    /// The daemon that reads this at start and must be restarted for the change to apply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart: Option<&'static str>,
}

fn read_opt(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Replace `path` by `text` atomically (a reader sees the old file or the new one, never a part),
/// keeping an existing file's permissions; creates missing parent directories (0755).
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mode = std::fs::metadata(path).ok().map(|m| m.permissions());
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?;
    let perms = mode.unwrap_or_else(|| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::Permissions::from_mode(0o644)
    });
    tmp.as_file()
        .set_permissions(perms)
        .map_err(|e| Error::io(tmp.path(), e))?;
    tmp.write_all(text.as_bytes())
        .map_err(|e| Error::io(tmp.path(), e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io(tmp.path(), e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// The remap user `daemon.json`'s text configures, if any.
pub fn configured_remap_user(text: Option<&str>) -> Option<String> {
    let d = nc::DaemonJson::parse(text?).ok()?;
    d.userns_remap.map(|u| nc::remap_user(&u).to_string())
}

/// daemon.json with `experimental`, `live-restore`, `userns-remap` and the runtime registration set, every other
/// key kept; None when it already has them. Returns the keys changed too.
pub fn plan_daemon_json(
    path: &Path,
    text: Option<&str>,
    w: &Wanted,
) -> Result<Option<(String, Vec<String>)>> {
    let shape = |why: &'static str| Error::DaemonJsonShape {
        path: path.to_path_buf(),
        why,
    };
    let mut obj: Map<String, Value> = match text {
        None => Map::new(),
        Some(t) if t.trim().is_empty() => Map::new(),
        Some(t) => match serde_json::from_str(t).map_err(|why| Error::BadJson {
            path: path.to_path_buf(),
            what: "daemon.json",
            why,
        })? {
            Value::Object(o) => o,
            _ => return Err(shape("top level is not an object")),
        },
    };
    let mut changed = Vec::new();
    // experimental: Docker's checkpoint API; live-restore: a dockerd restart (an upgrade) must
    // not kill the ranks of running jobs.
    for key in ["experimental", "live-restore"] {
        if obj.get(key) != Some(&Value::Bool(true)) {
            obj.insert(key.into(), Value::Bool(true));
            changed.push(key.to_string());
        }
    }
    match obj.get("userns-remap").and_then(Value::as_str) {
        Some(u) if nc::remap_user(u) == w.remap_user => {}
        Some(u) if !u.is_empty() => {
            return Err(Error::RemapUserConflict {
                path: path.to_path_buf(),
                configured: u.to_string(),
                wanted: w.remap_user.clone(),
            })
        }
        _ => {
            obj.insert("userns-remap".into(), Value::String(w.remap_user.clone()));
            changed.push("userns-remap".to_string());
        }
    }
    if !w.runtime.is_empty() {
        let want = w.runtime_path.display().to_string();
        let runtimes = obj
            .entry("runtimes")
            .or_insert_with(|| Value::Object(Map::new()));
        if !runtimes.is_object() {
            return Err(shape("\"runtimes\" is not an object"));
        }
        if let Value::Object(rts) = runtimes {
            let rt = rts
                .entry(w.runtime.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if !rt.is_object() {
                *rt = Value::Object(Map::new());
            }
            if let Value::Object(rt) = rt {
                // Other fields of the entry (runtimeArgs) are the site's.
                if rt.get("path").and_then(Value::as_str) != Some(want.as_str()) {
                    rt.insert("path".into(), Value::String(want));
                    changed.push(format!("runtimes.{}", w.runtime));
                }
            }
        }
    }
    if changed.is_empty() {
        return Ok(None);
    }
    let mut out =
        serde_json::to_string_pretty(&Value::Object(obj)).map_err(|why| Error::EncodeJson {
            path: path.to_path_buf(),
            what: "daemon.json",
            why,
        })?;
    out.push('\n');
    Ok(Some((out, changed)))
}

/// The host id for the container root: the default unless ids up to `max_id` need it, and past
/// every other user's range in `texts` (a root id where another user's range starts would make
/// the remap user ambiguous: node_check::remap_user_with_root).
pub fn pick_root_id(texts: &[&str], user: &str, max_id: u64) -> Result<u64> {
    let mut root = nc::DEFAULT_ROOT_ID.max(max_id + 1);
    let others: Vec<(u64, u64)> = texts
        .iter()
        .flat_map(|t| t.lines())
        .filter_map(|l| {
            let mut f = l.trim().split(':');
            let (name, start, count) = (f.next()?, f.next()?, f.next()?);
            (name != user).then_some((start.parse().ok()?, count.parse().ok()?))
        })
        .collect();
    // Each pass moves past one range: at most as many passes as ranges.
    for _ in 0..=others.len() {
        match others.iter().find(|&&(s, c)| s <= root && root < s + c) {
            Some(&(s, c)) => root = s + c,
            None => break,
        }
    }
    if root >= u64::from(u32::MAX) || max_id == 0 {
        return Err(Error::IdRangeTooWide { max_id });
    }
    Ok(root)
}

/// /etc/subuid or /etc/subgid with `user`'s ranges replaced by the product's map (root → `root`,
/// 1..=max_id → themselves) unless they already satisfy it; every other line kept. dockerd
/// assigns ids in file order, so the user's lines go last, root's first.
pub fn plan_subid(text: Option<&str>, user: &str, root: u64, max_id: u64) -> Option<String> {
    let text = text.unwrap_or("");
    if nc::check_id_map_upto(&nc::id_ranges(text, user), max_id).is_ok() {
        return None;
    }
    let prefix = format!("{user}:");
    let mut out: String = text
        .lines()
        .filter(|l| !l.trim().starts_with(&prefix))
        .map(|l| format!("{l}\n"))
        .collect();
    out.push_str(&nc::id_map_lines_upto(user, root, max_id));
    Some(out)
}

/// CRIU's runc.conf with what it lacks appended (an existing ghost-limit is the site's).
pub fn plan_criu_conf(text: Option<&str>, ghost_limit: &str) -> Option<String> {
    let text = text.unwrap_or("");
    let missing = nc::criu_conf_missing(text);
    if missing.is_empty() {
        return None;
    }
    let mut out = text.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    for m in missing {
        match m {
            "tcp-established" => out.push_str("tcp-established\n"),
            _ => out.push_str(&format!("ghost-limit {ghost_limit}\n")),
        }
    }
    Some(out)
}

/// plugstack.conf with the include line appended, unless it already reads the package's
/// snippet or loads the plugin itself.
pub fn plan_plugstack(paths: &NodePaths) -> Result<Option<String>> {
    let text = read_opt(&paths.plugstack)?;
    if let Some(t) = &text {
        let mut read = |p: &Path| slurm_ckpt_site::plugstack::read_file(p);
        let found = slurm_ckpt_site::plugstack::plugin_args(&paths.plugstack, &mut read)?;
        if found.args.is_some() || includes(paths, t) {
            return Ok(None);
        }
    }
    let mut out = text.unwrap_or_default();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(INCLUDE_LINE);
    out.push('\n');
    Ok(Some(out))
}

/// Whether plugstack.conf's `text` has an include line whose pattern names the package's snippet
/// (whether or not the snippet exists yet: a pattern matching nothing is fine for Slurm).
fn includes(paths: &NodePaths, text: &str) -> bool {
    let dir = paths.plugstack.parent().unwrap_or(Path::new("/"));
    let snippet = paths.snippet();
    text.lines().any(|raw| {
        let line = raw.split('#').next().unwrap_or("").trim();
        let Some(pattern) = line.strip_prefix("include") else {
            return false;
        };
        let pattern = pattern.trim();
        let full = if pattern.starts_with('/') {
            // An absolute pattern names the node's own path: under `root` in a node image.
            paths.root.join(pattern.trim_start_matches('/'))
        } else {
            dir.join(pattern)
        };
        glob::Pattern::new(&full.to_string_lossy())
            .map(|p| p.matches_path(&snippet))
            .unwrap_or(false)
    })
}

/// The plugstack finding, and the site settings it names (defaults when the plugin is not loaded).
pub fn plugstack_finding(path: &Path) -> (Finding, slurm_ckpt_site::SiteConfig) {
    use slurm_ckpt_site::{plugstack, SiteConfig, PLUGIN_FILE};
    match plugstack::plugin_args(path, &mut plugstack::read_file) {
        Ok(p) => match p.args.map(|a| SiteConfig::parse(&a)) {
            Some(Ok(site)) => (
                Finding::ok("plugstack", format!("plugin enabled in {}", path.display())),
                site,
            ),
            Some(Err(e)) => (
                Finding::missing("plugstack", format!("{}: {e}", path.display())),
                SiteConfig::default(),
            ),
            None => (
                Finding::missing(
                    "plugstack",
                    format!(
                        "no line loads {PLUGIN_FILE} from {} (node-setup adds '{INCLUDE_LINE}'; then uncomment the line in {SNIPPET_DIR}/container_ckpt.conf); checking with default settings",
                        path.display()
                    ),
                ),
                SiteConfig::default(),
            ),
        },
        Err(e) => (
            Finding::missing("plugstack", e.to_string()),
            SiteConfig::default(),
        ),
    }
}

/// The checks of the node's files: what a node image under `paths.root` lacks. (On the running
/// system the CLI asks dockerd itself for the daemon's options instead of daemon.json.)
pub fn file_findings(
    paths: &NodePaths,
    w: &Wanted,
    accounts: &dyn Accounts,
    with_daemon_json: bool,
) -> Vec<Finding> {
    let mut out = Vec::new();
    if with_daemon_json {
        out.extend(daemon_json_findings(paths, w));
    }
    out.push(if accounts.exists(&w.remap_user) {
        Finding::ok("remap-user", format!("user {} exists", w.remap_user))
    } else {
        Finding::missing(
            "remap-user",
            format!(
                "no user {0}: useradd --system --no-create-home --shell /usr/sbin/nologin {0}",
                w.remap_user
            ),
        )
    });
    for (item, file) in [("subuid", &paths.subuid), ("subgid", &paths.subgid)] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let user = &w.remap_user;
        out.push(
            match nc::check_id_map_upto(&nc::id_ranges(&text, user), w.max_id) {
                Ok(()) => Finding::ok(
                    item,
                    format!(
                        "{}: {user} maps root away, ids 1..{} to themselves",
                        file.display(),
                        w.max_id
                    ),
                ),
                Err(why) => Finding::missing(
                    item,
                    format!(
                        "{}: {why}; {user}'s lines must be, in this order: {}",
                        file.display(),
                        nc::id_map_lines_upto(
                            user,
                            nc::DEFAULT_ROOT_ID.max(w.max_id + 1),
                            w.max_id
                        )
                        .trim_end()
                        .replace('\n', " then ")
                    ),
                ),
            },
        );
    }
    let conf = &paths.criu_conf;
    out.push(match std::fs::read_to_string(conf) {
        Ok(t) => match nc::criu_conf_missing(&t) {
            m if m.is_empty() => Finding::ok(
                "criu-conf",
                format!("{} has tcp-established and ghost-limit", conf.display()),
            ),
            m => Finding::missing(
                "criu-conf",
                format!("{} lacks: {}", conf.display(), m.join(", ")),
            ),
        },
        Err(_) => Finding::missing(
            "criu-conf",
            format!(
                "no {}: write 'tcp-established' and 'ghost-limit 1G'",
                conf.display()
            ),
        ),
    });
    out
}

/// daemon.json's keys as findings named like the live daemon's (experimental, userns-remap,
/// runtime), for a node image whose daemon is not running.
fn daemon_json_findings(paths: &NodePaths, w: &Wanted) -> Vec<Finding> {
    let path = &paths.daemon_json;
    let d = match read_opt(path) {
        Ok(Some(t)) => match nc::DaemonJson::parse(&t) {
            Ok(d) => d,
            Err(e) => {
                return vec![Finding::missing(
                    "daemon.json",
                    format!("{}: {e}", path.display()),
                )]
            }
        },
        Ok(None) => nc::DaemonJson::default(),
        Err(e) => return vec![Finding::missing("daemon.json", e.to_string())],
    };
    let p = path.display();
    let mut out = vec![
        if d.experimental {
            Finding::ok("experimental", format!("{p}: experimental"))
        } else {
            Finding::missing("experimental", format!("{p}: no \"experimental\": true"))
        },
        if d.live_restore {
            Finding::ok("live-restore", format!("{p}: live-restore"))
        } else {
            Finding::missing(
                "live-restore",
                format!(
                    "{p}: no \"live-restore\": true (a dockerd restart would kill running jobs)"
                ),
            )
        },
        match d.userns_remap.as_deref() {
            Some(u) if nc::remap_user(u) == w.remap_user => {
                Finding::ok("userns-remap", format!("{p}: userns-remap {u}"))
            }
            Some(u) => Finding::missing(
                "userns-remap",
                format!("{p}: userns-remap is {u}, not {}", w.remap_user),
            ),
            None => Finding::missing("userns-remap", format!("{p}: no \"userns-remap\"")),
        },
    ];
    if !w.runtime.is_empty() {
        let want = w.runtime_path.display().to_string();
        out.push(match d.runtimes.iter().find(|(n, _)| *n == w.runtime) {
            Some((_, path)) if *path == want => {
                Finding::ok("runtime", format!("{p}: {} = {want}", w.runtime))
            }
            Some((_, other)) => Finding::missing(
                "runtime",
                format!("{p}: runtime {} is {other}, not {want}", w.runtime),
            ),
            None => Finding::missing("runtime", format!("{p}: no runtime {}", w.runtime)),
        });
    }
    out
}

fn step(item: &'static str, changed: bool, detail: String, restart: &'static str) -> Step {
    Step {
        item,
        outcome: if changed {
            Outcome::Changed
        } else {
            Outcome::Unchanged
        },
        detail,
        restart: changed.then_some(restart),
    }
}

/// Bring the node's files to what `w` wants. Stops at the first step that fails (the steps
/// before it are done and stay done: running again continues).
pub fn apply(paths: &NodePaths, w: &Wanted, accounts: &mut dyn Accounts) -> Result<Vec<Step>> {
    let mut steps = Vec::new();

    let dj = read_opt(&paths.daemon_json)?;
    let djp = paths.daemon_json.display();
    match plan_daemon_json(&paths.daemon_json, dj.as_deref(), w)? {
        Some((text, keys)) => {
            write_atomic(&paths.daemon_json, &text)?;
            tracing::info!(path = %djp, keys = ?keys, "node-setup: daemon.json updated");
            steps.push(step(
                "daemon.json",
                true,
                format!("{djp}: set {}", keys.join(", ")),
                "dockerd (reads daemon.json at start; a key also given as a dockerd flag makes it refuse to start)",
            ));
        }
        None => steps.push(step(
            "daemon.json",
            false,
            format!(
                "{djp}: experimental, userns-remap {}, runtime {}",
                w.remap_user, w.runtime
            ),
            "",
        )),
    }

    // Before the id ranges: useradd may add or re-sort lines of /etc/subuid and /etc/subgid.
    if accounts.exists(&w.remap_user) {
        steps.push(step(
            "remap-user",
            false,
            format!("user {} exists", w.remap_user),
            "",
        ));
    } else {
        accounts.create_system_user(&w.remap_user)?;
        tracing::info!(user = %w.remap_user, "node-setup: remap user created");
        steps.push(step(
            "remap-user",
            true,
            format!("created system user {}", w.remap_user),
            "dockerd (looks the remap user up at start)",
        ));
    }

    let uid = read_opt(&paths.subuid)?;
    let gid = read_opt(&paths.subgid)?;
    let texts = [uid.as_deref().unwrap_or(""), gid.as_deref().unwrap_or("")];
    let root = pick_root_id(&texts, &w.remap_user, w.max_id)?;
    for (item, path, text) in [
        ("subuid", &paths.subuid, &uid),
        ("subgid", &paths.subgid, &gid),
    ] {
        match plan_subid(text.as_deref(), &w.remap_user, root, w.max_id) {
            Some(new) => {
                write_atomic(path, &new)?;
                tracing::info!(path = %path.display(), root, max_id = w.max_id, "node-setup: id ranges written");
                steps.push(step(
                    item,
                    true,
                    format!(
                        "{}: {} maps container root to {root}, ids 1..{} to themselves",
                        path.display(),
                        w.remap_user,
                        w.max_id
                    ),
                    "dockerd (reads the ranges at start; images are re-chowned under a new data root)",
                ));
            }
            None => steps.push(step(
                item,
                false,
                format!(
                    "{}: {} already maps ids 1..{} to themselves",
                    path.display(),
                    w.remap_user,
                    w.max_id
                ),
                "",
            )),
        }
    }

    let criu = read_opt(&paths.criu_conf)?;
    match plan_criu_conf(criu.as_deref(), &w.ghost_limit) {
        Some(new) => {
            write_atomic(&paths.criu_conf, &new)?;
            tracing::info!(path = %paths.criu_conf.display(), "node-setup: CRIU config written");
            steps.push(Step {
                item: "criu-conf",
                outcome: Outcome::Changed,
                detail: format!(
                    "{}: tcp-established, ghost-limit",
                    paths.criu_conf.display()
                ),
                // runc runs CRIU per checkpoint and CRIU reads the file each time.
                restart: None,
            });
        }
        None => steps.push(step(
            "criu-conf",
            false,
            format!(
                "{} has tcp-established and ghost-limit",
                paths.criu_conf.display()
            ),
            "",
        )),
    }

    match plan_plugstack(paths)? {
        Some(new) => {
            write_atomic(&paths.plugstack, &new)?;
            tracing::info!(path = %paths.plugstack.display(), "node-setup: plugstack include added");
            steps.push(step(
                "plugstack",
                true,
                format!("{}: added '{INCLUDE_LINE}'", paths.plugstack.display()),
                "slurmd (reads plugstack.conf at start; srun/sbatch read it on each run)",
            ));
        }
        None => steps.push(step(
            "plugstack",
            false,
            format!("{} reads the package's snippet", paths.plugstack.display()),
            "",
        )),
    }
    let (enabled, _) = plugstack_finding(&paths.plugstack);
    if !enabled.ok {
        steps.push(Step {
            item: "plugin",
            outcome: Outcome::Manual,
            detail: format!(
                "the plugin line in {} is the admin's to enable: uncomment it and set ckpt_root and image_allowlist (container_ckpt(8)), then restart slurmd",
                paths.snippet().display()
            ),
            restart: None,
        });
    }
    Ok(steps)
}

/// The system's accounts: NSS for lookups on the running system, `<root>/etc/passwd` for a node
/// image; `useradd` (with `--root` for an image) to create the remap user.
pub struct SystemAccounts {
    pub paths: NodePaths,
}

impl Accounts for SystemAccounts {
    fn exists(&self, user: &str) -> bool {
        if self.paths.is_live() {
            return matches!(nix::unistd::User::from_name(user), Ok(Some(_)));
        }
        std::fs::read_to_string(&self.paths.passwd)
            .map(|t| passwd_has(&t, user))
            .unwrap_or(false)
    }

    fn create_system_user(&mut self, user: &str) -> Result<()> {
        let mut cmd = std::process::Command::new("useradd");
        if !self.paths.is_live() {
            cmd.arg("--root").arg(&self.paths.root);
        }
        cmd.args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            user,
        ]);
        let out = cmd.output().map_err(|e| Error::UserAdd {
            user: user.into(),
            why: format!("cannot run useradd: {e}"),
        })?;
        if out.status.success() {
            Ok(())
        } else {
            Err(Error::UserAdd {
                user: user.into(),
                why: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }
}

/// Whether a passwd(5) text has `user`.
pub fn passwd_has(text: &str, user: &str) -> bool {
    text.lines().any(|l| l.split(':').next() == Some(user))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// Accounts in the tree's passwd file.
    struct TreeAccounts(PathBuf);
    impl Accounts for TreeAccounts {
        fn exists(&self, user: &str) -> bool {
            passwd_has(&fs::read_to_string(&self.0).unwrap_or_default(), user)
        }
        fn create_system_user(&mut self, user: &str) -> Result<()> {
            let mut t = fs::read_to_string(&self.0).unwrap_or_default();
            t.push_str(&format!(
                "{user}:x:999:999::/nonexistent:/usr/sbin/nologin\n"
            ));
            fs::write(&self.0, t).unwrap();
            Ok(())
        }
    }

    /// A node half set up: daemon.json with a site key and experimental only, a user with
    /// useradd's own range at 100000, no remap user, a runc.conf with only tcp-established, a
    /// plugstack.conf without the include but an enabled snippet.
    fn half_configured(root: &Path) -> NodePaths {
        let p = NodePaths::under(root);
        fs::create_dir_all(root.join("etc/docker")).unwrap();
        fs::create_dir_all(root.join("etc/criu")).unwrap();
        fs::create_dir_all(root.join("etc/slurm/plugstack.conf.d")).unwrap();
        fs::write(
            &p.daemon_json,
            "{\"experimental\": true, \"log-driver\": \"journald\"}\n",
        )
        .unwrap();
        fs::write(
            &p.passwd,
            "root:x:0:0::/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/bash\n",
        )
        .unwrap();
        fs::write(&p.subuid, "alice:100000:65536\n").unwrap();
        fs::write(&p.subgid, "alice:100000:65536\n").unwrap();
        fs::write(&p.criu_conf, "tcp-established\n").unwrap();
        fs::write(&p.plugstack, "# site plugins\n").unwrap();
        fs::write(
            p.snippet(),
            "required /usr/lib/x86_64-linux-gnu/slurm-wlm/spank_container_ckpt.so ckpt_root=/shared/ckpt\n",
        )
        .unwrap();
        p
    }

    fn missing(f: &[Finding]) -> Vec<&'static str> {
        f.iter().filter(|f| !f.ok).map(|f| f.item).collect()
    }

    fn all_files(p: &NodePaths) -> Vec<Vec<u8>> {
        [
            &p.daemon_json,
            &p.subuid,
            &p.subgid,
            &p.passwd,
            &p.criu_conf,
            &p.plugstack,
        ]
        .iter()
        .map(|f| fs::read(f).unwrap())
        .collect()
    }

    #[test]
    fn half_configured_node_check_names_exactly_what_is_missing() {
        let t = tempfile::tempdir().unwrap();
        let p = half_configured(t.path());
        let w = Wanted::default();
        let acc = TreeAccounts(p.passwd.clone());
        let f = file_findings(&p, &w, &acc, true);
        assert_eq!(
            missing(&f),
            vec![
                "live-restore",
                "userns-remap",
                "runtime",
                "remap-user",
                "subuid",
                "subgid",
                "criu-conf"
            ]
        );
        let (pf, _) = plugstack_finding(&p.plugstack);
        assert!(!pf.ok, "{pf:?}");
    }

    #[test]
    fn setup_then_check_passes_and_second_run_changes_nothing() {
        let t = tempfile::tempdir().unwrap();
        let p = half_configured(t.path());
        let w = Wanted::default();
        let mut acc = TreeAccounts(p.passwd.clone());
        let steps = apply(&p, &w, &mut acc).unwrap();
        let changed: Vec<_> = steps
            .iter()
            .filter(|s| s.outcome == Outcome::Changed)
            .map(|s| s.item)
            .collect();
        assert_eq!(
            changed,
            vec![
                "daemon.json",
                "remap-user",
                "subuid",
                "subgid",
                "criu-conf",
                "plugstack"
            ]
        );
        assert!(steps.iter().all(|s| s.outcome != Outcome::Manual));
        assert!(missing(&file_findings(&p, &w, &acc, true)).is_empty());
        assert!(plugstack_finding(&p.plugstack).0.ok);
        // The site's key is kept; alice's range is kept and the remap root is moved past it.
        let dj: Value = serde_json::from_str(&fs::read_to_string(&p.daemon_json).unwrap()).unwrap();
        assert_eq!(dj["log-driver"], "journald");
        assert_eq!(
            dj["runtimes"]["slurm-ckpt"]["path"],
            "/usr/bin/slurm-ckpt-runc"
        );
        assert_eq!(
            fs::read_to_string(&p.subuid).unwrap(),
            "alice:100000:65536\nslurmckpt:165536:1\nslurmckpt:1:65535\n"
        );
        assert_eq!(
            fs::read_to_string(&p.criu_conf).unwrap(),
            "tcp-established\nghost-limit 1G\n"
        );

        let before = all_files(&p);
        let again = apply(&p, &w, &mut acc).unwrap();
        assert!(
            again.iter().all(|s| s.outcome == Outcome::Unchanged),
            "{again:?}"
        );
        assert!(again.iter().all(|s| s.restart.is_none()));
        assert_eq!(all_files(&p), before, "second run rewrote a file");
    }

    #[test]
    fn empty_tree_is_set_up_and_plugin_left_to_the_admin() {
        let t = tempfile::tempdir().unwrap();
        let p = NodePaths::under(t.path());
        let mut acc = TreeAccounts(p.passwd.clone());
        let w = Wanted {
            max_id: 2_000_000,
            ..Wanted::default()
        };
        let steps = apply(&p, &w, &mut acc).unwrap();
        assert_eq!(steps.last().map(|s| s.outcome), Some(Outcome::Manual));
        assert_eq!(
            fs::read_to_string(&p.subgid).unwrap(),
            "slurmckpt:2000001:1\nslurmckpt:1:2000000\n"
        );
        assert_eq!(
            fs::read_to_string(&p.plugstack).unwrap(),
            format!("{INCLUDE_LINE}\n")
        );
        // No snippet yet (package not installed in the image): the include is still enough.
        let before = all_files(&p);
        let again = apply(&p, &w, &mut acc).unwrap();
        assert!(
            again.iter().all(|s| s.outcome != Outcome::Changed),
            "{again:?}"
        );
        assert_eq!(all_files(&p), before);
        // Debian's own absolute include counts too.
        fs::write(&p.plugstack, "include /etc/slurm/plugstack.conf.d/*.conf\n").unwrap();
        assert!(plan_plugstack(&p).unwrap().is_none());
        fs::write(
            &p.plugstack,
            "#include /etc/slurm/plugstack.conf.d/*.conf\n",
        )
        .unwrap();
        assert!(plan_plugstack(&p).unwrap().is_some());
        assert!(missing(&file_findings(&p, &w, &acc, true)).is_empty());
        // A map for 65535 ids does not cover a site whose ids go to 2000000.
        let narrow = "slurmckpt:100000:1\nslurmckpt:1:65535\n";
        assert!(plan_subid(Some(narrow), "slurmckpt", 2_000_001, 2_000_000).is_some());
        assert!(plan_subid(Some(narrow), "slurmckpt", 100000, 65535).is_none());
    }

    #[test]
    fn daemon_json_plans() {
        let w = Wanted::default();
        let p = Path::new("/d.json");
        let done = r#"{"experimental": true, "live-restore": true, "userns-remap": "slurmckpt:slurmckpt",
            "runtimes": {"slurm-ckpt": {"path": "/usr/bin/slurm-ckpt-runc", "runtimeArgs": ["x"]}}}"#;
        assert!(plan_daemon_json(p, Some(done), &w).unwrap().is_none());
        // A moved wrapper: only the path changes, runtimeArgs stay.
        let moved = done.replace("/usr/bin/", "/usr/local/bin/");
        let (text, keys) = plan_daemon_json(p, Some(&moved), &w).unwrap().unwrap();
        assert_eq!(keys, vec!["runtimes.slurm-ckpt"]);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["runtimes"]["slurm-ckpt"]["runtimeArgs"][0], "x");
        // Another remap user is the admin's to change.
        let other = r#"{"userns-remap": "default"}"#;
        assert!(matches!(
            plan_daemon_json(p, Some(other), &w),
            Err(Error::RemapUserConflict { .. })
        ));
        assert!(matches!(
            plan_daemon_json(p, Some("[1]"), &w),
            Err(Error::DaemonJsonShape { .. })
        ));
        assert!(matches!(
            plan_daemon_json(p, Some("{"), &w),
            Err(Error::BadJson { .. })
        ));
        let (_, keys) = plan_daemon_json(p, None, &w).unwrap().unwrap();
        assert_eq!(
            keys,
            vec![
                "experimental",
                "live-restore",
                "userns-remap",
                "runtimes.slurm-ckpt"
            ]
        );
    }

    #[test]
    fn root_ids_and_conf_plans() {
        assert_eq!(pick_root_id(&[""], "u", 65535).unwrap(), 100000);
        assert_eq!(pick_root_id(&["u:100000:1\n"], "u", 65535).unwrap(), 100000);
        assert_eq!(
            pick_root_id(&["a:100000:65536\n", "b:165536:10\n"], "u", 65535).unwrap(),
            165546
        );
        assert!(pick_root_id(&[""], "u", u64::from(u32::MAX)).is_err());
        assert_eq!(
            plan_criu_conf(Some("ghost-limit 4G"), "1G").unwrap(),
            "ghost-limit 4G\ntcp-established\n"
        );
        assert!(plan_criu_conf(Some("tcp-established\nghost-limit 4G\n"), "1G").is_none());
        // Other users' lines and comments survive; the user's old lines are replaced.
        let old = "# c\nslurmckpt:1:1000\nbob:200000:65536\n";
        assert_eq!(
            plan_subid(Some(old), "slurmckpt", 100000, 65535).unwrap(),
            "# c\nbob:200000:65536\nslurmckpt:100000:1\nslurmckpt:1:65535\n"
        );
    }

    #[test]
    fn atomic_write_keeps_mode() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("a/b.conf");
        write_atomic(&f, "x\n").unwrap();
        assert_eq!(
            fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o644
        );
        fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
        write_atomic(&f, "y\n").unwrap();
        assert_eq!(fs::read_to_string(&f).unwrap(), "y\n");
        assert_eq!(
            fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(fs::read_dir(t.path().join("a")).unwrap().count(), 1);
    }
}
