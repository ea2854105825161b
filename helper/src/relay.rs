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
                eprintln!("slurm-ckpt relay: signal handlers: {e}");
                return 1;
            }
        };
    let mut to_sup = match sock.try_clone() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("slurm-ckpt relay: {e}");
            return 1;
        }
    };
    std::thread::spawn(move || {
        for sig in signals.forever() {
            let frame = match sig {
                SIGTSTP => Frame::Suspend,
                SIGCONT => Frame::Resume,
                SIGUSR1 => Frame::Checkpoint,
                // Sent by the launcher rank's supervisor when MPI is done; the launcher ignores it.
                SIGUSR2 if rank == 0 => continue,
                SIGUSR2 => Frame::Finish,
                _ => Frame::Terminate,
            };
            if write_frame(&mut to_sup, &frame).is_err() {
                break;
            }
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
            Ok(Some(other)) => eprintln!("slurm-ckpt relay: unexpected frame {other:?}"),
            Ok(None) => {
                eprintln!("slurm-ckpt: rank {rank}: the container supervisor ended without an exit code (see /var/log/slurm-ckpt on the node)");
                return 1;
            }
            Err(e) => {
                eprintln!("slurm-ckpt: rank {rank}: {e}");
                return 1;
            }
        }
    }
}
