//! `slurm-ckpt node-setup [--check]`: set up this node for rank containers (daemon.json, the
//! remap user and its id ranges, CRIU's config, the plugstack.conf include), or with `--check`
//! report what it lacks without changing anything (also dockerd's live options, CRIU, the
//! container network, iptables/nsenter). The steps live in `slurm_ckpt::node_setup`; this file
//! adds the live probes and the output.

use std::path::{Path, PathBuf};

use bollard::Docker;
use slurm_ckpt::node_check::{self as nc, DaemonJson, Finding};
use slurm_ckpt::node_setup::{self as ns, NodePaths, Outcome, SystemAccounts, Wanted};
use slurm_ckpt::site::SiteConfig;

#[derive(clap::Args)]
pub struct Args {
    /// Only report what is missing; change nothing (exit 1 when something is).
    #[arg(long)]
    check: bool,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
    /// The userns-remap user (default: daemon.json's "userns-remap", else slurmckpt).
    #[arg(long)]
    remap_user: Option<String>,
    /// Highest job uid/gid at the site: container ids 1..N map to the same host ids (jobs run as
    /// their real ids); the container root gets a host id above N.
    #[arg(long, value_name = "N", default_value_t = *nc::IDENTITY_IDS.end())]
    uid_range: u64,
    /// The runtime wrapper registered with dockerd.
    #[arg(long, default_value = "/usr/bin/slurm-ckpt-runc")]
    runtime_path: PathBuf,
    /// CRIU's ghost-limit written when /etc/criu/runc.conf has none.
    #[arg(long, default_value = "1G")]
    ghost_limit: String,
    /// Work on a node image under DIR instead of this system: every path below is taken under
    /// DIR, daemon.json is checked instead of the running dockerd, and nothing is probed live.
    #[arg(long, value_name = "DIR", default_value = "/")]
    root: PathBuf,
    /// Default: ROOT/etc/docker/daemon.json.
    #[arg(long)]
    daemon_json: Option<PathBuf>,
    /// Default: ROOT/etc/slurm/plugstack.conf.
    #[arg(long)]
    plugstack: Option<PathBuf>,
    /// Default: ROOT/etc/subuid.
    #[arg(long)]
    subuid: Option<PathBuf>,
    /// Default: ROOT/etc/subgid.
    #[arg(long)]
    subgid: Option<PathBuf>,
    /// Default: ROOT/etc/criu/runc.conf.
    #[arg(long)]
    criu_conf: Option<PathBuf>,
}

impl Args {
    fn paths(&self) -> NodePaths {
        let mut p = NodePaths::under(&self.root);
        let set = |slot: &mut PathBuf, o: &Option<PathBuf>| {
            if let Some(v) = o {
                *slot = v.clone();
            }
        };
        set(&mut p.daemon_json, &self.daemon_json);
        set(&mut p.plugstack, &self.plugstack);
        set(&mut p.subuid, &self.subuid);
        set(&mut p.subgid, &self.subgid);
        set(&mut p.criu_conf, &self.criu_conf);
        p
    }

    fn wanted(&self, paths: &NodePaths, site: &SiteConfig) -> Wanted {
        let configured = std::fs::read_to_string(&paths.daemon_json).ok();
        let configured = ns::configured_remap_user(configured.as_deref());
        Wanted {
            remap_user: self
                .remap_user
                .clone()
                .or(configured)
                .unwrap_or_else(|| Wanted::default().remap_user),
            runtime: site.runtime.clone(),
            runtime_path: self.runtime_path.clone(),
            max_id: self.uid_range,
            ghost_limit: self.ghost_limit.clone(),
        }
    }
}

pub fn main(a: Args) -> i32 {
    if a.check {
        return check_main(&a);
    }
    let paths = a.paths();
    let (_, site) = ns::plugstack_finding(&paths.plugstack);
    let w = a.wanted(&paths, &site);
    let mut accounts = SystemAccounts {
        paths: paths.clone(),
    };
    let mut steps = match ns::apply(&paths, &w, &mut accounts) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("slurm-ckpt node-setup: {e}");
            return 1;
        }
    };
    if paths.is_live() {
        // Needs the restarted daemon and the site's fabric interface: said, not done.
        steps.push(ns::Step {
            item: "network",
            outcome: Outcome::Manual,
            detail: format!(
                "once dockerd runs with the options above: docker network create -d macvlan --subnet {} -o parent=<fabric-if> {}",
                site.subnet, site.network
            ),
            restart: None,
        });
    }
    // One line per daemon (the first step's reason), in step order.
    let mut restart: Vec<&str> = Vec::new();
    for r in steps.iter().filter_map(|s| s.restart) {
        let daemon = |x: &str| x.split(' ').next().unwrap_or("").to_string();
        if !restart.iter().any(|x| daemon(x) == daemon(r)) {
            restart.push(r);
        }
    }
    if a.json {
        let out = serde_json::json!({ "steps": steps, "restart": restart });
        return super::print_json(&out);
    }
    for s in &steps {
        let tag = match s.outcome {
            Outcome::Changed => "changed  ",
            Outcome::Unchanged => "unchanged",
            Outcome::Manual => "TODO     ",
        };
        println!("{tag} {:<12} {}", s.item, s.detail);
    }
    for r in &restart {
        println!("restart   {r}");
    }
    if restart.is_empty() {
        println!("nothing to restart");
    }
    0
}

fn check_main(a: &Args) -> i32 {
    let findings = match check(a) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("slurm-ckpt node-setup: {e:#}");
            return 1;
        }
    };
    if a.json {
        if super::print_json(&findings) != 0 {
            return 1;
        }
    } else {
        for f in &findings {
            let tag = if f.ok { "ok     " } else { "MISSING" };
            println!("{tag} {:<16} {}", f.item, f.detail);
        }
    }
    let missing: Vec<&str> = findings.iter().filter(|f| !f.ok).map(|f| f.item).collect();
    if missing.is_empty() {
        0
    } else {
        eprintln!(
            "slurm-ckpt node-setup: this node lacks: {}",
            missing.join(", ")
        );
        1
    }
}

fn check(a: &Args) -> anyhow::Result<Vec<Finding>> {
    let paths = a.paths();
    let mut out = Vec::new();
    // The plugin's line and its settings (runtime name, network, socket) for the checks below.
    let (pf, site) = ns::plugstack_finding(&paths.plugstack);
    out.push(pf);
    let w = a.wanted(&paths, &site);
    let accounts = SystemAccounts {
        paths: paths.clone(),
    };
    if !paths.is_live() {
        // A node image: its files are all there is to check.
        out.extend(ns::file_findings(&paths, &w, &accounts, true));
        return Ok(out);
    }

    let dj = match std::fs::read_to_string(&paths.daemon_json) {
        Ok(t) => match DaemonJson::parse(&t) {
            Ok(d) => Some(d),
            Err(e) => {
                out.push(Finding::missing(
                    "daemon.json",
                    format!("{}: {e}", paths.daemon_json.display()),
                ));
                None
            }
        },
        // dockerd may get every option on its command line instead.
        Err(_) => None,
    };
    out.extend(docker_findings(&site, dj.as_ref()));
    out.extend(ns::file_findings(&paths, &w, &accounts, false));
    out.push(criu_finding());
    out.push(match slurm_ckpt::site_secret::read(&site.key_file) {
        Ok(k) => Finding::ok(
            "key_file",
            format!("{} ({} bytes, root-only)", site.key_file.display(), k.len()),
        ),
        Err(e) => Finding::missing("key_file", e.to_string()),
    });
    out.push(
        match slurm_ckpt::runtime_wrapper::real_runc(&site.runc_candidates()) {
            Ok(p) => Finding::ok("runc", p.display().to_string()),
            Err(e) => Finding::missing("runc", e.to_string()),
        },
    );
    for tool in ["iptables", "nsenter"] {
        out.push(match on_path(tool) {
            Some(p) => Finding::ok(tool, p.display().to_string()),
            None => Finding::missing(tool, format!("{tool} not on PATH")),
        });
    }
    Ok(out)
}

fn on_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

fn criu_finding() -> Finding {
    let out = match std::process::Command::new("criu").arg("--version").output() {
        Ok(o) => String::from_utf8_lossy(&o.stdout).into_owned(),
        Err(e) => {
            return Finding::missing(
                "criu",
                format!(
                    "cannot run criu: {e} (CRIU >= {}.{} needed)",
                    nc::CRIU_MIN.0,
                    nc::CRIU_MIN.1
                ),
            )
        }
    };
    match nc::criu_version(&out) {
        Ok(v) if v >= nc::CRIU_MIN => Finding::ok("criu", format!("CRIU {}.{}", v.0, v.1)),
        Ok(v) => Finding::missing(
            "criu",
            format!(
                "CRIU {}.{} is older than {}.{} (scripts/build-criu)",
                v.0,
                v.1,
                nc::CRIU_MIN.0,
                nc::CRIU_MIN.1
            ),
        ),
        Err(e) => Finding::missing("criu", e.to_string()),
    }
}

/// What the running daemon reports (authoritative: options may come from daemon.json or flags).
fn docker_findings(site: &SiteConfig, dj: Option<&DaemonJson>) -> Vec<Finding> {
    let node = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let socket = site.socket_for(&node);
    let path = socket
        .strip_prefix("unix://")
        .unwrap_or(&socket)
        .to_string();
    let rt = match super::runtime() {
        Ok(rt) => rt,
        Err(e) => return vec![Finding::missing("dockerd", e.to_string())],
    };
    rt.block_on(async move {
        let mut out = Vec::new();
        let docker = match Docker::connect_with_unix(&path, 10, bollard::API_DEFAULT_VERSION) {
            Ok(d) => d,
            Err(e) => return vec![Finding::missing("dockerd", format!("{socket}: {e}"))],
        };
        // bollard's default version is newer than older daemons accept: speak the daemon's.
        let docker = match docker.negotiate_version().await {
            Ok(d) => d,
            Err(e) => return vec![Finding::missing("dockerd", format!("not reachable at {socket}: {e}"))],
        };
        let api = docker.client_version().to_string();
        if let Err(e) = slurm_ckpt::engine::api_version::check(&api, &socket, &node) {
            return vec![Finding::missing("dockerd", e.to_string())];
        }
        let info = match docker.info().await {
            Ok(i) => i,
            Err(e) => return vec![Finding::missing("dockerd", format!("not reachable at {socket}: {e}"))],
        };
        out.push(Finding::ok("dockerd", format!("{socket}, {}, API {api}", info.server_version.unwrap_or_default())));
        out.push(if info.experimental_build == Some(true) {
            Finding::ok("experimental", "dockerd runs with experimental features (checkpoint)")
        } else {
            Finding::missing("experimental", "dockerd needs --experimental (or \"experimental\": true in daemon.json)")
        });
        out.push(if info.live_restore_enabled == Some(true) {
            Finding::ok("live-restore", "dockerd keeps containers running across its restarts")
        } else {
            Finding::missing("live-restore", "dockerd needs --live-restore (or \"live-restore\": true in daemon.json): its restart would kill running jobs")
        });
        let userns = info.security_options.unwrap_or_default().iter().any(|o| o.contains("name=userns"));
        out.push(if userns {
            Finding::ok("userns-remap", "dockerd remaps user namespaces")
        } else {
            Finding::missing("userns-remap", "dockerd needs --userns-remap=USER (or \"userns-remap\" in daemon.json)")
        });
        if !site.runtime.is_empty() {
            let live = info.runtimes.unwrap_or_default().get(&site.runtime).and_then(|r| r.path.clone());
            let configured = dj.and_then(|d| d.runtimes.iter().find(|(n, _)| *n == site.runtime).map(|(_, p)| p.clone()));
            out.push(match live {
                Some(p) if Path::new(&p).is_file() => Finding::ok("runtime", format!("{} = {p}", site.runtime)),
                Some(p) => Finding::missing("runtime", format!("runtime {} points at {p}, which does not exist", site.runtime)),
                None => Finding::missing("runtime", format!(
                    "dockerd has no runtime '{}'{}: add \"runtimes\": {{\"{}\": {{\"path\": \"/usr/bin/slurm-ckpt-runc\"}}}} to daemon.json and restart dockerd",
                    site.runtime,
                    if configured.is_some() { " (daemon.json has it: dockerd not restarted since?)" } else { "" },
                    site.runtime
                )),
            });
        }
        out.push(match docker.inspect_network::<String>(&site.network, None).await {
            Ok(n) => {
                let subnets: Vec<String> = n.ipam.and_then(|i| i.config).unwrap_or_default().into_iter().filter_map(|c| c.subnet).collect();
                if subnets.iter().any(|s| *s == site.subnet.to_string()) {
                    Finding::ok("network", format!("{} ({})", site.network, site.subnet))
                } else {
                    Finding::missing("network", format!("{} has subnet(s) {} but the site's subnet is {}", site.network, subnets.join(","), site.subnet))
                }
            }
            Err(_) => Finding::missing("network", format!(
                "no Docker network {}: docker network create -d macvlan --subnet {} -o parent=<fabric-if> {}",
                site.network, site.subnet, site.network
            )),
        });
        out
    })
}
