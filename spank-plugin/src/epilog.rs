//! Job epilog (job_script context, root, every node of the job): have the helper remove what the
//! job left behind (containers, networks, runtime state). Never fails the epilog.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::config::SiteConfig;
use crate::dispatch::PluginError;
use crate::ffi::{log_debug, log_verbose, Item, Spank};
use crate::helper_argv::{self, node_name, ROOT_PATH};
use crate::options::OptId;
use crate::spawn;
use crate::stepd::{hostname, marker_path};

/// How much of a failed helper's output goes into the log.
const OUTPUT_TAIL: usize = 2000;

pub fn job_epilog(sp: &Spank, site: &SiteConfig) -> Result<(), PluginError> {
    let job = sp.get_item_u32(Item::JobId)?;
    // sbatch/salloc options reach the epilog as SPANK__SLURM_SPANK_OPTION_container_ckpt_*;
    // the marker covers containers started by an srun that alone had the options.
    let requested = match sp.option_getopt(OptId::Image, &site.option_prefix) {
        Ok(v) => v.is_some(),
        Err(e) => {
            log_debug(&format!("epilog of job {job}: {e}"));
            false
        }
    };
    let marker = marker_path(site, job);
    if !requested && !marker.exists() {
        return Ok(());
    }
    let node = node_name(std::env::var("SLURMD_NODENAME").ok(), &[], hostname())
        .ok_or(PluginError::NoNodeName)?;
    let argv = helper_argv::cleanup(job, &node, site);
    run_with_timeout(site, job, &node, &argv)?;
    if let Err(e) = std::fs::remove_file(&marker) {
        if e.kind() != std::io::ErrorKind::NotFound {
            log_debug(&format!("cannot remove {}: {e}", marker.display()));
        }
    }
    log_verbose(&format!("cleaned up job {job} on {node}"));
    Ok(())
}

/// Runs the helper with its output captured, killing its whole process group at the timeout.
fn run_with_timeout(
    site: &SiteConfig,
    job: u32,
    node: &str,
    argv: &[String],
) -> Result<(), PluginError> {
    let spawn_err = |err| PluginError::CleanupSpawn { job, err };
    let (argv0, rest) = argv
        .split_first()
        .map(|(a, r)| (a.as_str(), r))
        .unwrap_or((helper_argv::ARGV0, &[]));
    let mut out = spawn::anonymous_file("slurm-ckpt-cleanup").map_err(spawn_err)?;
    let io_err = |call: &'static str| {
        move |err| PluginError::CleanupSpawn {
            job,
            err: spawn::SpawnError::Os { call, err },
        }
    };
    let stdout = out.try_clone().map_err(io_err("dup"))?;
    let stderr = out.try_clone().map_err(io_err("dup"))?;
    let mut child = Command::new(&site.helper)
        .arg0(argv0)
        .args(rest)
        .env_clear()
        .env("PATH", ROOT_PATH.trim_start_matches("PATH="))
        .env("SLURMD_NODENAME", node)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        // Own process group, so a timeout kills whatever the helper started too.
        .process_group(0)
        .spawn()
        .map_err(|err| {
            spawn_err(spawn::SpawnError::Exec {
                path: site.helper.to_string_lossy().into_owned(),
                err,
            })
        })?;

    let deadline = Instant::now() + Duration::from_secs(site.timeout_secs);
    let status: Option<ExitStatus> = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = spawn::kill_process_group(child.id());
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            // No threads in the plugin: poll.
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(err) => return Err(io_err("waitpid")(err)),
        }
    };
    if let Some(status) = status {
        if status.success() {
            return Ok(());
        }
    }
    let status = match status {
        Some(s) => s.to_string(),
        None => format!("killed after the {} s timeout", site.timeout_secs),
    };
    Err(PluginError::CleanupFailed {
        job,
        status,
        output: output_tail(&mut out),
    })
}

/// The end of the captured output, on one line, prefixed for the error message.
fn output_tail(out: &mut std::fs::File) -> String {
    let mut buf = Vec::new();
    if out.seek(SeekFrom::Start(0)).is_err() || out.read_to_end(&mut buf).is_err() {
        return String::new();
    }
    let text = String::from_utf8_lossy(&buf);
    let text = text.trim();
    if text.is_empty() {
        return String::new();
    }
    let start = text
        .char_indices()
        .rev()
        .nth(OUTPUT_TAIL)
        .map_or(0, |(i, _)| i);
    let helper_prefix = format!(
        "{} {}: ",
        helper_argv::ARGV0,
        crate::config::request::CleanupRequest::SUBCOMMAND
    );
    let tail: Vec<&str> = text[start..]
        .lines()
        .map(str::trim)
        // The helper's own prefix: this message already has the plugin's (one per message).
        .map(|l| l.strip_prefix(helper_prefix.as_str()).unwrap_or(l))
        .filter(|l| !l.is_empty())
        .collect();
    format!(": {}", tail.join(" | "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        ["slurm-ckpt-test", "-c", script]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    fn site() -> SiteConfig {
        SiteConfig {
            helper: "/bin/sh".into(),
            timeout_secs: 1,
            ..SiteConfig::default()
        }
    }

    #[test]
    fn success_and_clean_environment() {
        let script = r#"[ "$0" = slurm-ckpt-test ] && [ "$SLURMD_NODENAME" = n1 ] && [ -z "$HOME" ] && [ "$(pwd)" = / ]"#;
        run_with_timeout(&site(), 1, "n1", &sh(script)).unwrap();
    }

    #[test]
    fn failure_reports_status_and_output() {
        let err = run_with_timeout(
            &site(),
            7,
            "n1",
            &sh("echo first; echo slurm-ckpt cleanup: second >&2; exit 3"),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "helper cleanup of job 7 failed (exit status: 3): first | second"
        );
    }

    #[test]
    fn timeout_kills_the_process_group() {
        let start = Instant::now();
        let pidfile = std::env::temp_dir().join(format!("spank-ckpt-test-{}", std::process::id()));
        let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let err = run_with_timeout(&site(), 8, "n1", &sh(&script)).unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(10));
        assert!(
            err.to_string().contains("killed after the 1 s timeout"),
            "{err}"
        );
        // The helper's own child went with it.
        let pid = std::fs::read_to_string(&pidfile).unwrap();
        let _ = std::fs::remove_file(&pidfile);
        std::thread::sleep(Duration::from_millis(100));
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
        assert!(
            stat.is_empty() || stat.contains(") Z "),
            "background child still alive: {stat}"
        );
    }

    #[test]
    fn missing_helper() {
        let site = SiteConfig {
            helper: "/nonexistent/slurm-ckpt".into(),
            ..site()
        };
        let err = run_with_timeout(&site, 9, "n1", &sh("true")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("helper cleanup of job 9: cannot execute /nonexistent/slurm-ckpt"),
            "{err}"
        );
    }
}
