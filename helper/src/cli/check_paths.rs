use slurm_ckpt::user_paths;

/// `slurm-ckpt check-paths`: run by the supervisor as root; drops to the job's user for good,
/// resolves each `ro:PATH`/`rw:PATH` and prints the answers as JSON on stdout.
#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    uid: u32,
    #[arg(long)]
    gid: u32,
    /// Supplementary groups, comma-separated.
    #[arg(long, value_delimiter = ',')]
    groups: Vec<u32>,
    #[arg(last = true)]
    paths: Vec<String>,
}

pub fn main(a: Args) -> i32 {
    let res = user_paths::child(a.uid, a.gid, &a.groups, &a.paths)
        .map_err(anyhow::Error::from)
        .and_then(|answers| {
            println!("{}", serde_json::to_string(&answers)?);
            Ok(())
        });
    super::exit_code("check-paths", res)
}
