pub mod check_paths;
pub mod checkpoint;
pub mod cleanup;
pub mod guard;
pub mod image;
pub mod list;
pub mod relay;
pub mod status;
pub mod supervise;

use slurm_ckpt::site::SiteConfig;

/// The arguments of a subcommand the plugin runs (supervise, relay, cleanup): taken as they are
/// and decoded by the request types of `slurm_ckpt_site::request`, the one definition the plugin
/// encodes them with.
#[derive(clap::Args)]
pub struct RequestArgs {
    /// `--flag value`... as the plugin writes them (slurm_ckpt_site::request; supervise ends
    /// with `-- PROGRAM [ARGS...]`)
    #[arg(
        value_name = "REQUEST",
        num_args = 1..,
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub request: Vec<String>,
}

/// Log to stderr (or to `file` when given: the supervisor's stderr is /dev/null).
pub fn init_tracing(file: Option<&std::path::Path>) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLURM_CKPT_LOG")
        .unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    if let Some(path) = file {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Ok(f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(f))
                .init();
            return;
        }
    }
    builder.with_writer(std::io::stderr).init();
}

/// Site settings: explicit `--site k=v` pairs (from the plugin), else plugstack.conf.
pub fn site_config(pairs: &[String], plugstack: &std::path::Path) -> anyhow::Result<SiteConfig> {
    if pairs.is_empty() {
        Ok(SiteConfig::from_plugstack(plugstack)?)
    } else {
        Ok(SiteConfig::parse(pairs)?)
    }
}

/// Where site settings come from when a plugin request carries none (a run by hand).
const PLUGSTACK: &str = "/etc/slurm/plugstack.conf";

/// The site settings of a plugin request, else those of `plugstack` (default: Slurm's).
pub fn request_site(
    site: &Option<SiteConfig>,
    plugstack: Option<&std::path::Path>,
) -> anyhow::Result<SiteConfig> {
    match site {
        Some(s) => Ok(s.clone()),
        None => site_config(&[], plugstack.unwrap_or(PLUGSTACK.as_ref())),
    }
}

/// Exit code of a user-facing subcommand: errors go to stderr, prefixed with the subcommand.
pub fn exit_code(cmd: &str, res: anyhow::Result<()>) -> i32 {
    match res {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("slurm-ckpt {cmd}: {e:#}");
            1
        }
    }
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}
