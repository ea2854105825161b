use slurm_ckpt::{progress, state};

#[derive(clap::Args)]
pub struct Args {
    /// Only this job.
    job: Option<u32>,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
    #[arg(long, default_value = "/etc/slurm/plugstack.conf")]
    plugstack: std::path::PathBuf,
}

pub fn main(a: Args) -> i32 {
    super::init_tracing(None);
    let run = || -> anyhow::Result<()> {
        let site = super::site_config(&[], &a.plugstack)?;
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
