//! A rank's side of preemption windows (`crate::window`): rank 0 checks at job start whether a
//! checkpoint will fit; every rank on SIGTERM declines a dump that cannot finish. Every rank reads
//! the same records (rank 0's `window.json`, the node speeds, the job's status records, the newest
//! manifest), so all ranks decide alike.
use super::{save, send, Rank};
use crate::engine::ContainerEngine;
use crate::error::{Error, Result};
use crate::protocol::Frame;
use crate::site::PreemptWindow;
use crate::window::{
    estimate, job_window_path, load_speed, on_terminate, too_short, JobWindow, NodeSpeed,
    OnTerminate,
};
use tokio::sync::mpsc;

impl<E: ContainerEngine> Rank<'_, E> {
    /// Bytes one rank's checkpoint will move: the newest generation's largest rank (what the job
    /// really uses), else the task's memory limit (0 when Slurm allots none).
    fn ckpt_bytes(&self) -> u64 {
        let prev = self
            .layout
            .as_ref()
            .and_then(|l| l.latest())
            .and_then(|m| m.ranks.iter().map(|r| r.raw_bytes).max())
            .unwrap_or(0);
        if prev > 0 {
            return prev;
        }
        self.a.mem_mb.unwrap_or(0).saturating_mul(1 << 20)
    }

    fn speeds(&self, nodes: &[String]) -> Vec<NodeSpeed> {
        nodes
            .iter()
            .filter_map(|n| load_speed(&self.a.site.ckpt_root, n))
            .collect()
    }

    /// Rank 0 at job start: compare the estimate with the job's windows, say so if it does not fit
    /// (or fail, per the site), and return a checkpoint interval to turn on (`periodic:MIN`).
    pub(super) async fn check_window(&mut self, tx: &mpsc::Sender<Frame>) -> Result<Option<u32>> {
        let a = self.a;
        let (windows, nodes) = match crate::slurm::job_windows(a.job).await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!("preemption window of job {} unknown: {e}", a.job);
                return Ok(None);
            }
        };
        let est = estimate(self.ckpt_bytes(), &self.speeds(&nodes));
        let warning = est.and_then(|e| too_short(e, &windows));
        let record = JobWindow {
            windows,
            estimate: est,
            warning: warning.clone(),
        };
        let path = job_window_path(&a.site.ckpt_root, a.job);
        if let Err(e) = crate::ckpt::write_json_durable(&path, &record) {
            tracing::warn!("{e}");
        }
        tracing::info!(estimate = ?est, "checkpoint estimate at job start");
        let Some(why) = warning else { return Ok(None) };
        let forced = match a.site.preempt_window {
            PreemptWindow::Error => return Err(Error::CheckpointWontFit { why }),
            PreemptWindow::Periodic(m) if a.ckpt_interval.is_none() => Some(m),
            _ => None,
        };
        let mut text = why.clone();
        match forced {
            Some(m) => text.push_str(&format!(
                "; periodic checkpoints every {m} min turned on (site preempt_window)"
            )),
            None if a.ckpt_interval.is_none() => text.push_str(&format!(
                "; a preempted or requeued job may restart from scratch: consider {}",
                a.site.flag("container-ckpt-interval")
            )),
            None => {}
        }
        tracing::warn!("{text}");
        send(
            tx,
            Frame::Stderr(format!("slurm-ckpt: warning: {text}\n").into_bytes()),
        )
        .await;
        self.st.event(format!("warning: {text}"));
        self.st.window_warning = Some(text);
        save(&mut self.st, &a.site.ckpt_root);
        Ok(forced)
    }

    /// On SIGTERM: can a checkpoint still finish before Slurm kills the job? The time left is the
    /// longer of the job's windows (the rank cannot tell a preemption from a requeue here) plus
    /// the site timeout, for which the epilog waits for supervisors still checkpointing.
    pub(super) fn terminate_decision(&self) -> OnTerminate {
        let a = self.a;
        let Some(jw) = std::fs::read(job_window_path(&a.site.ckpt_root, a.job))
            .ok()
            .and_then(|t| serde_json::from_slice::<JobWindow>(&t).ok())
        else {
            return OnTerminate::Dump;
        };
        let mut nodes: Vec<String> = crate::state::load_job(&a.site.ckpt_root, a.job)
            .unwrap_or_default()
            .into_iter()
            .map(|r| r.node)
            .collect();
        nodes.sort();
        nodes.dedup();
        if nodes.is_empty() {
            nodes.push(a.node.clone());
        }
        let est = estimate(self.ckpt_bytes(), &self.speeds(&nodes));
        let left = jw
            .windows
            .preemption()
            .or(jw.windows.kill_wait)
            .map(|w| w.saturating_add(a.site.timeout_secs) as f64);
        on_terminate(est, left)
    }

    /// Say why no checkpoint is taken on this SIGTERM.
    pub(super) async fn skip_checkpoint(
        &mut self,
        tx: &mpsc::Sender<Frame>,
        estimate: f64,
        left: f64,
    ) {
        let a = self.a;
        let point = self
            .layout
            .as_ref()
            .and_then(|l| l.generations().last().copied())
            .map_or(
                "it has no generation and will start over".to_string(),
                |g| format!("{} stays its restart point", crate::ckpt::gen_name(g)),
            );
        let text = format!(
            "not starting a checkpoint that needs about {estimate:.0} s with {left:.0} s left before Slurm kills the job; {point}"
        );
        tracing::warn!("{text}");
        if a.rank == 0 {
            send(
                tx,
                Frame::Stderr(format!("slurm-ckpt: {text}\n").into_bytes()),
            )
            .await;
        }
        self.st.event(text);
        save(&mut self.st, &a.site.ckpt_root);
    }
}
