use slurm_ckpt::{progress, state};

#[derive(clap::Args)]
pub struct Args {
    /// Only this job.
    job: Option<u32>,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
    /// One line per rank even for jobs of more than SUMMARY_ABOVE ranks (those get a line per
    /// node otherwise).
    #[arg(long)]
    ranks: bool,
    #[arg(long, default_value = "/etc/slurm/plugstack.conf")]
    plugstack: std::path::PathBuf,
}

/// A user's `status`: what their own index says of their jobs (user_index.rs). Each rank's live
/// state is in root-only records: that part needs root.
fn user_status(a: &Args, root: &std::path::Path) -> anyhow::Result<()> {
    let uid = nix::unistd::getuid();
    let user = nix::unistd::User::from_uid(uid)?
        .ok_or_else(|| anyhow::anyhow!("user id {uid} has no passwd entry"))?;
    let dir = slurm_ckpt::user_index::index_dir(root, &user.name);
    let entries = match slurm_ckpt::user_index::read_all(&dir) {
        Ok(e) => e,
        Err(slurm_ckpt::Error::Io { err, .. }) if err.kind() == std::io::ErrorKind::NotFound => {
            vec![]
        }
        Err(e) => return Err(e.into()),
    };
    let entries: Vec<_> = entries
        .into_iter()
        .filter(|e| a.job.is_none_or(|j| j == e.job))
        .collect();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(());
    }
    for e in &entries {
        let step = if e.step > 0 {
            format!(" step {}", e.step)
        } else {
            String::new()
        };
        println!("job {}{step} ({}):", e.job, e.dir);
        for line in slurm_ckpt::user_index::describe(e) {
            println!("  {line}");
        }
    }
    if entries.is_empty() {
        println!(
            "no checkpoints of {} recorded in your index",
            a.job.map_or("your jobs".into(), |j| format!("job {j}"))
        );
    }
    eprintln!("slurm-ckpt status: the containers' live state of each rank needs root; this is your jobs' checkpoint record (as in slurm-ckpt list)");
    Ok(())
}

pub fn main(a: Args) -> i32 {
    super::init_tracing(None);
    let run = || -> anyhow::Result<()> {
        let site = super::site_config(&[], &a.plugstack)?;
        super::exit_if_storage_hangs(
            "status",
            &site.ckpt_root,
            std::time::Duration::from_secs(site.timeout_secs),
        );
        if !nix::unistd::geteuid().is_root() {
            return user_status(&a, &site.ckpt_root);
        }
        let jobs = match a.job {
            Some(j) => vec![j],
            None => state::list_jobs(&site.ckpt_root)?,
        };
        let mut all = Vec::new();
        for j in jobs {
            all.extend(state::load_job(&site.ckpt_root, j)?);
        }
        if a.json {
            println!("{}", serde_json::to_string_pretty(&all)?);
            return Ok(());
        }
        let mut per_job: std::collections::HashMap<u32, usize> = Default::default();
        for s in &all {
            *per_job.entry(s.job).or_default() += 1;
        }
        // Large jobs: a line per node, naming the ranks that have something to say.
        let (big, all): (Vec<_>, Vec<_>) = all
            .into_iter()
            .partition(|s| !a.ranks && per_job.get(&s.job).copied().unwrap_or(0) > SUMMARY_ABOVE);
        if !big.is_empty() {
            print_node_summaries(&big);
        }
        if all.is_empty() {
            return Ok(());
        }
        println!(
            "{:>8} {:>4} {:<10} {:<12} {:<14} {:<15} {:<17} {:<8}",
            "JOB", "RANK", "NODE", "CONTAINER", "HOSTNAME", "IP", "MAC", "STATE"
        );
        for s in &all {
            let id = &s.container_id[..12.min(s.container_id.len())];
            println!(
                "{:>8} {:>4} {:<10} {:<12} {:<14} {:<15} {:<17} {:<8}",
                s.job, s.rank, s.node, id, s.hostname, s.ip, s.mac, s.state
            );
            if let (Some(c), Some(p)) = (&s.last_checkpoint, &s.last_checkpoint_phases) {
                println!(
                    "{:>13} checkpoint {}: {}",
                    "",
                    slurm_ckpt::ckpt::gen_name(c.generation),
                    p.line()
                );
            }
            if let Some(p) = &s.last_restore {
                println!(
                    "{:>13} restore from {}: {}",
                    "",
                    slurm_ckpt::ckpt::gen_name(p.generation),
                    p.line()
                );
            }
            if let Some(why) = &s.window_warning {
                println!("{:>13} warning: {why}", "");
            }
            if let Some(why) = &s.restore_refused {
                println!("{:>13} restore refused: {why}", "");
            }
            if let Some(e) = s.events.last() {
                println!("{:>13} last event: {} ({})", "", e.what, e.at);
            }
            // A restore under way (or where a failed one stopped).
            if let Some(r) = &s.restoring {
                println!(
                    "{:>13} restore from {}: {} for {} s ({} MB of images)",
                    "",
                    slurm_ckpt::ckpt::gen_name(r.generation),
                    r.phase,
                    state::now().saturating_sub(r.since),
                    r.bytes >> 20
                );
            }
            // A dump under way: how far (the supervisor's measure, world-readable).
            if let Some(d) = &s.dumping {
                let p = progress::RankProgress {
                    rank: s.rank,
                    node: s.node.clone(),
                    phase: progress::Phase::Dumping {
                        bytes: state::read_dump_bytes(&state::dump_bytes_path(
                            &site.ckpt_root,
                            s.job,
                            s.rank,
                        )),
                        expected: d.expected_bytes,
                        secs: state::now().saturating_sub(d.started) as f64,
                    },
                };
                println!(
                    "{:>13} checkpoint {}: {}",
                    "",
                    slurm_ckpt::ckpt::gen_name(d.generation),
                    progress::line(&p)
                );
            }
        }
        Ok(())
    };
    super::exit_code("status", run())
}

/// Jobs with more ranks than this are shown a line per node (`--ranks` for every rank).
const SUMMARY_ABOVE: usize = 16;

/// One node's share of a job.
#[derive(Debug, PartialEq)]
struct NodeSummary {
    job: u32,
    node: String,
    ranks: Vec<u32>,
    /// Each state and how many ranks are in it, by name.
    states: std::collections::BTreeMap<String, usize>,
    /// Ranks with a warning, a refused restore, or a checkpoint or restore under way.
    notable: Vec<u32>,
}

fn summarize(recs: &[state::RankState]) -> Vec<NodeSummary> {
    let mut by: std::collections::BTreeMap<(u32, &str), NodeSummary> = Default::default();
    for s in recs {
        let n = by.entry((s.job, &s.node)).or_insert_with(|| NodeSummary {
            job: s.job,
            node: s.node.clone(),
            ranks: vec![],
            states: Default::default(),
            notable: vec![],
        });
        n.ranks.push(s.rank);
        *n.states.entry(s.state.to_string()).or_default() += 1;
        if s.window_warning.is_some()
            || s.restore_refused.is_some()
            || s.restoring.is_some()
            || s.dumping.is_some()
        {
            n.notable.push(s.rank);
        }
    }
    by.into_values()
        .map(|mut n| {
            n.ranks.sort_unstable();
            n.notable.sort_unstable();
            n
        })
        .collect()
}

/// `0-3,8,10-11`.
fn rank_ranges(ranks: &[u32]) -> String {
    let mut out: Vec<String> = vec![];
    let mut i = 0;
    while i < ranks.len() {
        let mut j = i;
        while j + 1 < ranks.len() && ranks[j + 1] == ranks[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            ranks[i].to_string()
        } else {
            format!("{}-{}", ranks[i], ranks[j])
        });
        i = j + 1;
    }
    out.join(",")
}

fn print_node_summaries(recs: &[state::RankState]) {
    println!(
        "{:>8} {:<10} {:>5} {:<24} {:<30} NOTABLE",
        "JOB", "NODE", "RANKS", "WHICH", "STATES"
    );
    for n in summarize(recs) {
        let states: Vec<String> = n.states.iter().map(|(s, c)| format!("{s}:{c}")).collect();
        println!(
            "{:>8} {:<10} {:>5} {:<24} {:<30} {}",
            n.job,
            n.node,
            n.ranks.len(),
            rank_ranges(&n.ranks),
            states.join(" "),
            if n.notable.is_empty() {
                "-".to_string()
            } else {
                format!("ranks {} (status JOB --ranks)", rank_ranges(&n.notable))
            }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_compress_runs() {
        assert_eq!(rank_ranges(&[0, 1, 2, 3, 8, 10, 11]), "0-3,8,10-11");
        assert_eq!(rank_ranges(&[5]), "5");
        assert_eq!(rank_ranges(&[]), "");
    }

    #[test]
    fn summary_is_per_job_and_node() {
        let rec = |rank: u32, node: &str, st: state::ContainerState| {
            let mut v: state::RankState = serde_json::from_value(serde_json::json!({
                "job": 7, "step": 0, "rank": rank, "user": "u", "node": node,
                "container": "c", "container_id": "id", "hostname": "h", "ip": "10.88.1.0",
                "mac": "m", "image": "i", "state": "running", "events": []
            }))
            .unwrap();
            v.state = st;
            v
        };
        let mut recs: Vec<_> = (0..40)
            .map(|r| {
                rec(
                    r,
                    if r % 2 == 0 { "node1" } else { "node2" },
                    state::ContainerState::Running,
                )
            })
            .collect();
        recs[3].state = state::ContainerState::Frozen;
        recs[5].restore_refused = Some("cpu".into());
        let s = summarize(&recs);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].node, "node1");
        assert_eq!(s[0].ranks.len(), 20);
        assert_eq!(s[1].states.values().sum::<usize>(), 20);
        assert_eq!(s[1].states.len(), 2);
        assert_eq!(s[1].notable, vec![5]);
    }
}
