//! Preemption windows: will a checkpoint fit in the time Slurm gives a job between SIGTERM and
//! SIGKILL? Each node's checkpoint speed is kept from past checkpoints (`<ckpt_root>/.state/.nodes/
//! <node>.json`); a job's estimate is its ranks' memory at the slowest of its nodes' speeds. At job
//! start rank 0 compares it with the partition's GraceTime (preemption) and the cluster's KillWait
//! (requeue, scancel, time limit) and warns (site `preempt_window`); on SIGTERM every rank declines
//! to start a dump that cannot finish, so the last complete generation stays the restart point.
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One node's measured checkpoint speed: a fixed part (freeze, barriers, commit) and a rate for
/// the bytes, each a running average of past checkpoints of ranks on it (ranks dumping at once on
/// a node share its bandwidth, so the rate is per rank as jobs there ran).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeSpeed {
    pub node: String,
    pub bytes_per_second: f64,
    pub overhead_seconds: f64,
    pub samples: u32,
    pub updated: u64,
}

/// Weight of the newest sample in the running averages.
const NEWEST: f64 = 0.5;
/// Samples below this size say more about overhead than about bandwidth: their rate is not used.
const MIN_RATE_BYTES: u64 = 8 << 20;

pub fn speed_path(ckpt_root: &Path, node: &str) -> PathBuf {
    crate::state::state_root(ckpt_root)
        .join(".nodes")
        .join(format!("{node}.json"))
}

pub fn load_speed(ckpt_root: &Path, node: &str) -> Option<NodeSpeed> {
    serde_json::from_slice(&std::fs::read(speed_path(ckpt_root, node)).ok()?).ok()
}

/// The node's record after one more checkpoint of a rank: `bytes` moved in `move_seconds` (dump,
/// pack, seal), the rest of its `total_seconds` fixed.
pub fn updated_speed(
    old: Option<NodeSpeed>,
    node: &str,
    bytes: u64,
    move_seconds: f64,
    total_seconds: f64,
    now: u64,
) -> NodeSpeed {
    let overhead = (total_seconds - move_seconds).max(0.0);
    let rate = (bytes >= MIN_RATE_BYTES && move_seconds > 0.0).then(|| bytes as f64 / move_seconds);
    let avg = |old: f64, new: f64| old * (1.0 - NEWEST) + new * NEWEST;
    match old {
        Some(o) => NodeSpeed {
            node: node.into(),
            bytes_per_second: match rate {
                Some(r) if o.bytes_per_second > 0.0 => avg(o.bytes_per_second, r),
                Some(r) => r,
                None => o.bytes_per_second,
            },
            overhead_seconds: avg(o.overhead_seconds, overhead),
            samples: o.samples.saturating_add(1),
            updated: now,
        },
        None => NodeSpeed {
            node: node.into(),
            bytes_per_second: rate.unwrap_or(0.0),
            overhead_seconds: overhead,
            samples: 1,
            updated: now,
        },
    }
}

/// Record one checkpoint of a rank on `node` (atomic replace; ranks of a node race harmlessly).
pub fn record_speed(
    ckpt_root: &Path,
    node: &str,
    bytes: u64,
    move_seconds: f64,
    total_seconds: f64,
) -> Result<()> {
    let path = speed_path(ckpt_root, node);
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let new = updated_speed(
        load_speed(ckpt_root, node),
        node,
        bytes,
        move_seconds,
        total_seconds,
        crate::state::now(),
    );
    let tmp = dir.join(format!(".{node}.json.{}", std::process::id()));
    crate::ckpt::write_json_durable(&tmp, &new)?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))
}

/// Seconds a checkpoint of ranks of `bytes` each is expected to take at the slowest of `speeds`
/// (None without any record: nothing measured yet).
pub fn estimate(bytes: u64, speeds: &[NodeSpeed]) -> Option<f64> {
    speeds
        .iter()
        .map(|s| {
            let moving = if s.bytes_per_second > 0.0 {
                bytes as f64 / s.bytes_per_second
            } else {
                0.0
            };
            s.overhead_seconds + moving
        })
        .reduce(f64::max)
}

/// The time Slurm gives a job between SIGTERM and SIGKILL.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Windows {
    pub partition: String,
    /// The partition's GraceTime when it preempts jobs by requeue or cancel (None: it does not).
    pub grace: Option<u64>,
    /// The cluster's KillWait.
    pub kill_wait: Option<u64>,
}

impl Windows {
    /// From `scontrol -o show partition P` and `scontrol show config`.
    pub fn parse(partition: &HashMap<String, String>, config: &str) -> Windows {
        let preempts = partition.get("PreemptMode").is_some_and(|m| {
            m.split(',')
                .any(|x| x.eq_ignore_ascii_case("REQUEUE") || x.eq_ignore_ascii_case("CANCEL"))
        });
        Windows {
            partition: partition.get("PartitionName").cloned().unwrap_or_default(),
            grace: partition
                .get("GraceTime")
                .and_then(|g| g.parse().ok())
                .filter(|_| preempts),
            kill_wait: parse_kill_wait(config),
        }
    }

    /// Preemption: SIGTERM at its start, the job is requeued after GraceTime, which sends SIGTERM
    /// again and SIGKILL KillWait later.
    pub fn preemption(&self) -> Option<u64> {
        Some(self.grace? + self.kill_wait.unwrap_or(0))
    }
}

/// `KillWait = 30 sec` of `scontrol show config`.
pub fn parse_kill_wait(config: &str) -> Option<u64> {
    config.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == "KillWait").then(|| v.split_whitespace().next()?.parse().ok())?
    })
}

/// What does not fit, for the job's output and `status`.
pub fn too_short(estimate: f64, w: &Windows) -> Option<String> {
    let mut out = Vec::new();
    if let Some(p) = w.preemption().filter(|p| estimate > *p as f64) {
        out.push(format!(
            "partition {}'s preemption window (GraceTime+KillWait {p} s)",
            w.partition
        ));
    }
    if let Some(k) = w.kill_wait.filter(|k| estimate > *k as f64) {
        out.push(format!("KillWait ({k} s) of a requeue or scancel"));
    }
    (!out.is_empty()).then(|| {
        format!(
            "a checkpoint of this job needs about {estimate:.0} s (its memory at its nodes' measured speed), more than {}",
            out.join(" and ")
        )
    })
}

/// Whether to start a checkpoint on SIGTERM with `left` seconds until it can no longer finish.
#[derive(Debug, Clone, PartialEq)]
pub enum OnTerminate {
    Dump,
    /// It cannot finish: the newest complete generation stays the restart point.
    Skip {
        estimate: f64,
        left: f64,
    },
}

pub fn on_terminate(estimate: Option<f64>, left: Option<f64>) -> OnTerminate {
    match (estimate, left) {
        (Some(estimate), Some(left)) if estimate > left => OnTerminate::Skip { estimate, left },
        _ => OnTerminate::Dump,
    }
}

/// What rank 0 found at job start, for every rank's decision on SIGTERM
/// (`<ckpt_root>/.state/<job>/window.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct JobWindow {
    pub windows: Windows,
    /// The estimate at job start (None: no node of the job has a record yet).
    pub estimate: Option<f64>,
    pub warning: Option<String>,
}

pub fn job_window_path(ckpt_root: &Path, job: u32) -> PathBuf {
    crate::state::job_state_dir(ckpt_root, job).join("window.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn speed(bps: f64, overhead: f64) -> NodeSpeed {
        NodeSpeed {
            node: "n".into(),
            bytes_per_second: bps,
            overhead_seconds: overhead,
            samples: 1,
            updated: 0,
        }
    }

    #[test]
    fn the_estimate_takes_the_slowest_node() {
        const GB: u64 = 1 << 30;
        let speeds = [speed(GB as f64, 2.0), speed(GB as f64 / 4.0, 1.0)];
        assert_eq!(estimate(8 * GB, &speeds), Some(33.0));
        assert_eq!(estimate(GB, &[]), None);
        // Only overhead known (small checkpoints so far): a lower bound.
        assert_eq!(estimate(GB, &[speed(0.0, 3.0)]), Some(3.0));
    }

    #[test]
    fn speeds_are_running_averages_and_small_samples_set_no_rate() {
        let first = updated_speed(None, "n1", 100 << 20, 1.0, 3.0, 7);
        assert_eq!(first.bytes_per_second, (100 << 20) as f64);
        assert_eq!(first.overhead_seconds, 2.0);
        let second = updated_speed(Some(first.clone()), "n1", 100 << 20, 2.0, 2.0, 8);
        assert_eq!(second.bytes_per_second, 0.75 * (100 << 20) as f64);
        assert_eq!((second.overhead_seconds, second.samples), (1.0, 2));
        let small = updated_speed(Some(second.clone()), "n1", 4096, 0.5, 1.0, 9);
        assert_eq!(small.bytes_per_second, second.bytes_per_second);
    }

    #[test]
    fn windows_from_scontrol() {
        let p = crate::slurm::parse_oneliner(
            "PartitionName=lowrq PreemptMode=REQUEUE GraceTime=60 State=UP",
        );
        let config = "Configuration data as of 2026-12-02T11:00:00\nJobRequeue              = 1\nKillWait                = 30 sec\nKillOnBadExit           = 0\n";
        let w = Windows::parse(&p, config);
        assert_eq!((w.grace, w.kill_wait), (Some(60), Some(30)));
        assert_eq!(w.preemption(), Some(90));
        let off = crate::slurm::parse_oneliner("PartitionName=high PreemptMode=OFF GraceTime=60");
        assert_eq!(Windows::parse(&off, config).grace, None);
        assert_eq!(parse_kill_wait("KillWait = x sec"), None);
    }

    #[test]
    fn a_checkpoint_too_long_for_a_window_is_named() {
        let w = Windows {
            partition: "lowrq".into(),
            grace: Some(60),
            kill_wait: Some(30),
        };
        assert_eq!(too_short(20.0, &w), None);
        let why = too_short(45.0, &w).unwrap();
        assert!(
            why.contains("about 45 s") && why.contains("KillWait (30 s)"),
            "{why}"
        );
        assert!(!why.contains("GraceTime"), "{why}");
        let why = too_short(100.0, &w).unwrap();
        assert!(
            why.contains("lowrq's preemption window (GraceTime+KillWait 90 s)"),
            "{why}"
        );
    }

    #[test]
    fn on_sigterm_a_dump_that_cannot_finish_is_not_started() {
        assert_eq!(on_terminate(Some(10.0), Some(30.0)), OnTerminate::Dump);
        assert_eq!(
            on_terminate(Some(40.0), Some(30.0)),
            OnTerminate::Skip {
                estimate: 40.0,
                left: 30.0
            }
        );
        // Nothing measured or no window known: try.
        assert_eq!(on_terminate(None, Some(1.0)), OnTerminate::Dump);
        assert_eq!(on_terminate(Some(1e9), None), OnTerminate::Dump);
    }
}
