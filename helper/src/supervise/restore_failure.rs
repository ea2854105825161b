//! What rank 0 does once a restore has failed on any rank (site `on_restore_failure`): the job
//! never starts from scratch silently, and the reason reaches `scontrol show job` (Comment) and
//! `slurm-ckpt list` (a generation set aside).
use crate::auth::SiteKey;
use crate::ckpt::{gen_name, BadGeneration, Layout};
use crate::error::Error;
use slurm_ckpt_site::RestoreFailure;

/// Seconds by which nodes' clocks may disagree.
const CLOCK_SLACK: u64 = 30;

/// The restore this rank was doing when it failed.
#[derive(Debug, Clone)]
pub(super) struct Restoring {
    /// Where the ranks of this attempt meet (failure markers).
    pub attempt: std::path::PathBuf,
    pub generation: u32,
    pub layout: Layout,
    /// When this attempt began (seconds since the epoch).
    pub started: u64,
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Action {
    /// A node could not restore the generation (compat.rs): that rank has already requeued the
    /// job with the node excluded; nothing more to do.
    RequeuedElsewhere,
    /// Let the job fail (the generation stays for a manual requeue).
    Fail,
    /// Requeue and hold it.
    Hold,
    /// Requeue it to restore the same generation again (on the nodes Slurm gives it).
    Requeue,
    /// Set the generation aside and requeue: the next start restores an older one.
    SetAsideAndRequeue,
}

/// Whether the failure says something about the generation itself (refused or unrestorable
/// images) rather than about where it was restored (a rank's node or supervisor lost, a daemon
/// gone, a wait that ran out).
pub(super) fn generation_at_fault(e: &Error) -> bool {
    match e {
        Error::Peer { gone: true, .. } | Error::Timeout { .. } | Error::DaemonGone { .. } => false,
        _ => !storage_refused(e),
    }
}

/// The storage itself refused this rank or, by its failure marker, another (full, over quota,
/// read-only, its client cut off): a restore has to write its attempt's markers there, and
/// failing to is no fault of the generation.
pub(super) fn storage_refused(e: &Error) -> bool {
    match e {
        Error::Io { err, .. } => storage_unusable(err),
        Error::Peer {
            storage_refused, ..
        } => *storage_refused,
        _ => false,
    }
}

fn storage_unusable(err: &std::io::Error) -> bool {
    use nix::errno::Errno;
    err.raw_os_error().is_some_and(|n| {
        [Errno::ENOSPC, Errno::EDQUOT, Errno::EROFS, Errno::ENOTCONN]
            .iter()
            .any(|e| *e as i32 == n)
    })
}

/// `older` is whether a complete generation older than the failed one exists: without one,
/// setting the failed one aside would leave nothing to restore, so the job is held instead.
pub(super) fn decide(policy: RestoreFailure, at_fault: bool, older: bool) -> Action {
    match policy {
        RestoreFailure::Fail => Action::Fail,
        RestoreFailure::Hold => Action::Hold,
        RestoreFailure::Previous if !at_fault => Action::Requeue,
        RestoreFailure::Previous if older => Action::SetAsideAndRequeue,
        RestoreFailure::Previous => Action::Hold,
    }
}

/// When the storage failed before a restart could look for its generation: nothing is known about
/// the generations, so nothing is set aside; the job is held unless the site lets it fail.
pub(super) fn decide_on_storage(policy: RestoreFailure) -> Action {
    match policy {
        RestoreFailure::Fail => Action::Fail,
        RestoreFailure::Hold | RestoreFailure::Previous => Action::Hold,
    }
}

/// `reason` as one bounded line without characters scontrol would split on.
fn one_line(reason: &str) -> String {
    reason
        .chars()
        .map(|c| if c.is_control() || c == '"' { ' ' } else { c })
        .take(200)
        .collect()
}

/// Rank 0, when the checkpoint storage failed while the restarted job looked for its checkpoints
/// (`Error::StorageAtRestart`): hold or fail the job, the reason in its Comment.
pub(super) async fn act_on_storage(job: u32, policy: RestoreFailure, e: &Error) -> Action {
    let action = decide_on_storage(policy);
    let what = match action {
        Action::Hold => "job held",
        _ => "job failed",
    };
    let text = format!(
        "slurm-ckpt: checkpoint storage unavailable at restart ({what}): {}",
        one_line(&e.to_string())
    );
    tracing::error!(job, ?action, "{text}");
    crate::slurm::set_comment(job, &text).await;
    if action == Action::Hold {
        crate::slurm::requeue(job, true).await;
    }
    action
}

/// The Comment Slurm shows for the job: one line, bounded, without characters scontrol would
/// split on.
pub(super) fn comment(generation: u32, action: &Action, reason: &str) -> String {
    let what = match action {
        Action::Fail => "job failed",
        Action::RequeuedElsewhere => "requeued away from an incompatible node",
        Action::Hold => "job held",
        Action::Requeue => "requeued to restore it again",
        Action::SetAsideAndRequeue => "set aside, requeued to restore the previous generation",
    };
    let reason = one_line(reason);
    format!(
        "slurm-ckpt: restore of {} failed ({what}): {reason}",
        gen_name(generation)
    )
}

/// Rank 0, after its restore failed (itself or through a peer): act on the site's choice.
pub(super) async fn act(
    job: u32,
    policy: RestoreFailure,
    r: &Restoring,
    e: &Error,
    key: &SiteKey,
) -> Action {
    let reason = e.to_string();
    let older = r.layout.generations().iter().any(|&g| g < r.generation);
    // A peer's refusal reaches rank 0 as a Peer error; its record says so (written before the
    // failure was published; nodes' clocks may differ by a little).
    let refused_here = matches!(e, Error::NodeIncompatible { .. })
        || crate::compat::refusals(&r.layout.job_dir)
            .iter()
            .any(|f| f.generation == r.generation && f.at + CLOCK_SLACK >= r.started);
    let action = if refused_here {
        Action::RequeuedElsewhere
    } else if storage_refused(e) {
        // A requeue would fail the same way until an admin makes room: as a storage away.
        decide_on_storage(policy)
    } else {
        decide(policy, generation_at_fault(e), older)
    };
    let text = comment(r.generation, &action, &reason);
    tracing::error!(job, generation = r.generation, ?action, "{text}");
    crate::slurm::set_comment(job, &text).await;
    match action {
        Action::Fail | Action::RequeuedElsewhere => {}
        Action::Hold => crate::slurm::requeue(job, true).await,
        Action::Requeue => crate::slurm::requeue(job, false).await,
        Action::SetAsideAndRequeue => {
            let bad = BadGeneration {
                generation: r.generation,
                job,
                reason,
                time: crate::state::now(),
            };
            match r.layout.mark_bad(&bad, key) {
                Ok(()) => crate::slurm::requeue(job, false).await,
                Err(e) => {
                    // Requeued without the marker it would fail on the same generation again.
                    tracing::error!(
                        "cannot set {} aside ({e}): holding the job",
                        gen_name(r.generation)
                    );
                    crate::slurm::requeue(job, true).await
                }
            }
        }
    }
    action
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previous_without_an_older_generation_holds() {
        assert_eq!(decide(RestoreFailure::Fail, true, true), Action::Fail);
        assert_eq!(decide(RestoreFailure::Hold, true, true), Action::Hold);
        assert_eq!(
            decide(RestoreFailure::Previous, true, true),
            Action::SetAsideAndRequeue
        );
        assert_eq!(decide(RestoreFailure::Previous, true, false), Action::Hold);
        // A lost node says nothing against the generation: restore it again elsewhere.
        assert_eq!(
            decide(RestoreFailure::Previous, false, false),
            Action::Requeue
        );
    }

    #[test]
    fn a_lost_peer_is_not_the_generations_fault() {
        let peer = |gone| Error::Peer {
            rank: 1,
            gone,
            storage_refused: false,
            why: "x".into(),
        };
        assert!(!generation_at_fault(&peer(true)));
        assert!(generation_at_fault(&peer(false)));
    }

    #[test]
    fn a_full_or_cut_off_storage_is_not_the_generations_fault() {
        // Seen on GlusterFS with a quota: the attempt directory could not be created.
        let io = |errno: nix::errno::Errno| Error::Io {
            path: "/ckpt/u/7/.restore-g0001-j7-1".into(),
            err: std::io::Error::from_raw_os_error(errno as i32),
        };
        use nix::errno::Errno;
        for e in [Errno::EDQUOT, Errno::ENOSPC, Errno::EROFS, Errno::ENOTCONN] {
            assert!(!generation_at_fault(&io(e)), "{e}");
        }
        // A missing or unreadable image is the generation's.
        assert!(generation_at_fault(&io(Errno::ENOENT)));
        assert!(generation_at_fault(&io(Errno::EIO)));
        // Another rank's, told through its failure marker.
        let peer = Error::Peer {
            rank: 2,
            gone: false,
            storage_refused: true,
            why: "rank 2 failed: Disk quota exceeded".into(),
        };
        assert!(!generation_at_fault(&peer) && storage_refused(&peer));
    }

    #[test]
    fn storage_away_at_restart_holds_unless_the_site_says_fail() {
        assert_eq!(decide_on_storage(RestoreFailure::Fail), Action::Fail);
        assert_eq!(decide_on_storage(RestoreFailure::Hold), Action::Hold);
        assert_eq!(decide_on_storage(RestoreFailure::Previous), Action::Hold);
    }

    #[test]
    fn comment_is_one_bounded_line() {
        let c = comment(3, &Action::Hold, &format!("a \"b\"\nc{}", "x".repeat(500)));
        assert!(c.starts_with("slurm-ckpt: restore of g0003 failed (job held): a  b  c"));
        assert!(
            !c.contains('\n') && !c.contains('"') && c.len() < 300,
            "{c}"
        );
    }
}
