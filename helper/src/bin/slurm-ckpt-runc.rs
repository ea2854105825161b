//! OCI runtime wrapper registered with dockerd (daemon.json `runtimes.slurm-ckpt`, path
//! /usr/bin/slurm-ckpt-runc, written by `slurm-ckpt node-setup`):
//! execs runc, redirecting checkpoint/restore images to the checkpoint storage. See runtime_wrapper.rs.
//!
//! Runs as root: it fails closed. A checkpoint/restore it cannot vouch for is refused (exit 1, the
//! reason on stderr and in /var/log/slurm-ckpt/runtime.log); runc itself is the site's `runc_path`
//! (plugstack.conf, read through the trust checks) or a fixed default, and must be trusted.
use slurm_ckpt::runtime_wrapper::{
    classify, kept_criu_log, load_site, netlock_hook, real_runc, rewrite, Op, Roots, NETLOCK_HOOK,
    PLUGSTACK, REAL_RUNC,
};
use slurm_ckpt::site::{ConfigError, SiteConfig};
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

const LOG_DIR: &str = "/var/log/slurm-ckpt";

fn main() {
    init_log();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(NETLOCK_HOOK) {
        // Prestart hook of a restore: never fail the restore for it, but say so.
        let mut state = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut state);
        if let Err(e) = netlock_hook(&state) {
            tracing::warn!("network lock hook: {e}");
        }
        return;
    }
    let op = classify(&args);
    let site = load_site(Path::new(PLUGSTACK));
    // The site's runc_path; while plugstack.conf is unusable, the default places, so containers
    // can still be managed (checkpoint/restore are refused below in that case).
    let candidates = match &site {
        Ok(s) => s.runc_candidates(),
        Err(_) => REAL_RUNC.iter().map(PathBuf::from).collect(),
    };
    // Whatever the call, root never runs a runc it cannot trust.
    let runc = real_runc(&candidates).unwrap_or_else(|e| refuse(op_name(&op), &e));
    if matches!(op, Op::Other) {
        // create/start/kill/delete/state...: no site settings needed, passed through unchanged,
        // so containers can still be managed (and deleted) while the settings are broken.
        let err = std::process::Command::new(&runc).args(&args).exec();
        refuse("exec", &format!("{}: {err}", runc.display()));
    }
    let argv = plan(&op, args.clone(), site);
    let code = run_waiting(&runc, &argv);
    if code != 0 {
        if let Some(kept) = keep_criu_log(&args, &op) {
            tracing::warn!(
                "runc {} failed ({code}); CRIU log kept at {}",
                op_name(&op),
                kept.display()
            );
        }
    }
    std::process::exit(code);
}

/// The argv of a checkpoint/restore, or a refusal: site settings first, then the trust checks.
fn plan(op: &Op, args: Vec<String>, site: Result<SiteConfig, ConfigError>) -> Vec<OsString> {
    let site = site.unwrap_or_else(|e| refuse(op_name(op), &e));
    match rewrite(args, &Roots::of(&site)) {
        Ok(r) => {
            if let Some(n) = r.note {
                tracing::info!("{n}");
            }
            r.argv
        }
        Err(e) => refuse(op_name(op), &e),
    }
}

/// Run runc and wait for it, so that CRIU's log survives a failure (containerd deletes its work
/// directory with the failed container).
fn run_waiting(runc: &Path, argv: &[OsString]) -> i32 {
    match std::process::Command::new(runc).args(argv).status() {
        Ok(st) => st.code().unwrap_or(1),
        Err(e) => {
            eprintln!("slurm-ckpt-runc: {}: {e}", runc.display());
            tracing::error!("{}: {e}", runc.display());
            127
        }
    }
}

/// Refuse the call: the reason goes to containerd (stderr) and to the wrapper's log.
fn refuse(what: &str, why: &dyn std::fmt::Display) -> ! {
    eprintln!("slurm-ckpt-runc: {what} refused: {why}");
    tracing::error!("{what} refused: {why}");
    std::process::exit(1);
}

/// Log to /var/log/slurm-ckpt/runtime.log (the wrapper's stderr belongs to containerd); without
/// that file, not at all.
fn init_log() {
    let _ = std::fs::create_dir_all(LOG_DIR);
    let Ok(f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(Path::new(LOG_DIR).join("runtime.log"))
    else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_target(false)
        .with_writer(std::sync::Mutex::new(f))
        .try_init();
}

fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Checkpoint { .. } => "checkpoint",
        Op::Restore { .. } => "restore",
        Op::Other => "runc call",
    }
}

/// Copy CRIU's log from runc's `--work-path` to /var/log/slurm-ckpt/criu/ (see kept_criu_log).
fn keep_criu_log(args: &[String], op: &Op) -> Option<PathBuf> {
    let work = args
        .iter()
        .position(|a| a == "--work-path")
        .and_then(|i| args.get(i + 1))?;
    let id = args.last()?;
    let name = match op {
        Op::Checkpoint { .. } => "dump.log",
        _ => "restore.log",
    };
    let dst = kept_criu_log(id, op_name(op));
    std::fs::create_dir_all(dst.parent()?).ok()?;
    std::fs::copy(Path::new(work).join(name), &dst).ok()?;
    Some(dst)
}
