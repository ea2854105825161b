//! Rank 0 keeps the job's user's own checkpoint index up to date (`crate::user_index`): after
//! each checkpoint, restore, failure and at the job's end. Best effort and off the checkpoint's
//! critical path: each update runs on a blocking thread after the previous one (so they land in
//! order), bounded by the child's timeout, and only logs a warning when it fails.
use super::SuperviseArgs;
use crate::ckpt::Layout;
use crate::user_index::{self, Failure, Notes, Subject};
use crate::user_paths::Creds;
use std::time::Duration;
use tokio::task::JoinHandle;

/// How long the job's end waits for the last update.
const FINISH_WAIT: Duration = Duration::from_secs(15);

pub(super) struct IndexUpdates {
    /// Rank 0 of a checkpointing job only (and never in unit tests: no helper binary to run).
    on: bool,
    pub(super) notes: Notes,
    pending: Option<JoinHandle<()>>,
}

impl IndexUpdates {
    pub(super) fn new(on: bool) -> Self {
        IndexUpdates {
            on,
            notes: Notes::default(),
            pending: None,
        }
    }

    /// A failure to show the user with the next update.
    pub(super) fn failed(&mut self, what: &str, generation: Option<u32>, reason: String) {
        self.notes.last_failure = Some(failure(what, generation, reason));
    }

    /// Start an update in the background, after the one before.
    pub(super) fn update(&mut self, a: &SuperviseArgs, user: &str, layout: &Layout) {
        if !self.on {
            return;
        }
        let job = Job::new(a, user, layout, self.notes.clone());
        let before = self.pending.take();
        self.pending = Some(tokio::spawn(async move {
            if let Some(b) = before {
                let _ = b.await;
            }
            job.run().await;
        }));
    }

    /// The last update, for the caller to wait for once the rank's exit is reported (`finish`).
    pub(super) fn take_pending(&mut self) -> Option<JoinHandle<()>> {
        self.pending.take()
    }
}

/// Wait (bounded) for the last update: the supervisor is about to exit.
pub(super) async fn finish(pending: Option<JoinHandle<()>>) {
    if let Some(p) = pending {
        if tokio::time::timeout(FINISH_WAIT, p).await.is_err() {
            tracing::warn!("user index: last update still running after {FINISH_WAIT:?}");
        }
    }
}

pub(super) fn failure(what: &str, generation: Option<u32>, reason: String) -> Failure {
    Failure {
        what: what.into(),
        generation,
        reason,
        time: crate::state::now(),
    }
}

/// One update, with everything it needs owned (it runs on its own thread).
pub(super) struct Job {
    root: std::path::PathBuf,
    /// Who root is on the storage (site `storage_root_uid`).
    root_uid: u32,
    creds: Creds,
    who: Subject,
    layout: Layout,
    notes: Notes,
}

impl Job {
    pub(super) fn new(a: &SuperviseArgs, user: &str, layout: &Layout, notes: Notes) -> Self {
        Job {
            root: a.site.ckpt_root.clone(),
            root_uid: a.site.storage_root_uid,
            creds: Creds {
                name: user.to_string(),
                uid: a.uid,
                gid: a.gid,
            },
            who: Subject {
                job: a.job,
                step: a.step,
                user: user.to_string(),
            },
            layout: layout.clone(),
            notes,
        }
    }

    pub(super) async fn run(self) {
        let job = self.who.job;
        let res = tokio::task::spawn_blocking(move || {
            user_index::update(
                &self.root,
                self.root_uid,
                &self.creds,
                &self.who,
                &self.layout,
                &self.notes,
            )
        })
        .await;
        match res {
            Ok(Ok(())) => tracing::debug!(job, "user index updated"),
            Ok(Err(e)) => tracing::warn!("user index of job {job} not updated: {e}"),
            Err(e) => tracing::warn!("user index of job {job} not updated: {e}"),
        }
    }
}
