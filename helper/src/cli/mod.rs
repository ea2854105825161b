pub mod check_paths;
pub mod check_restore;
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
pub mod write_index;

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

/// Log to stderr (or to `file` when given: the supervisor's stderr is /dev/null). Returns why
/// `file` could not be used, if it could not: logs then go to stderr, which the caller may need to
/// say once where someone reads it.
pub fn init_tracing(file: Option<&std::path::Path>) -> Option<String> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLURM_CKPT_LOG")
        .unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let mut problem = None;
    if let Some(path) = file {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            Ok(f) => {
                builder
                    .with_ansi(false)
                    .with_writer(std::sync::Mutex::new(f))
                    .init();
                return None;
            }
            Err(e) => problem = Some(format!("cannot open the log {}: {e}", path.display())),
        }
    }
    builder.with_writer(std::io::stderr).init();
    problem
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

/// Set in the worker process of [`exit_if_storage_hangs`].
const WATCHED_ENV: &str = "SLURM_CKPT_STORAGE_WATCHED";

/// End with an error naming the storage if the command has not finished after `after`: `status`
/// and `list` read the checkpoint storage, and a read on a hung mount cannot be cancelled. Not
/// even the process's exit can end it: a FUSE request the file system daemon has already taken
/// is waited out (GlusterFS: until its ping-timeout, 42 s), whatever the signal. So the command
/// runs again as a child process that does the work, and this one waits for it at most `after`,
/// then says why, kills the child (it dies once the kernel lets go of it) and returns at once.
/// Called before anything touches the storage; in the child it returns at once.
pub fn exit_if_storage_hangs(
    cmd: &'static str,
    root: &std::path::Path,
    after: std::time::Duration,
) {
    if std::env::var_os(WATCHED_ENV).is_some() {
        return;
    }
    let child = std::env::current_exe().and_then(|exe| {
        std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .env(WATCHED_ENV, "1")
            .spawn()
    });
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            // Then the command runs unwatched, as before the watchdog.
            tracing::warn!("no watchdog for the checkpoint storage: {e}");
            return;
        }
    };
    let end = std::time::Instant::now() + after;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                use std::os::unix::process::ExitStatusExt;
                let code = status
                    .code()
                    .or_else(|| status.signal().map(|s| 128 + s))
                    .unwrap_or(1);
                std::process::exit(code);
            }
            Ok(None) if std::time::Instant::now() < end => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            Ok(None) => {
                eprintln!(
                    "slurm-ckpt {cmd}: checkpoint storage {} ({}) did not answer within {}s (storage server down, network or client hung?)",
                    root.display(),
                    slurm_ckpt::storage::mount_of_path(root),
                    after.as_secs()
                );
                let _ = child.kill();
                std::process::exit(1);
            }
            Err(e) => {
                eprintln!("slurm-ckpt {cmd}: waiting for the command's worker: {e}");
                std::process::exit(1);
            }
        }
    }
}

/// Exit code of a user-facing subcommand: errors go to stderr, prefixed with the subcommand.
pub fn exit_code(cmd: &str, res: anyhow::Result<()>) -> i32 {
    match res {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("slurm-ckpt {cmd}: {}", report(&e));
            1
        }
    }
}

/// An error and its causes on one line, like anyhow's `{:#}`, but a cause that the message
/// before it already ends with is not printed again (an error that both says its cause and
/// returns it as `source()`).
pub fn report(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.is_empty() {
            out = text;
        } else if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// `value` as pretty JSON on stdout (`--json`); 0, or 1 when it cannot be encoded.
pub fn print_json<T: serde::Serialize + ?Sized>(value: &T) -> i32 {
    use std::io::Write;
    match serde_json::to_string_pretty(value) {
        Ok(s) => {
            // A closed pipe (`| head`) is the reader's choice, not a failure worth a panic.
            let _ = writeln!(std::io::stdout(), "{s}");
            0
        }
        Err(e) => {
            eprintln!("slurm-ckpt: cannot encode the output as JSON: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::report;

    #[test]
    fn a_cause_is_printed_once() {
        let io = || std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        // Cause in the message only (the helper's Io).
        let e = anyhow::Error::from(slurm_ckpt::Error::io("/x", io())).context("reading");
        assert_eq!(report(&e), "reading: /x: gone");
        // Cause in the message and as source().
        #[derive(Debug, thiserror::Error)]
        #[error("docker (sock): {source}")]
        struct Both {
            source: std::io::Error,
        }
        let e = anyhow::Error::from(Both { source: io() });
        assert_eq!(format!("{e:#}"), "docker (sock): gone: gone");
        assert_eq!(report(&e), "docker (sock): gone");
    }
}
