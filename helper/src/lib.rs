//! slurm-container-ckpt helper library: per-rank container plans, Docker engine access,
//! suspend/resume and checkpoint/restore of a job's rank containers.
pub mod auth;
pub mod barrier;
pub mod cgroup;
pub mod ckpt;
pub mod compat;
pub mod cpus;
pub mod crypt;
pub mod engine;
pub mod error;
pub mod fdio;
pub mod gc;
pub mod guard;
pub mod image_check;
pub mod jobdir;
pub mod lease;
pub mod node_check;
pub mod node_setup;
pub mod pack;
pub mod plan;
pub mod progress;
pub mod protocol;
pub mod redirect;
pub mod relay;
pub mod runtime_wrapper;
pub mod site;
pub mod site_secret;
pub mod slots;
pub mod slurm;
pub mod state;
pub mod steps;
pub mod supervise;
pub mod timing;
pub mod trust;
pub mod user_paths;
pub mod window;

pub use error::{Error, Result};
