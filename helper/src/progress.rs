//! Per-rank progress of a checkpoint as `slurm-ckpt checkpoint` shows it: bytes written of the
//! expected, rate, ETA. Pure: the caller measures (the rank's image directory, the expectation
//! its supervisor recorded) and renders; this formats and estimates.

use std::time::Duration;

/// Where one rank is in the checkpoint asked for.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "phase", rename_all = "lowercase")]
pub enum Phase {
    /// Its supervisor has not started this checkpoint yet (freeze barrier, dump order, slot).
    Waiting,
    /// Dumping: `bytes` written so far (None: the images go to a directory on the rank's node
    /// this command cannot see), `expected` from the container's memory at the start.
    Dumping {
        bytes: Option<u64>,
        expected: Option<u64>,
        secs: f64,
    },
    Done,
    Failed,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RankProgress {
    pub rank: u32,
    pub node: String,
    #[serde(flatten)]
    pub phase: Phase,
}

/// Total size of the files under `dir` (None when it cannot be read): a dump's images so far.
pub fn dir_bytes(dir: &std::path::Path) -> Option<u64> {
    let mut total = 0u64;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let Ok(md) = e.path().symlink_metadata() else {
            continue;
        };
        if md.is_dir() {
            total += dir_bytes(&e.path()).unwrap_or(0);
        } else if md.is_file() {
            total += md.len();
        }
    }
    Some(total)
}

/// `n` bytes for people: 1023 B, 1.5 KiB, 812.0 MiB, 1.2 GiB.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// Bytes per second so far (None before anything can be said: no time or nothing written).
pub fn rate(bytes: u64, secs: f64) -> Option<f64> {
    (secs > 0.0 && bytes > 0).then(|| bytes as f64 / secs)
}

/// Time left at `rate` for what remains of `expected` (zero once past it: the expectation is
/// memory in use, and a dump may be a little larger).
pub fn eta(bytes: u64, expected: u64, rate: f64) -> Option<Duration> {
    if rate <= 0.0 || !rate.is_finite() {
        return None;
    }
    let left = expected.saturating_sub(bytes) as f64;
    Some(Duration::from_secs_f64(left / rate))
}

/// `4s`, `2m05s`, `1h02m`.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs_f64().ceil() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s / 60 % 60),
    }
}

/// One line for a rank: `rank 3 (node2): 812.0 MiB of 1.2 GiB (66%), 95.3 MiB/s, ETA 4s`.
pub fn line(p: &RankProgress) -> String {
    let what = match &p.phase {
        Phase::Waiting => "waiting to dump".to_string(),
        Phase::Done => "done".to_string(),
        Phase::Failed => "failed".to_string(),
        Phase::Dumping {
            bytes: None,
            expected,
            secs,
        } => {
            let of = expected.map_or(String::new(), |e| format!(" (~{})", human_bytes(e)));
            format!(
                "dumping{of} for {}",
                human_duration(Duration::from_secs_f64(*secs))
            )
        }
        Phase::Dumping {
            bytes: Some(b),
            expected,
            secs,
        } => {
            let mut s = human_bytes(*b);
            if let Some(e) = expected.filter(|e| *e > 0) {
                let pct = (*b as f64 * 100.0 / e as f64).min(100.0);
                s.push_str(&format!(" of {} ({pct:.0}%)", human_bytes(e)));
            }
            match rate(*b, *secs) {
                Some(r) => {
                    s.push_str(&format!(", {}/s", human_bytes(r as u64)));
                    if let Some(t) = expected.and_then(|e| eta(*b, e, r)) {
                        s.push_str(&format!(", ETA {}", human_duration(t)));
                    }
                }
                None => s.push_str(", starting"),
            }
            s
        }
    };
    format!("rank {} ({}): {what}", p.rank, p.node)
}

/// Whether plain (non-terminal) output should print `now` given what it printed last for the
/// rank: on a change of phase, or every `every` while dumping.
pub fn plain_due(last: Option<(&Phase, f64)>, now: &Phase, now_secs: f64, every: f64) -> bool {
    match last {
        None => true,
        Some((prev, at)) => {
            std::mem::discriminant(prev) != std::mem::discriminant(now)
                || (matches!(now, Phase::Dumping { .. }) && now_secs - at >= every)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_of_image_dirs() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("a/b")).unwrap();
        std::fs::write(t.path().join("a/pages-1.img"), [0u8; 100]).unwrap();
        std::fs::write(t.path().join("a/b/x"), [0u8; 23]).unwrap();
        assert_eq!(dir_bytes(t.path()), Some(123));
        assert_eq!(dir_bytes(&t.path().join("none")), None);
    }

    #[test]
    fn bytes_and_durations() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(812 * 1024 * 1024), "812.0 MiB");
        assert_eq!(human_bytes(1288490188), "1.2 GiB");
        assert_eq!(human_duration(Duration::from_millis(3200)), "4s");
        assert_eq!(human_duration(Duration::from_secs(125)), "2m05s");
        assert_eq!(human_duration(Duration::from_secs(3720)), "1h02m");
    }

    #[test]
    fn rate_and_eta() {
        assert_eq!(rate(0, 1.0), None);
        assert_eq!(rate(100, 0.0), None);
        assert_eq!(rate(100, 2.0), Some(50.0));
        assert_eq!(eta(100, 300, 50.0), Some(Duration::from_secs(4)));
        // Past the expectation: nothing left, not negative.
        assert_eq!(eta(400, 300, 50.0), Some(Duration::ZERO));
        assert_eq!(eta(1, 2, 0.0), None);
    }

    #[test]
    fn lines() {
        let p = |phase| RankProgress {
            rank: 3,
            node: "node2".into(),
            phase,
        };
        let mib = 1024 * 1024;
        assert_eq!(
            line(&p(Phase::Dumping {
                bytes: Some(100 * mib),
                expected: Some(300 * mib),
                secs: 2.0
            })),
            "rank 3 (node2): 100.0 MiB of 300.0 MiB (33%), 50.0 MiB/s, ETA 4s"
        );
        assert_eq!(
            line(&p(Phase::Dumping {
                bytes: Some(0),
                expected: None,
                secs: 0.5
            })),
            "rank 3 (node2): 0 B, starting"
        );
        assert_eq!(
            line(&p(Phase::Dumping {
                bytes: None,
                expected: Some(2048),
                secs: 61.0
            })),
            "rank 3 (node2): dumping (~2.0 KiB) for 1m01s"
        );
        assert_eq!(line(&p(Phase::Waiting)), "rank 3 (node2): waiting to dump");
        assert_eq!(line(&p(Phase::Done)), "rank 3 (node2): done");
        let j = serde_json::to_value(p(Phase::Done)).unwrap();
        assert_eq!(j["phase"], "done");
        assert_eq!(j["rank"], 3);
    }

    #[test]
    fn plain_output_on_change_or_every_interval() {
        let d = |b| Phase::Dumping {
            bytes: Some(b),
            expected: None,
            secs: 0.0,
        };
        assert!(plain_due(None, &Phase::Waiting, 0.0, 5.0));
        assert!(!plain_due(
            Some((&Phase::Waiting, 0.0)),
            &Phase::Waiting,
            9.0,
            5.0
        ));
        assert!(plain_due(Some((&Phase::Waiting, 0.0)), &d(1), 1.0, 5.0));
        assert!(!plain_due(Some((&d(1), 1.0)), &d(2), 3.0, 5.0));
        assert!(plain_due(Some((&d(1), 1.0)), &d(2), 6.0, 5.0));
        assert!(plain_due(Some((&d(1), 1.0)), &Phase::Done, 2.0, 5.0));
    }
}
