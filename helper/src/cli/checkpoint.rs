//! `slurm-ckpt checkpoint JOBID [--requeue]`: ask a running container job for a checkpoint.
//! Slurm carries the request (and checks that the caller may signal the job): SIGUSR1 to the job's
//! steps makes every rank's relay ask its supervisor for a checkpoint that leaves the job running;
//! `--requeue` requeues the job, whose SIGTERM makes the supervisors checkpoint before it stops.
//! While it waits it shows each rank's progress (bytes written of expected, rate, ETA): redrawn
//! on a terminal, plain lines otherwise, none with `--quiet` or `--json`.
use slurm_ckpt::progress::{self, Phase, RankProgress};
use slurm_ckpt::state::{self, CheckpointOutcome, CheckpointResult};
use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    job: u32,
    /// Checkpoint, stop and requeue the job (it restarts from this checkpoint).
    #[arg(long)]
    requeue: bool,
    /// Seconds to wait for every rank to report the checkpoint.
    #[arg(long, default_value_t = 300)]
    wait: u64,
    /// No progress, only the result (or the error).
    #[arg(long, short)]
    quiet: bool,
    /// The result as JSON (no progress).
    #[arg(long)]
    json: bool,
    #[arg(long, default_value = "/etc/slurm/plugstack.conf")]
    plugstack: std::path::PathBuf,
}

/// The newest generation a rank has reported on (0: none yet).
fn last_gen(r: &state::RankState) -> u32 {
    r.last_checkpoint.as_ref().map_or(0, |c| c.generation)
}

/// What the ranks' records say about the checkpoint asked for.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Every rank completed one (the first rank's result, to report).
    Done(CheckpointResult),
    /// A rank's failed: the checkpoint is over for all.
    Failed(CheckpointResult),
    Waiting,
}

/// Clocks of the nodes and of the host asking may differ by this much (seconds).
const CLOCK_SLACK: u64 = 2;

/// Whether a rank's result `c` answers the request made at `since` (seconds since the epoch), the
/// rank's newest generation then being `after`. Generations first: times have one-second
/// resolution, and a checkpoint requested within a second of the previous one must not count the
/// previous one. Times too: a rank whose record could not be written (its storage was away) writes
/// its last result late, when the next checkpoint begins, and that older result is not this one's;
/// and a rank still busy with an earlier attempt when the request came (waiting for a peer that
/// gave up) ends it after the request: an attempt begun before the request is not its answer.
fn answers(c: &CheckpointResult, after: u32, since: u64) -> bool {
    c.generation > after && c.began.unwrap_or(c.at) + CLOCK_SLACK >= since
}

/// Decide from the ranks' records, given each rank's newest generation before the request and
/// the request's time.
fn verdict(ranks: &[state::RankState], before: &HashMap<u32, u32>, since: u64) -> Verdict {
    let newer: Vec<Option<&CheckpointResult>> = ranks
        .iter()
        .map(|r| {
            let after = before.get(&r.rank).copied().unwrap_or(0);
            r.last_checkpoint
                .as_ref()
                .filter(|c| answers(c, after, since))
        })
        .collect();
    let failed = newer
        .iter()
        .flatten()
        .find(|c| matches!(c.outcome, CheckpointOutcome::Failed { .. }));
    if let Some(c) = failed {
        return Verdict::Failed((*c).clone());
    }
    match newer.first() {
        Some(Some(first)) if newer.iter().all(Option::is_some) => Verdict::Done((*first).clone()),
        _ => Verdict::Waiting,
    }
}

/// The job's state records, giving up after `look` on a storage that does not answer.
fn load_records(
    root: &Path,
    job: u32,
    look: Duration,
) -> slurm_ckpt::Result<Vec<state::RankState>> {
    let r = root.to_path_buf();
    let dir = state::job_state_dir(root, job);
    slurm_ckpt::storage::bounded(look, "reading the state records in", &dir, move || {
        state::load_job(&r, job)
    })
}

/// How often the wait asks Slurm whether the job still runs.
const JOB_LOOK_EVERY: Duration = Duration::from_secs(2);
/// Job states in which ranks may still report a checkpoint.
const ALIVE: [&str; 3] = ["RUNNING", "SUSPENDED", "CONFIGURING"];

/// The job's state as Slurm says it; None when Slurm does not answer (then the wait goes on).
fn job_state(job: u32) -> Option<String> {
    let out = Command::new("scontrol")
        .args(["-o", "show", "job", &job.to_string()])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    slurm_ckpt::slurm::parse_oneliner(&text).remove("JobState")
}

/// Each rank's phase in the checkpoint asked for (`before`: each rank's newest generation then).
fn phases(
    ranks: &[state::RankState],
    before: &HashMap<u32, u32>,
    since: u64,
    ckpt_root: &Path,
) -> Vec<RankProgress> {
    let now = state::now();
    ranks
        .iter()
        .map(|r| {
            let after = before.get(&r.rank).copied().unwrap_or(0);
            let phase = match (&r.last_checkpoint, &r.dumping) {
                (Some(c), _) if answers(c, after, since) => match c.outcome {
                    CheckpointOutcome::Complete => Phase::Done,
                    CheckpointOutcome::Failed { .. } => Phase::Failed,
                },
                (_, Some(d)) if d.generation > after => Phase::Dumping {
                    // The supervisor's measure; else the images themselves, when this user may
                    // read them (they are in the root-only user area).
                    bytes: state::read_dump_bytes(&state::dump_bytes_path(
                        ckpt_root, r.job, r.rank,
                    ))
                    .or_else(|| d.shared.then(|| progress::dir_bytes(&d.dir)).flatten()),
                    expected: d.expected_bytes,
                    secs: now.saturating_sub(d.started) as f64,
                },
                _ => Phase::Waiting,
            };
            RankProgress {
                rank: r.rank,
                node: r.node.clone(),
                phase,
            }
        })
        .collect()
}

/// Shows progress: a block redrawn in place on a terminal, or plain lines when something
/// changed (and every few seconds while dumping).
struct Display {
    tty: bool,
    drawn: usize,
    last: HashMap<u32, (Phase, f64)>,
    t0: Instant,
}

/// Plain output repeats a dumping rank's line this often (seconds).
const PLAIN_EVERY: f64 = 5.0;

impl Display {
    fn new() -> Self {
        Display {
            tty: std::io::stdout().is_terminal(),
            drawn: 0,
            last: HashMap::new(),
            t0: Instant::now(),
        }
    }

    fn show(&mut self, ranks: &[RankProgress]) {
        let mut out = std::io::stdout().lock();
        if self.tty {
            // Up to the block's first line, then rewrite each line.
            if self.drawn > 0 {
                let _ = write!(out, "\x1b[{}A", self.drawn);
            }
            for r in ranks {
                let _ = writeln!(out, "\x1b[2K{}", progress::line(r));
            }
            self.drawn = ranks.len();
        } else {
            let now = self.t0.elapsed().as_secs_f64();
            for r in ranks {
                let last = self.last.get(&r.rank).map(|(p, at)| (p, *at));
                if progress::plain_due(last, &r.phase, now, PLAIN_EVERY) {
                    let _ = writeln!(out, "{}", progress::line(r));
                    self.last.insert(r.rank, (r.phase.clone(), now));
                }
            }
        }
        let _ = out.flush();
    }
}

pub fn main(a: Args) -> i32 {
    super::init_tracing(None);
    let run = || -> anyhow::Result<()> {
        let site = super::site_config(&[], &a.plugstack)?;
        let look = Duration::from_secs(site.timeout_secs);
        let ranks = load_records(&site.ckpt_root, a.job, look)?;
        if ranks.is_empty() {
            anyhow::bail!("job {} has no running rank containers", a.job);
        }
        let before: HashMap<u32, u32> = ranks.iter().map(|r| (r.rank, last_gen(r))).collect();
        let since = state::now();
        let status = if a.requeue {
            Command::new("scontrol")
                .args(["requeue", &a.job.to_string()])
                .status()?
        } else {
            Command::new("scancel")
                .args(["--signal=USR1", &a.job.to_string()])
                .status()?
        };
        if !status.success() {
            anyhow::bail!("Slurm refused to signal job {} ({status})", a.job);
        }
        let end = Instant::now() + Duration::from_secs(a.wait);
        let mut next_look = Instant::now() + JOB_LOOK_EVERY;
        let mut display = (!a.quiet && !a.json).then(Display::new);
        let mut next_draw = Instant::now();
        loop {
            let ranks = load_records(&site.ckpt_root, a.job, look)?;
            let v = verdict(&ranks, &before, since);
            if let Some(d) = display.as_mut() {
                // The final state too, so every rank's last line says how it ended.
                if Instant::now() >= next_draw || v != Verdict::Waiting {
                    d.show(&phases(&ranks, &before, since, &site.ckpt_root));
                    next_draw = Instant::now() + Duration::from_millis(500);
                }
            }
            match v {
                Verdict::Failed(e) => anyhow::bail!(
                    "job {}: {e} (the job keeps running from its previous state)",
                    a.job
                ),
                Verdict::Done(c) => {
                    if a.json {
                        let out = serde_json::json!({
                            "job": a.job,
                            "ranks": ranks.len(),
                            "result": c,
                            "requeued": a.requeue,
                        });
                        if super::print_json(&out) != 0 {
                            anyhow::bail!("cannot print the result");
                        }
                    } else {
                        println!("job {}: {c} ({} ranks)", a.job, ranks.len());
                    }
                    return Ok(());
                }
                Verdict::Waiting => {}
            }
            // A job that ended (its supervisors killed, its nodes lost) reports nothing more.
            if !a.requeue && Instant::now() >= next_look {
                next_look = Instant::now() + JOB_LOOK_EVERY;
                if let Some(st) = job_state(a.job).filter(|s| !ALIVE.contains(&s.as_str())) {
                    anyhow::bail!(
                        "job {} is {st}: it ended before every rank reported its checkpoint",
                        a.job
                    );
                }
            }
            if Instant::now() >= end {
                anyhow::bail!(
                    "job {}: not every rank reported a checkpoint within {}s",
                    a.job,
                    a.wait
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    super::exit_code("checkpoint", run())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rank(rank: u32, last: Option<(u32, Option<&str>)>) -> state::RankState {
        let mut st: state::RankState = serde_json::from_value(serde_json::json!({
            "job": 1, "step": 0, "rank": rank, "user": "u", "node": "n", "container": "c",
            "container_id": "i", "hostname": "h", "ip": "1.2.3.4", "mac": "m", "image": "img",
            "state": "running"
        }))
        .unwrap();
        st.last_checkpoint = last.map(|(generation, failed)| CheckpointResult {
            generation,
            at: 100,
            began: Some(100),
            outcome: match failed {
                None => CheckpointOutcome::Complete,
                Some(r) => CheckpointOutcome::Failed { reason: r.into() },
            },
        });
        st
    }

    #[test]
    fn phases_of_ranks() {
        let t = tempfile::tempdir().unwrap();
        let before = HashMap::from([(0, 1), (1, 1), (2, 1), (3, 1)]);
        let mut dumping = rank(1, Some((1, None)));
        dumping.dumping = Some(state::Dumping {
            generation: 2,
            started: state::now(),
            dir: t.path().join("nowhere"),
            shared: false,
            expected_bytes: Some(1000),
        });
        std::fs::create_dir_all(state::job_state_dir(t.path(), 1)).unwrap();
        state::write_dump_bytes(&state::dump_bytes_path(t.path(), 1, 1), 400).unwrap();
        let mut old_dump = rank(3, Some((1, None)));
        old_dump.dumping = dumping.dumping.clone().map(|mut d| {
            d.generation = 1;
            d
        });
        let ranks = [
            rank(0, Some((2, None))),
            dumping,
            rank(2, Some((2, Some("disk full")))),
            old_dump,
        ];
        let p: Vec<Phase> = phases(&ranks, &before, 100, t.path())
            .into_iter()
            .map(|r| r.phase)
            .collect();
        assert_eq!(p[0], Phase::Done);
        assert!(matches!(
            p[1],
            Phase::Dumping {
                bytes: Some(400),
                expected: Some(1000),
                ..
            }
        ));
        assert_eq!(p[2], Phase::Failed);
        assert_eq!(p[3], Phase::Waiting);
    }

    #[test]
    fn only_newer_generations_count() {
        let ranks = [rank(0, Some((1, None))), rank(1, Some((1, None)))];
        let before: HashMap<u32, u32> = ranks.iter().map(|r| (r.rank, last_gen(r))).collect();
        assert_eq!(before[&0], 1);
        assert_eq!(verdict(&ranks, &before, 100), Verdict::Waiting);
        assert_eq!(last_gen(&rank(0, None)), 0);
        // Nothing before: generation 1 counts.
        match verdict(&ranks, &HashMap::new(), 100) {
            Verdict::Done(c) => assert_eq!(c.to_string(), "checkpoint g0001 complete"),
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn every_rank_must_complete_and_one_failure_ends_it() {
        let before = HashMap::from([(0, 1), (1, 1), (2, 1)]);
        let some = [
            rank(0, Some((2, None))),
            rank(1, Some((1, None))),
            rank(2, None),
        ];
        assert_eq!(verdict(&some, &before, 100), Verdict::Waiting);
        let one_failed = [
            rank(0, Some((2, None))),
            rank(1, Some((2, Some("disk full")))),
            rank(2, None),
        ];
        match verdict(&one_failed, &before, 100) {
            Verdict::Failed(c) => assert_eq!(c.to_string(), "checkpoint g0002 failed: disk full"),
            v => panic!("{v:?}"),
        }
        // A failure of an older generation is not this request's.
        let old_failure = [rank(0, Some((1, Some("old")))), rank(1, Some((2, None)))];
        assert_eq!(
            verdict(&old_failure, &HashMap::from([(0, 1), (1, 1)]), 100),
            Verdict::Waiting
        );
        let all = [rank(0, Some((2, None))), rank(1, Some((2, None)))];
        assert!(matches!(verdict(&all, &before, 100), Verdict::Done(c) if c.generation == 2));
        assert_eq!(verdict(&[], &before, 100), Verdict::Waiting);
    }

    #[test]
    fn a_result_written_late_is_not_this_requests() {
        // Rank 1's g0002 failed at 100 while its record could not be written; the record shows
        // it only once the next checkpoint, asked for at 110, begins.
        let before = HashMap::from([(0, 1), (1, 1)]);
        let late = [rank(0, None), rank(1, Some((2, Some("storage away"))))];
        assert_eq!(verdict(&late, &before, 110), Verdict::Waiting);
        // Within the clocks' slack it still counts (nodes' clocks may be behind the host's).
        assert!(matches!(verdict(&late, &before, 102), Verdict::Failed(_)));
    }

    #[test]
    fn an_attempt_begun_before_the_request_is_not_its_answer() {
        // Rank 1 was still in g0002 (begun at 90, waiting for a rank 0 that had given up) when
        // the request came at 100; it ended that attempt at 105, after the request.
        let before = HashMap::from([(0, 2), (1, 1)]);
        let mut busy = rank(1, Some((2, Some("rank 0 stopped responding"))));
        if let Some(c) = busy.last_checkpoint.as_mut() {
            c.at = 105;
            c.began = Some(90);
        }
        assert_eq!(
            verdict(&[rank(0, None), busy.clone()], &before, 100),
            Verdict::Waiting
        );
        // A record of before `began` was kept: its end time decides, as before.
        if let Some(c) = busy.last_checkpoint.as_mut() {
            c.began = None;
        }
        assert!(matches!(
            verdict(&[rank(0, None), busy], &before, 100),
            Verdict::Failed(_)
        ));
    }
}
