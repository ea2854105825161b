use slurm_ckpt::guard::{self, GuardArgs};

/// `slurm-ckpt guard`: started by a supervisor for the length of one checkpoint (guard.rs).
pub fn main(a: GuardArgs, job_log: Option<std::path::PathBuf>) -> i32 {
    super::init_tracing(job_log.as_deref());
    let res = super::runtime().and_then(|rt| Ok(rt.block_on(guard::run(a))?));
    super::exit_code("guard", res)
}
