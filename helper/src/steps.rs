//! The `srun` steps of a batch script in one checkpoint directory. Step 0 keeps its generations
//! in the directory itself (as before steps were told apart), step S > 0 in `<dir>/step-<S>/`:
//! Slurm numbers a script's steps in order, and a requeued or resumed script runs them again with
//! the same numbers, so each finds its own generations.
//!
//! When such a script runs again from the top, a step that had already finished is not run
//! again: its recorded exit code is returned. A step counts as finished when its closed marker
//! (`ckpt::Closed`, with the exit code) is newer than its own last start (`ckpt::Started`), and as
//! part of the interrupted run when some other step started at or after that end and has not
//! ended since. A directory whose steps all ended (the whole script finished) therefore runs every
//! step again, as a requeue of a finished job always has.
use crate::auth::SiteKey;
use crate::ckpt::{Closed, Layout, Started};
use std::collections::BTreeMap;
use std::path::Path;

/// Name prefix of the directories of steps > 0.
pub const STEP_PREFIX: &str = "step-";

/// Seconds by which another step's start may precede a step's end and still count as after it:
/// the markers carry the clocks of the nodes that ran each step's rank 0.
const CLOCK_SLACK: u64 = 10;

/// The directory name (below the user's area) of `step`'s generations in directory `dir`.
pub fn step_subdir(dir: &str, step: u32) -> String {
    match step {
        0 => dir.to_string(),
        s => format!("{dir}/{STEP_PREFIX}{s}"),
    }
}

/// What a step's directory says about its last run (authentic markers only).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepRun {
    pub started: Option<Started>,
    pub closed: Option<Closed>,
}

impl StepRun {
    /// Ended normally after its last start: the closed marker, if it carries an exit code.
    fn finished(&self) -> Option<&Closed> {
        let c = self.closed.as_ref().filter(|c| c.exit_code.is_some())?;
        match &self.started {
            Some(s) if s.time > c.time => None,
            _ => Some(c),
        }
    }

    /// Started and not ended since: the start time.
    fn interrupted(&self) -> Option<u64> {
        let s = self.started.as_ref()?;
        match &self.closed {
            Some(c) if c.time >= s.time => None,
            _ => Some(s.time),
        }
    }
}

/// The steps' runs in the directory whose step 0 lives at `top`.
pub fn load_runs(top: &Path, key: &SiteKey) -> BTreeMap<u32, StepRun> {
    let run = |dir: &Path| {
        let l = Layout {
            user_dir: top.to_path_buf(),
            job_dir: dir.to_path_buf(),
        };
        StepRun {
            started: l.started(key),
            closed: l.closed(key).unwrap_or_else(|e| {
                tracing::warn!("{e}: ignored");
                None
            }),
        }
    };
    let mut runs = BTreeMap::from([(0, run(top))]);
    for e in std::fs::read_dir(top).into_iter().flatten().flatten() {
        let name = e.file_name();
        let Some(step) = name
            .to_str()
            .and_then(|n| n.strip_prefix(STEP_PREFIX))
            .and_then(|n| n.parse::<u32>().ok())
            .filter(|s| *s > 0)
        else {
            continue;
        };
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            runs.insert(step, run(&e.path()));
        }
    }
    runs
}

/// The closed marker of `step` if the step finished in the run this script continues, so that it
/// is not run again (module doc). `instance`: this job's; markers of other instances count only
/// when the job resumes a directory it named (`resume`).
pub fn finished_in_interrupted_run<'a>(
    step: u32,
    runs: &'a BTreeMap<u32, StepRun>,
    instance: Option<&str>,
    resume: bool,
) -> Option<&'a Closed> {
    let c = runs.get(&step)?.finished()?;
    if !resume && c.instance.as_deref() != instance {
        return None;
    }
    runs.iter()
        .filter(|(s, _)| **s != step)
        .filter_map(|(_, r)| r.interrupted())
        .any(|started| started + CLOCK_SLACK >= c.time)
        .then_some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    const I: &str = "9f8e7d6c5b4a39281706f5e4d3c2b1a0";
    const J: &str = "1a2b3c4d5e6f708192a3b4c5d6e7f801";

    fn started(instance: &str, step: u32, time: u64) -> Option<Started> {
        Some(Started {
            instance: Some(instance.into()),
            job: 7,
            step,
            time,
        })
    }

    fn closed(instance: &str, step: u32, time: u64, code: Option<i32>) -> Option<Closed> {
        Some(Closed {
            instance: Some(instance.into()),
            job: 7,
            step,
            time,
            through: 0,
            exit_code: code,
        })
    }

    #[test]
    fn step_directories() {
        assert_eq!(step_subdir("run", 0), "run");
        assert_eq!(step_subdir("run", 2), "run/step-2");
        assert_eq!(step_subdir("1234", 1), "1234/step-1");
    }

    #[test]
    fn a_finished_step_of_an_interrupted_script_is_not_run_again() {
        // Step 0 ended with 3 at t=20; step 1 started at t=20 and was interrupted.
        let mut runs = BTreeMap::from([
            (
                0,
                StepRun {
                    started: started(I, 0, 10),
                    closed: closed(I, 0, 20, Some(3)),
                },
            ),
            (
                1,
                StepRun {
                    started: started(I, 1, 20),
                    closed: None,
                },
            ),
        ]);
        let skip = |runs: &BTreeMap<u32, StepRun>, step, inst, resume| {
            finished_in_interrupted_run(step, runs, Some(inst), resume).and_then(|c| c.exit_code)
        };
        assert_eq!(skip(&runs, 0, I, false), Some(3));
        // The interrupted step itself runs (it restores).
        assert_eq!(skip(&runs, 1, I, false), None);
        // Another job's markers: only for a job that resumes the directory it named.
        assert_eq!(skip(&runs, 0, J, false), None);
        assert_eq!(skip(&runs, 0, J, true), Some(3));
        // Once step 1 has ended too, the script finished: a rerun runs every step.
        runs.get_mut(&1).unwrap().closed = closed(I, 1, 30, Some(0));
        assert_eq!(skip(&runs, 0, I, false), None);
        // Step 0 started again after its end (a rerun of it was interrupted): it runs (restores).
        runs.get_mut(&1).unwrap().closed = None;
        runs.get_mut(&0).unwrap().started = started(I, 0, 25);
        assert_eq!(skip(&runs, 0, I, false), None);
        // A closed marker of an older helper has no exit code: the step runs.
        runs.get_mut(&0).unwrap().started = started(I, 0, 10);
        runs.get_mut(&0).unwrap().closed = closed(I, 0, 20, None);
        assert_eq!(skip(&runs, 0, I, false), None);
        // A step interrupted before step 0 ended (an earlier run) does not count; a start a few
        // seconds before the end does (another node's clock).
        runs.get_mut(&0).unwrap().closed = closed(I, 0, 20, Some(0));
        runs.get_mut(&1).unwrap().started = started(I, 1, 15);
        assert_eq!(skip(&runs, 0, I, false), Some(0));
        runs.get_mut(&1).unwrap().started = started(I, 1, 5);
        assert_eq!(skip(&runs, 0, I, false), None);
    }

    #[test]
    fn runs_are_read_from_the_step_directories() {
        let d = tempfile::tempdir().unwrap();
        let key = SiteKey::derive(b"secret");
        let top = d.path().join("run");
        let l0 = Layout::new(d.path(), "", "run");
        let l2 = Layout::new(d.path(), "", &step_subdir("run", 2));
        std::fs::create_dir_all(&l2.job_dir).unwrap();
        std::fs::create_dir_all(top.join("step-x")).unwrap();
        let s = started(I, 2, 5).unwrap();
        l2.mark_started(&s, &key).unwrap();
        let c = closed(I, 0, 4, Some(1)).unwrap();
        l0.close(&c, &key).unwrap();
        let runs = load_runs(&top, &key);
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[&0].closed.as_ref(), Some(&c));
        assert_eq!(runs[&2].started.as_ref(), Some(&s));
        // A forged marker is not read.
        std::fs::write(l2.started_path(), b"{}").unwrap();
        assert_eq!(load_runs(&top, &key)[&2].started, None);
        let skipped = finished_in_interrupted_run(0, &runs, Some(I), false);
        assert_eq!(skipped.and_then(|c| c.exit_code), Some(1));
    }
}
