//! The user-side relay: what the Slurm task becomes (the plugin execs it in `task_init`). It
//! prints the container's output as the task's output, forwards the signals Slurm sends the task to
//! the root supervisor, and exits with the rank's exit code.
use crate::protocol::{read_frame, write_frame, Frame};
use signal_hook::consts::{SIGCONT, SIGHUP, SIGINT, SIGTERM, SIGTSTP, SIGUSR1, SIGUSR2};
use signal_hook::iterator::Signals;
use std::io::Write;
use std::os::unix::net::UnixStream;

/// Run the relay; returns the process exit code.
pub fn run(sock: UnixStream, rank: u32) -> i32 {
    let mut signals =
        match Signals::new([SIGTSTP, SIGCONT, SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2]) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("slurm-ckpt: rank {rank}: relay signal handlers: {e}");
                return 1;
            }
        };
    let mut to_sup = match sock.try_clone() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("slurm-ckpt: rank {rank}: relay socket: {e}");
            return 1;
        }
    };
    // Signals also reach the main thread: it needs them once the supervisor is gone.
    let (sig_tx, sig_rx) = std::sync::mpsc::channel::<i32>();
    std::thread::spawn(move || {
        for sig in signals.forever() {
            let _ = sig_tx.send(sig);
            let frame = match sig {
                SIGTSTP => Frame::Suspend,
                SIGCONT => Frame::Resume,
                SIGUSR1 => Frame::Checkpoint,
                // Sent by the launcher rank's supervisor when MPI is done; the launcher ignores it.
                SIGUSR2 if rank == 0 => continue,
                SIGUSR2 => Frame::Finish,
                _ => Frame::Terminate,
            };
            // A write fails once the supervisor is gone; keep delivering to the main thread.
            let _ = write_frame(&mut to_sup, &frame);
        }
    });

    let mut from_sup = sock;
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    loop {
        match read_frame(&mut from_sup) {
            Ok(Some(Frame::Stdout(b))) => {
                let mut o = stdout.lock();
                let _ = o.write_all(&b).and_then(|_| o.flush());
            }
            Ok(Some(Frame::Stderr(b))) => {
                let mut e = stderr.lock();
                let _ = e.write_all(&b).and_then(|_| e.flush());
            }
            Ok(Some(Frame::Fatal(msg))) => eprintln!("{msg}"),
            Ok(Some(Frame::Exit(code))) => return code,
            Ok(Some(other)) => eprintln!(
                "slurm-ckpt: rank {rank}: unexpected frame from the supervisor: {other:?}"
            ),
            Ok(None) if rank != 0 => return orphaned(rank, &sig_rx),
            Ok(None) => {
                eprintln!("slurm-ckpt: rank {rank}: the container supervisor ended without an exit code (see /var/log/slurm-ckpt on the node)");
                end_step();
                return 1;
            }
            Err(e) => {
                eprintln!("slurm-ckpt: rank {rank}: {e}");
                return 1;
            }
        }
    }
}

/// The supervisor of a non-launcher rank is gone (killed, crashed) but its container may run on
/// (its guard thaws it if a checkpoint was under way): the MPI world is still whole. Stay the
/// rank's task until the launcher rank reports the end of MPI (SIGUSR2), so the job ends as it
/// would have; Slurm's termination signals end the task at once.
fn orphaned(rank: u32, signals: &std::sync::mpsc::Receiver<i32>) -> i32 {
    eprintln!("slurm-ckpt: rank {rank}: the container supervisor is gone; the rank's container runs on unsupervised (no suspend or checkpoint for this job any more; see /var/log/slurm-ckpt on the node)");
    for sig in signals.iter() {
        match sig {
            SIGUSR2 => return 0,
            SIGTERM | SIGINT | SIGHUP => return 128 + sig,
            _ => {}
        }
    }
    1
}

/// The launcher rank lost its supervisor: nobody will tell the other ranks when MPI is done, so end
/// the step now (the job is restartable from its last complete generation) rather than let it hang
/// until its time limit.
fn end_step() {
    let (Ok(job), Ok(step)) = (
        std::env::var("SLURM_JOB_ID"),
        std::env::var("SLURM_STEP_ID"),
    ) else {
        return;
    };
    eprintln!("slurm-ckpt: rank 0: ending step {job}.{step}");
    let _ = std::process::Command::new("scancel")
        .arg(format!("{job}.{step}"))
        .status();
}
