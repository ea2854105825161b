//! A rank's first step in every checkpoint: wait until its container can be dumped at all (no
//! process with a full descriptor table, `crate::settle`), then meet every other rank ("settled")
//! before anyone blocks its network or freezes.
//!
//! Why every rank, every checkpoint, before any hold. The process that cannot be dumped is sshd's
//! pre-authentication child on a peer rank; its handshake ends only while the ssh client (rank 0's
//! launcher or readiness probe) runs and both ends reach each other. Under freeze-all every rank
//! freezes at once, and under the other policies rank 0 dumps (frozen) while the others wait cut
//! off: a rank that waited alone, after any other rank had frozen or blocked its network, would
//! wait in vain. So the wait happens first everywhere and an all-rank barrier ends it.
//!
//! Alternatives weighed (docs/ARCHITECTURE.md, "Faults"):
//! - Only in the first seconds of a run: cheaper afterwards, but every rank would have to decide
//!   alike from a clock (the request reaches the nodes up to seconds apart, and a rank on the other
//!   side of the boundary leaves the others waiting in a barrier it never enters), and a job script
//!   may start another `mpirun` (new handshakes) at any time.
//! - Retrying the whole checkpoint after this failure: the failed attempt has already held the job
//!   (and under cf-* dumped rank 0), and all ranks would have to agree on the failure's kind from
//!   failed markers that appear at different times.
//!
//! The barrier's cost is one marker per rank and one poll (50 ms) after the last rank arrives
//! (measured in tests_sequence.rs: `settle` of the phases); the ranks' arrival spread it also
//! absorbs would otherwise be spent later, with containers already held, in the first barrier of
//! the order. The local look is one /proc scan when the container is clear.
use super::Rank;
use crate::engine::ContainerEngine;
use crate::settle::{full_tables, settle, Settled, Wait};
use std::time::Duration;

/// The local wait's bound: a handshake takes well under a second; past this the checkpoint goes
/// on regardless (and CRIU says what failed).
const BOUND: Duration = Duration::from_secs(4);
const POLL: Duration = Duration::from_millis(50);
/// A run this young may still be launching: its rank containers see one handshake after another
/// (readiness probe, then the launcher's own), so a container must stay clear for [`QUIET`].
const LAUNCHING: Duration = Duration::from_secs(60);
const QUIET: Duration = Duration::from_millis(600);

impl<E: ContainerEngine> Rank<'_, E> {
    /// Wait (bounded) until no process of the container has a full descriptor table. Never fails:
    /// a rank that cannot look goes on as before.
    pub(super) async fn settle_container(&mut self, was_frozen: bool) {
        let init = match self.engine.init_pid(&self.id).await {
            Ok(Some(pid)) => pid,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!("settle: no pid for {}: {e}", self.st.container);
                return;
            }
        };
        let quiet = match self.running_since {
            Some(t) if t.elapsed() < LAUNCHING => QUIET,
            _ => Duration::ZERO,
        };
        // A container Slurm suspended cannot finish a handshake: one look, no wait.
        let bound = if was_frozen { Duration::ZERO } else { BOUND };
        let w = Wait {
            bound,
            poll: POLL,
            quiet: if was_frozen { Duration::ZERO } else { quiet },
        };
        match settle(self.procs.as_ref(), init, w).await {
            Settled::Clear => {}
            Settled::Waited { waited, held } => tracing::info!(
                "waited {:.2}s for a full descriptor table to clear (an ssh handshake?): {}",
                waited.as_secs_f64(),
                list(&held)
            ),
            Settled::Gave { waited, held } => {
                let text = format!(
                    "checkpointing although a process still has a full descriptor table after {:.1}s (CRIU cannot dump it): {}",
                    waited.as_secs_f64(),
                    list(&held)
                );
                tracing::warn!("{text}");
                self.st.event(text);
            }
        }
    }

    /// Just before the dump, the container held: a full table now (a handshake that began after
    /// the ranks settled) makes CRIU fail; say which process, for the error that follows.
    pub(super) async fn check_dumpable(&self) {
        if let Ok(Some(init)) = self.engine.init_pid(&self.id).await {
            let held = full_tables(self.procs.as_ref(), init);
            if !held.is_empty() {
                tracing::warn!(
                    "a process has a full descriptor table at the dump (CRIU cannot infect it): {}",
                    list(&held)
                );
            }
        }
    }
}

fn list(held: &[crate::settle::Holder]) -> String {
    held.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
