//! OCI runtime wrapper registered with dockerd (`--add-runtime slurm-ckpt=/usr/local/bin/slurm-ckpt-runc`):
//! execs runc, redirecting checkpoint/restore images to the checkpoint storage. See runtime_wrapper.rs.
use slurm_ckpt::runtime_wrapper::{
    classify, kept_criu_log, netlock_hook, rewrite, Op, NETLOCK_HOOK, REAL_RUNC,
};
use slurm_ckpt::site::SiteConfig;
use std::os::unix::process::CommandExt;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(NETLOCK_HOOK) {
        // Prestart hook of a restore: never fail the restore for it, but say so.
        let mut state = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut state);
        if let Err(e) = netlock_hook(&state) {
            log(&format!("network lock hook: {e}"));
        }
        return;
    }
    let site = SiteConfig::from_plugstack(std::path::Path::new("/etc/slurm/plugstack.conf"))
        .unwrap_or_default();
    let op = classify(&args);
    let roots = [site.ckpt_root.as_path(), site.stage_dir.as_path()];
    let (argv, note) = rewrite(args.clone(), &site.runtime_dir, &roots);
    if let Some(n) = note {
        log(&n);
    }
    let runc = std::env::var("SLURM_CKPT_REAL_RUNC").unwrap_or_else(|_| REAL_RUNC.to_string());
    if !matches!(op, Op::Other) {
        // Checkpoint/restore: wait for runc, so that CRIU's log survives a failure (containerd
        // deletes its work directory with the failed container).
        let code = match std::process::Command::new(&runc).args(&argv).status() {
            Ok(st) => st.code().unwrap_or(1),
            Err(e) => {
                eprintln!("slurm-ckpt-runc: {runc}: {e}");
                127
            }
        };
        if code != 0 {
            if let Some(kept) = keep_criu_log(&args, &op) {
                log(&format!(
                    "runc {} failed ({code}); CRIU log kept at {}",
                    op_name(&op),
                    kept.display()
                ));
            }
        }
        std::process::exit(code);
    }
    let err = std::process::Command::new(&runc).args(argv).exec();
    eprintln!("slurm-ckpt-runc: exec {runc}: {err}");
    std::process::exit(127);
}

/// Append one line to the wrapper's log (its stderr belongs to containerd).
fn log(msg: &str) {
    use std::io::Write;
    let _ = std::fs::create_dir_all("/var/log/slurm-ckpt");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open("/var/log/slurm-ckpt/runtime.log")
    {
        let _ = writeln!(f, "{} {msg}", slurm_ckpt::state::now());
    }
}

fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Checkpoint { .. } => "checkpoint",
        _ => "restore",
    }
}

/// Copy CRIU's log from runc's `--work-path` to /var/log/slurm-ckpt/criu/ (see kept_criu_log).
fn keep_criu_log(args: &[String], op: &Op) -> Option<std::path::PathBuf> {
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
    std::fs::copy(std::path::Path::new(work).join(name), &dst).ok()?;
    Some(dst)
}
