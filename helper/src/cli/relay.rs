#[derive(clap::Args)]
pub struct Args {
    /// Inherited socket to the supervisor.
    #[arg(long)]
    fd: i32,
    #[arg(long)]
    rank: u32,
}

pub fn main(a: Args) -> i32 {
    match slurm_ckpt::fdio::inherited_socket(a.fd) {
        Ok(sock) => slurm_ckpt::relay::run(sock, a.rank),
        Err(e) => {
            eprintln!("slurm-ckpt relay: --fd {}: {e}", a.fd);
            1
        }
    }
}
