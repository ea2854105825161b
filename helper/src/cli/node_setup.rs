//! `slurm-ckpt node-setup --check`: report what this node lacks for rank containers (dockerd
//! options, runtime registration, the remap user's id ranges, CRIU and its config, the container
//! network, iptables/nsenter, the plugstack.conf line). Reads only; exits 1 naming every missing item.

use std::path::{Path, PathBuf};

use bollard::Docker;
use slurm_ckpt::node_check::{self as nc, DaemonJson, Finding};
use slurm_ckpt::site::SiteConfig;

#[derive(clap::Args)]
pub struct Args {
    /// Only report what is missing; change nothing (required: the mutating set-up is not implemented yet).
    #[arg(long)]
    check: bool,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
    /// The userns-remap user (default: daemon.json's "userns-remap", else slurmckpt).
    #[arg(long)]
    remap_user: Option<String>,
    #[arg(long, default_value = "/etc/docker/daemon.json")]
    daemon_json: PathBuf,
    #[arg(long, default_value = "/etc/slurm/plugstack.conf")]
    plugstack: PathBuf,
}

pub fn main(a: Args) -> i32 {
    if !a.check {
        eprintln!("slurm-ckpt node-setup: only --check is implemented; it reports what to set up");
        return 2;
    }
    let findings = match check(&a) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("slurm-ckpt node-setup: {e:#}");
            return 1;
        }
    };
    if a.json {
        match serde_json::to_string_pretty(&findings) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("slurm-ckpt node-setup: {e}");
                return 1;
            }
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
    let mut out = Vec::new();
    // The plugin's line and its settings (runtime name, network, socket) for the checks below.
    let site = match slurm_ckpt_site::plugstack::plugin_args(
        &a.plugstack,
        &mut slurm_ckpt_site::plugstack::read_file,
    ) {
        Ok(p) => match p.args {
            Some(args) => {
                out.push(Finding::ok(
                    "plugstack",
                    format!("plugin enabled in {}", a.plugstack.display()),
                ));
                SiteConfig::parse(&args)?
            }
            None => {
                out.push(Finding::missing(
                    "plugstack",
                    format!(
                        "no line loads {} from {} (uncomment /etc/slurm/plugstack.conf.d/container_ckpt.conf); checking with default settings",
                        slurm_ckpt_site::PLUGIN_FILE,
                        a.plugstack.display()
                    ),
                ));
                SiteConfig::default()
            }
        },
        Err(e) => {
            out.push(Finding::missing("plugstack", e.to_string()));
            SiteConfig::default()
        }
    };

    let dj = match std::fs::read_to_string(&a.daemon_json) {
        Ok(t) => match DaemonJson::parse(&t) {
            Ok(d) => Some(d),
            Err(e) => {
                out.push(Finding::missing(
                    "daemon.json",
                    format!("{}: {e}", a.daemon_json.display()),
                ));
                None
            }
        },
        // dockerd may get every option on its command line instead.
        Err(_) => None,
    };

    out.extend(docker_findings(&site, dj.as_ref()));

    let user = a
        .remap_user
        .clone()
        .or_else(|| {
            dj.as_ref()
                .and_then(|d| d.userns_remap.as_deref())
                .map(|u| nc::remap_user(u).to_string())
        })
        .unwrap_or_else(|| "slurmckpt".to_string());
    match nix::unistd::User::from_name(&user) {
        Ok(Some(_)) => out.push(Finding::ok("remap-user", format!("user {user} exists"))),
        _ => out.push(Finding::missing(
            "remap-user",
            format!("no user {user}: useradd --system --no-create-home --shell /usr/sbin/nologin {user}"),
        )),
    }
    for (item, file) in [("subuid", "/etc/subuid"), ("subgid", "/etc/subgid")] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        out.push(match nc::check_id_map(&nc::id_ranges(&text, &user)) {
            Ok(()) => Finding::ok(
                item,
                format!("{file}: {user} maps root away, ids 1..65535 to themselves"),
            ),
            Err(why) => Finding::missing(
                item,
                format!(
                    "{file}: {why}; {user}'s lines must be, in this order: {}",
                    nc::id_map_lines(&user).trim_end().replace('\n', " then ")
                ),
            ),
        });
    }

    out.push(criu_finding());
    let conf = Path::new("/etc/criu/runc.conf");
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
        let info = match docker.info().await {
            Ok(i) => i,
            Err(e) => return vec![Finding::missing("dockerd", format!("not reachable at {socket}: {e}"))],
        };
        out.push(Finding::ok("dockerd", format!("{socket}, {}", info.server_version.unwrap_or_default())));
        out.push(if info.experimental_build == Some(true) {
            Finding::ok("experimental", "dockerd runs with experimental features (checkpoint)")
        } else {
            Finding::missing("experimental", "dockerd needs --experimental (or \"experimental\": true in daemon.json)")
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
