//! `slurm-ckpt image check IMAGE`: does an image meet the rank-container requirements?
use clap::{Args as ClapArgs, Subcommand};
use slurm_ckpt::engine::Engine;
use slurm_ckpt::image_check;

#[derive(Subcommand)]
pub enum ImageCmd {
    /// Check that IMAGE has what a rank container needs (sshd, ssh, the MPI launcher, ...).
    Check(CheckArgs),
}

#[derive(ClapArgs)]
pub struct CheckArgs {
    pub image: String,
    /// MPI family the jobs will use: mpich, openmpi, none, or both.
    #[arg(long, default_value = "both")]
    pub mpi: String,
    /// Also check that this program exists in the image (e.g. /opt/app/bin/solver).
    #[arg(long)]
    pub program: Option<String>,
    /// Node whose Docker daemon to ask (for a per-node socket such as unix:///run/%n/docker.sock).
    #[arg(long)]
    pub node: Option<String>,
    #[arg(long, default_value = "/etc/slurm/plugstack.conf")]
    pub plugstack: std::path::PathBuf,
    /// The verdict per MPI family as JSON (image, mpi, usable, missing, unsupported).
    #[arg(long)]
    pub json: bool,
}

pub fn main(cmd: ImageCmd) -> i32 {
    let ImageCmd::Check(a) = cmd;
    super::init_tracing(None);
    let run = || -> anyhow::Result<()> {
        let site = super::site_config(&[], &a.plugstack)?;
        let node = match &a.node {
            Some(n) => n.clone(),
            None => nix::unistd::gethostname()?
                .to_string_lossy()
                .split('.')
                .next()
                .unwrap_or_default()
                .to_string(),
        };
        let families: Vec<&str> = if a.mpi == "both" {
            vec!["mpich", "openmpi"]
        } else {
            vec![a.mpi.as_str()]
        };
        let rt = super::runtime()?;
        rt.block_on(async {
            let engine = Engine::connect(&site.socket_for(&node), &node).await?;
            let mut bad = Vec::new();
            let mut verdicts = Vec::new();
            for mpi in families {
                let r = image_check::check(&engine, &a.image, mpi, a.program.as_deref()).await?;
                if a.json {
                    verdicts.push(serde_json::json!({
                        "image": a.image, "mpi": mpi, "usable": r.ok(), "missing": r.missing,
                        "unsupported": r.unsupported,
                    }));
                } else if r.ok() {
                    println!("{}: usable for {mpi} jobs", a.image);
                } else if r.unsupported.is_some() {
                    println!("{}: NOT usable for {mpi} jobs: {}", a.image, r.error());
                } else {
                    println!(
                        "{}: NOT usable for {mpi} jobs: missing {}",
                        a.image,
                        r.missing.join("; ")
                    );
                }
                if !r.ok() {
                    bad.push(mpi);
                }
            }
            if a.json && super::print_json(&verdicts) != 0 {
                anyhow::bail!("cannot print the result");
            }
            if bad.is_empty() {
                Ok(())
            } else {
                anyhow::bail!(
                    "image {} fails the check for {} (requirements: docs/IMAGES.md)",
                    a.image,
                    bad.join(", ")
                )
            }
        })
    };
    super::exit_code("image check", run())
}
