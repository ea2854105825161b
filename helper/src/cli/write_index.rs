use slurm_ckpt::user_index::{child, ChildOp};

/// `slurm-ckpt write-index`: run by the supervisor (or gc) as root; drops to the job's user for
/// good, then writes the entry on stdin into the user's own index directory, or forgets the
/// entries of a removed checkpoint directory (user_index.rs).
#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    uid: u32,
    #[arg(long)]
    gid: u32,
    /// The user's index directory (`<ckpt_root>/.users/<user>`).
    #[arg(long)]
    dir: std::path::PathBuf,
    /// Write the entry read from stdin under this name (`<job>.json`).
    #[arg(
        long,
        conflicts_with = "forget_dir",
        required_unless_present = "forget_dir"
    )]
    put: Option<String>,
    /// Remove the entries of this checkpoint directory (its name in the user's area).
    #[arg(long)]
    forget_dir: Option<String>,
}

pub fn main(a: Args) -> i32 {
    let op = match (a.put, a.forget_dir) {
        (Some(name), _) => ChildOp::Put { name },
        (None, Some(dir)) => ChildOp::Forget { dir },
        (None, None) => {
            return super::exit_code("write-index", Err(anyhow::anyhow!("nothing to do")))
        }
    };
    let res =
        child(a.uid, a.gid, &a.dir, &op, std::io::stdin().lock()).map_err(anyhow::Error::from);
    super::exit_code("write-index", res)
}
