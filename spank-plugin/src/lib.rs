//! SPANK plugin of slurm-container-ckpt: `--container-*` options for sbatch/salloc/srun, and in
//! slurmstepd the hand-over of every task to the `slurm-ckpt` helper, which runs it in a
//! container that can be checkpointed and restarted.
//!
//! Layout (after NVIDIA pyxis): `dispatch` switches on the SPANK context and calls `submit`,
//! `stepd` or `epilog`; `options`, `config`, `policy`, `placement` and `helper_argv` are pure and unit tested;
//! `unsafe` is confined to `ffi` (Slurm's C API) and `spawn` (fork/exec).
#![deny(unsafe_code)]

pub mod config;
pub mod helper_argv;
pub mod manpage;
pub mod options;
pub mod placement;
pub mod policy;

mod dispatch;
mod epilog;
#[allow(unsafe_code)]
mod ffi;
#[allow(unsafe_code)]
mod spawn;
mod state;
mod stepd;
mod submit;
