//! Site settings: the `key=value` arguments after the plugin path in plugstack.conf. Defined once,
//! in the `slurm-ckpt-site` crate, for the plugin and the helper alike.
pub use slurm_ckpt_site::*;
