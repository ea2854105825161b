//! A watchdog for one rank's checkpoint. While a checkpoint runs, the rank's container is frozen
//! and its network dropped; only its supervisor undoes that. Should the supervisor die midway
//! (kill -9, OOM killer), the container would stay frozen and cut off, and the whole MPI world with
//! it. So the supervisor starts `slurm-ckpt guard` first, in its own process group, holding a pipe
//! to it. "done" on the pipe ends the guard quietly; end-of-file without it means the supervisor
//! is gone: the guard tells the other ranks (a `failed` marker), waits for a dump still running in
//! the runtime, lifts the network drop and thaws the container, so the job keeps running, now
//! without a supervisor for this rank (see relay.rs for the task's side).
use crate::barrier::{marker, touch};
use crate::engine::Engine;
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

const DONE: &[u8] = b"done\n";

/// What the guard watches over.
#[derive(Debug, Clone, clap::Args)]
pub struct GuardArgs {
    #[arg(long)]
    pub socket: String,
    #[arg(long)]
    pub node: String,
    #[arg(long)]
    pub container: String,
    #[arg(long)]
    pub rank: u32,
    /// The generation's temporary directory (for the `failed` marker).
    #[arg(long)]
    pub dir: PathBuf,
}

/// The supervisor's end of a running guard.
pub struct Guard {
    child: tokio::process::Child,
}

impl Guard {
    pub fn spawn(a: &GuardArgs, log: &Path) -> Result<Guard> {
        // /proc/self/exe: the running binary, even if a reinstall has replaced the file since.
        let child = tokio::process::Command::new("/proc/self/exe")
            .arg("guard")
            .args(["--socket", &a.socket, "--node", &a.node])
            .args(["--container", &a.container, "--rank", &a.rank.to_string()])
            .arg("--dir")
            .arg(&a.dir)
            .arg("--log")
            .arg(log)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Out of the supervisor's process group: a group kill aimed at it spares the guard.
            .process_group(0)
            .spawn()
            .map_err(|e| Error::io("slurm-ckpt guard", e))?;
        Ok(Guard { child })
    }

    /// The checkpoint is over and the supervisor has cleaned up itself: dismiss the guard.
    pub async fn release(mut self) {
        if let Some(mut pipe) = self.child.stdin.take() {
            let _ = pipe.write_all(DONE).await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}

/// `slurm-ckpt guard`: read the pipe until end-of-file; act only when "done" never came.
pub async fn run(a: GuardArgs) -> Result<()> {
    // Nothing else runs in this process until the pipe ends: a blocking read is fine.
    let mut buf = Vec::new();
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf);
    if buf.starts_with(DONE) {
        return Ok(());
    }
    tracing::error!(
        "rank {}: supervisor died during a checkpoint; failing the checkpoint and thawing {}",
        a.rank,
        a.container
    );
    let _ = touch(&marker(&a.dir, "failed", a.rank));
    wait_for_runtime_checkpoint(&a.container).await;
    let engine = Engine::connect(&a.socket, &a.node).await?;
    if let Err(e) = engine.drop_traffic(&a.container, false).await {
        tracing::error!("rank {}: lifting the network drop: {e}", a.rank);
    }
    engine.set_paused(&a.container, false).await?;
    tracing::warn!(
        "rank {}: container {} runs on without a supervisor (the job's epilog removes it)",
        a.rank,
        a.container
    );
    Ok(())
}

/// A dump the runtime is still doing would freeze the container again when it ends: wait for it
/// (bounded), recognised by the runtime's `checkpoint` command line naming the container.
async fn wait_for_runtime_checkpoint(container: &str) {
    for _ in 0..600 {
        if !runtime_checkpoint_running(Path::new("/proc"), container) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tracing::warn!("a runtime checkpoint of {container} still runs after 120s; thawing anyway");
}

fn runtime_checkpoint_running(proc: &Path, container: &str) -> bool {
    let Ok(rd) = std::fs::read_dir(proc) else {
        return false;
    };
    rd.flatten().any(|e| {
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            return false;
        };
        let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
        args.contains(&b"checkpoint".as_slice())
            && args.iter().any(|a| a.ends_with(container.as_bytes()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runtime_checkpoint_is_recognised_by_its_command_line() {
        let proc = std::env::temp_dir().join(format!("slurm-ckpt-proc-{}", std::process::id()));
        let p = proc.join("42");
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(
            p.join("cmdline"),
            b"runc\0--root\0/x\0checkpoint\0--image-path\0/i\0abc123\0",
        )
        .unwrap();
        assert!(runtime_checkpoint_running(&proc, "abc123"));
        assert!(!runtime_checkpoint_running(&proc, "def456"));
        std::fs::write(p.join("cmdline"), b"runc\0start\0abc123\0").unwrap();
        assert!(!runtime_checkpoint_running(&proc, "abc123"));
        std::fs::remove_dir_all(&proc).unwrap();
    }
}
