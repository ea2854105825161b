pub mod check_paths;
pub mod checkpoint;
pub mod cleanup;
pub mod guard;
pub mod image;
pub mod list;
pub mod man;
pub mod node_setup;
pub mod relay;
pub mod status;
pub mod supervise;

use slurm_ckpt::site::SiteConfig;

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
