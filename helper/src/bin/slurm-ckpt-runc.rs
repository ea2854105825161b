//! OCI runtime wrapper registered with dockerd (`--add-runtime slurm-ckpt=/usr/local/bin/slurm-ckpt-runc`):
//! execs runc, redirecting checkpoint/restore images to the checkpoint storage. See runtime_wrapper.rs.
use slurm_ckpt::runtime_wrapper::{netlock_hook, rewrite, NETLOCK_HOOK, REAL_RUNC};
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
    let (argv, note) = rewrite(args, &site.runtime_dir, &site.ckpt_root);
    if let Some(n) = note {
        log(&n);
    }
    let runc = std::env::var("SLURM_CKPT_REAL_RUNC").unwrap_or_else(|_| REAL_RUNC.to_string());
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
