//! Site settings: defined once in the `slurm-ckpt-site` crate, shared with the plugin. The plugin
//! validates them inside Slurm and hands them to the helper as `--site key=value`; the admin CLI and
//! the runtime wrapper read the same plugstack.conf line, so there is one source of truth.
pub use slurm_ckpt_site::{
    Compression, ConfigError, DataPath, OrderPolicy, PreemptWindow, RestoreCompat, SiteConfig,
    Subnet, PLUGIN_FILE, RUNC_DEFAULTS,
};
