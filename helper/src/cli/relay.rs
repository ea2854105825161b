use slurm_ckpt_site::request::RelayRequest;

/// `--fd FD --rank R`
pub type Args = super::RequestArgs;

pub fn main(a: Args) -> i32 {
    let r = match RelayRequest::decode(&a.request) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("slurm-ckpt relay: {e}");
            return 2;
        }
    };
    match slurm_ckpt::fdio::inherited_socket(r.fd) {
        Ok(sock) => slurm_ckpt::relay::run(sock, r.rank),
        Err(e) => {
            eprintln!("slurm-ckpt: rank {}: relay --fd {}: {e}", r.rank, r.fd);
            1
        }
    }
}
