//! `slurm-ckpt check-restore JOBID [--node NODE] [--json]` (root): could this node restore the
//! job's newest checkpoint? The same check a rank makes before it restores (compat.rs), asked
//! before anyone requeues the job. Exit 0: every rank could restore here; 2: some could not.
use slurm_ckpt::auth::SiteKey;
use slurm_ckpt::ckpt::{gen_name, Layout, Manifest};
use slurm_ckpt::compat::{self, Compat, Mismatch};
use slurm_ckpt::site::SiteConfig;

#[derive(clap::Args)]
pub struct Args {
    job: u32,
    /// The node to check (default: this host's short name). The CPU comes from the site's
    /// cpuinfo_path for that node and Docker's version from its daemon; kernel, CRIU and runc are
    /// this host's, so run it on the node itself for a strict check.
    #[arg(long)]
    node: Option<String>,
    #[arg(long)]
    json: bool,
    #[arg(long, default_value = "/etc/slurm/plugstack.conf")]
    plugstack: std::path::PathBuf,
}

/// One rank's answer.
#[derive(serde::Serialize)]
struct RankVerdict {
    rank: u32,
    taken_on: String,
    mismatches: Vec<Mismatch>,
}

pub fn main(a: Args) -> i32 {
    super::init_tracing(None);
    match run(&a) {
        Ok(true) => 0,
        Ok(false) => 2,
        Err(e) => {
            eprintln!("slurm-ckpt check-restore: {}", super::report(&e));
            1
        }
    }
}

/// The job's newest generation whose manifest verifies with the site key, across its directories.
fn newest_verified(
    site: &SiteConfig,
    job: u32,
    key: &SiteKey,
) -> slurm_ckpt::Result<Option<(Layout, Manifest)>> {
    let mut best: Option<(Layout, Manifest)> = None;
    for (_, _, l) in super::list::job_dirs(&site.ckpt_root)? {
        for g in l.generations().into_iter().rev() {
            let Ok(m) = l.load_verified(g, key) else {
                continue;
            };
            if m.job == job && best.as_ref().is_none_or(|(_, b)| m.created > b.created) {
                best = Some((l.clone(), m));
            }
            break;
        }
    }
    Ok(best)
}

fn this_node() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .map(|h| h.split('.').next().unwrap_or_default().to_string())
        .unwrap_or_default()
}

fn run(a: &Args) -> anyhow::Result<bool> {
    let site = super::site_config(&[], &a.plugstack)?;
    let secret = slurm_ckpt::site_secret::read(&site.key_file)?;
    let key = SiteKey::derive(&secret);
    let Some((layout, m)) = newest_verified(&site, a.job, &key)? else {
        anyhow::bail!(
            "job {} has no verified checkpoint generation under {}",
            a.job,
            site.ckpt_root.display()
        );
    };
    let node = a.node.clone().unwrap_or_else(this_node);
    let docker = super::runtime()?.block_on(async {
        let engine = slurm_ckpt::engine::Engine::connect(&site.socket_for(&node), &node).await;
        match engine {
            Ok(e) => e.daemon_info().await.map(|i| i.version).unwrap_or_default(),
            Err(_) => String::new(),
        }
    });
    let cpuinfo = site.cpuinfo_for(&node);
    let here: Compat = compat::probe(&cpuinfo, &docker, &site.runc_candidates());
    let verdicts: Vec<RankVerdict> = m
        .ranks
        .iter()
        .map(|r| RankVerdict {
            rank: r.rank,
            taken_on: r.node.clone(),
            mismatches: compat::check_node(&r.compat, &here, &cpuinfo, site.restore_compat),
        })
        .collect();
    let ok = verdicts.iter().all(|v| v.mismatches.is_empty());
    if a.json {
        let v = serde_json::json!({
            "job": a.job,
            "generation": m.generation,
            "path": layout.gen_dir(m.generation),
            "node": node,
            "mode": site.restore_compat.as_str(),
            "compatible": ok,
            "node_record": here,
            "ranks": verdicts,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ok);
    }
    println!(
        "job {} generation {} ({}), node {node}, restore_compat={}:",
        a.job,
        gen_name(m.generation),
        layout.gen_dir(m.generation).display(),
        site.restore_compat.as_str()
    );
    for v in &verdicts {
        if v.mismatches.is_empty() {
            println!(
                "  rank {} (taken on {}): can restore here",
                v.rank, v.taken_on
            );
        } else {
            println!(
                "  rank {} (taken on {}): cannot restore here: {}",
                v.rank,
                v.taken_on,
                compat::describe(&v.mismatches)
            );
        }
    }
    if !ok {
        // What a node needs, so the admin can pick one.
        if let Some(r) = m.ranks.iter().find(|r| !r.compat.cpu_vendor.is_empty()) {
            println!(
                "  a node needs: CPU vendor {}, page size {}, CPU flags ⊇ the {} recorded for rank {}",
                r.compat.cpu_vendor,
                r.compat.page_size,
                r.compat.cpu_flags.len(),
                r.rank
            );
        }
    }
    Ok(ok)
}
