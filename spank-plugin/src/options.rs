//! User options (`--container-*`): the option table, validation of every value, and the
//! resolution of command line, inherited and environment values into one [`JobOptions`].
//!
//! Pure Rust: the SPANK glue in `dispatch` feeds it what Slurm hands to the option callbacks.

pub use slurm_ckpt_site::job_paths::{parse_mounts, path_within, Mount, RESERVED_DESTINATIONS};
use slurm_ckpt_site::option_names::{option_name, DEFAULT_PREFIX};
pub use slurm_ckpt_site::{
    normalize_path, parse_env, parse_image, parse_interval, MpiKind, IMAGE_MAX_LEN,
    INTERVAL_MAX_MIN, PATH_MAX_LEN, RESERVED_ENV_PREFIXES,
};
/// The plugin's name as Slurm sees it (`plugin_name`); Slurm derives option env names from it.
pub const PLUGIN_NAME: &str = "container-ckpt";

/// One user option of the plugin's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptId {
    Image,
    Ckpt,
    Mounts,
    Mpi,
    CkptInterval,
    Env,
    CkptCompress,
    Rerun,
}

impl OptId {
    pub const ALL: [OptId; 8] = [
        OptId::Image,
        OptId::Ckpt,
        OptId::Mounts,
        OptId::Mpi,
        OptId::CkptInterval,
        OptId::Env,
        OptId::CkptCompress,
        OptId::Rerun,
    ];

    fn index(self) -> usize {
        match self {
            OptId::Image => 0,
            OptId::Ckpt => 1,
            OptId::Mounts => 2,
            OptId::Mpi => 3,
            OptId::CkptInterval => 4,
            OptId::Env => 5,
            OptId::CkptCompress => 6,
            OptId::Rerun => 7,
        }
    }

    /// Long option name without dashes under the default `option_prefix` (`container`).
    pub fn default_name(self) -> &'static str {
        match self {
            OptId::Image => "container-image",
            OptId::Ckpt => "container-ckpt",
            OptId::Mounts => "container-mounts",
            OptId::Mpi => "container-mpi",
            OptId::CkptInterval => "container-ckpt-interval",
            OptId::Env => "container-env",
            OptId::CkptCompress => "container-ckpt-compress",
            OptId::Rerun => "container-rerun",
        }
    }

    /// Long option name without dashes under the site's `option_prefix`, as registered with
    /// Slurm (slurm_ckpt_site::option_names).
    pub fn name(self, prefix: &str) -> String {
        option_name(prefix, self.default_name())
    }

    /// `--name`, for messages.
    pub fn flag(self, prefix: &str) -> String {
        format!("--{}", self.name(prefix))
    }

    /// Environment variable used when the option is not on the command line.
    pub fn env_var(self) -> &'static str {
        match self {
            OptId::Image => "SLURM_CKPT_CONTAINER_IMAGE",
            OptId::Ckpt => "SLURM_CKPT_CONTAINER_CKPT",
            OptId::Mounts => "SLURM_CKPT_CONTAINER_MOUNTS",
            OptId::Mpi => "SLURM_CKPT_CONTAINER_MPI",
            OptId::CkptInterval => "SLURM_CKPT_CONTAINER_CKPT_INTERVAL",
            OptId::Env => "SLURM_CKPT_CONTAINER_ENV",
            OptId::CkptCompress => "SLURM_CKPT_CONTAINER_CKPT_COMPRESS",
            OptId::Rerun => "SLURM_CKPT_CONTAINER_RERUN",
        }
    }

    /// Argument name shown by `--help` (`--name=ARGINFO`); none for the optional DIR, which
    /// Slurm would print as if it were required.
    pub fn arginfo(self) -> Option<&'static str> {
        match self {
            OptId::Image => Some("IMAGE"),
            OptId::Ckpt => None,
            OptId::Mounts => Some("SRC:DST[:ro|rw],..."),
            OptId::Mpi => Some("mpich|openmpi|none"),
            OptId::CkptInterval => Some("MINUTES"),
            OptId::Env => Some("NAME=VALUE,..."),
            OptId::CkptCompress => Some("none|zstd|zstd:LEVEL"),
            OptId::Rerun => None,
        }
    }

    /// Usage text shown by `--help`, naming the options under `prefix`.
    pub fn usage(self, prefix: &str) -> String {
        self.default_usage()
            .replace("--container-ckpt", &OptId::Ckpt.flag(prefix))
    }

    fn default_usage(self) -> &'static str {
        match self {
            OptId::Image => {
                "[container-ckpt] run every task of srun steps in its own container from IMAGE \
                 (env SLURM_CKPT_CONTAINER_IMAGE)"
            }
            OptId::Ckpt => {
                "[container-ckpt] checkpoint/restart the containers; --container-ckpt=DIR picks the directory, \
                 relative to (or absolute under) the site checkpoint root (env SLURM_CKPT_CONTAINER_CKPT=1|DIR)"
            }
            OptId::Mounts => {
                "[container-ckpt] bind mounts into the containers, absolute paths, mode rw by default \
                 (env SLURM_CKPT_CONTAINER_MOUNTS)"
            }
            OptId::Mpi => {
                "[container-ckpt] how the MPI world is launched inside the containers; default set by \
                 the site (env SLURM_CKPT_CONTAINER_MPI)"
            }
            OptId::CkptInterval => {
                "[container-ckpt] take a checkpoint every MINUTES (needs --container-ckpt) \
                 (env SLURM_CKPT_CONTAINER_CKPT_INTERVAL)"
            }
            OptId::Env => {
                "[container-ckpt] set or override environment variables in the containers, e.g. the MPI \
                 transport settings (env SLURM_CKPT_CONTAINER_ENV)"
            }
            OptId::CkptCompress => {
                "[container-ckpt] compress this job's checkpoint images (needs --container-ckpt); \
                 default set by the site (env SLURM_CKPT_CONTAINER_CKPT_COMPRESS)"
            }
            OptId::Rerun => {
                "[container-ckpt] when a requeued or resumed script runs again, run steps that had \
                 already finished again instead of returning their recorded exit code (needs \
                 --container-ckpt) (env SLURM_CKPT_CONTAINER_RERUN=1)"
            }
        }
    }

    /// getopt `has_arg`: 1 = required argument, 2 = optional argument (`--container-ckpt[=DIR]`).
    pub fn has_arg(self) -> i32 {
        match self {
            OptId::Ckpt | OptId::Rerun => 2,
            _ => 1,
        }
    }

    /// The `val` registered with Slurm and handed back to the option callback.
    pub fn val(self) -> i32 {
        // Small distinct values; Slurm passes them through untouched.
        self.index() as i32 + 1
    }

    pub fn from_val(val: i32) -> Option<OptId> {
        OptId::ALL.iter().copied().find(|id| id.val() == val)
    }

    /// Name of the variable through which sbatch/salloc hand their SPANK options to the job's
    /// environment (`SLURM_SPANK_` + Slurm's `_SLURM_SPANK_OPTION_<plugin>_<option>`); srun
    /// inside the allocation replays it through the option callback before its own command line.
    pub fn inherited_env_var(self, prefix: &str) -> String {
        format!("SLURM_SPANK_{}", self.slurm_option_env_name(prefix))
    }

    /// Slurm's own name for this option in a job/prolog environment: `_SLURM_SPANK_OPTION_`,
    /// the plugin name, `_`, the option name, non-alphanumerics replaced by `_`.
    pub fn slurm_option_env_name(self, prefix: &str) -> String {
        let canon = |s: &str| -> String {
            s.chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect()
        };
        format!(
            "_SLURM_SPANK_OPTION_{}_{}",
            canon(PLUGIN_NAME),
            canon(&self.name(prefix))
        )
    }
}

/// Where checkpoints go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CkptDir {
    /// No DIR given: the plugin's default (see `helper_argv`).
    Default,
    /// Normalized relative path (under the site root) or absolute path (checked against it).
    Path(String),
}

/// The job's container settings after validation. `Default` = container mode off.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobOptions {
    /// Some = container mode on.
    pub image: Option<String>,
    /// Some = checkpoint/restart on.
    pub ckpt: Option<CkptDir>,
    pub mounts: Vec<Mount>,
    /// None = the site's `mpi_default`.
    pub mpi: Option<MpiKind>,
    pub ckpt_interval: Option<u32>,
    /// `NAME=VALUE` pairs set in every container after the product's defaults (so they override).
    pub env: Vec<String>,
    /// None = the site's `compress` setting.
    pub ckpt_compress: Option<crate::config::Compression>,
    /// `--container-rerun`: finished steps of a requeued or resumed script run again.
    pub rerun: bool,
}

impl JobOptions {
    pub fn container_mode(&self) -> bool {
        self.image.is_some()
    }
}

/// Where a value came from; decides precedence, duplicate detection and error wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Command line or `#SBATCH` line of this sbatch/salloc/srun.
    CommandLine,
    /// Replayed by srun/sbatch from the enclosing allocation's options (`SLURM_SPANK_...`).
    Inherited,
    /// Forwarded by Slurm to slurmstepd (job options or job environment).
    Remote,
    /// A `SLURM_CKPT_CONTAINER_*` fallback variable.
    Environment,
}

/// An invalid, duplicated or inconsistent option. Display text has no plugin prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    #[error("--{option} specified multiple times")]
    Duplicate { option: String },
    #[error("invalid {origin} value '{value}': {reason}")]
    Invalid {
        origin: String,
        value: String,
        reason: String,
    },
    #[error("{origin} requires {image} (or SLURM_CKPT_CONTAINER_IMAGE)")]
    RequiresImage { origin: String, image: String },
    #[error("{origin} requires {ckpt}: the interval only applies to checkpointed jobs")]
    IntervalRequiresCkpt { origin: String, ckpt: String },
    #[error("{origin} requires {ckpt}: compression only applies to checkpointed jobs")]
    CompressRequiresCkpt { origin: String, ckpt: String },
    #[error("{origin} requires {ckpt}: only checkpointed jobs skip finished steps")]
    RerunRequiresCkpt { origin: String, ckpt: String },
}

/// A validated option value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Image(String),
    Ckpt(Option<CkptDir>),
    Mounts(Vec<Mount>),
    Mpi(MpiKind),
    Interval(u32),
    Env(Vec<String>),
    Compress(crate::config::Compression),
    Rerun(bool),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Slot {
    value: Value,
    source: Source,
}

/// Values recorded by the option callbacks of one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionState {
    slots: [Option<Slot>; 8],
    /// First value slurmstepd could not accept: the step must fail rather than run outside containers.
    remote_error: Option<OptionError>,
    /// The site's `option_prefix` (empty = the default), for the option names in messages.
    prefix: String,
}

impl Default for OptionState {
    fn default() -> Self {
        Self::new()
    }
}

impl OptionState {
    pub const fn new() -> Self {
        OptionState {
            slots: [None, None, None, None, None, None, None, None],
            remote_error: None,
            prefix: String::new(),
        }
    }

    /// The site's `option_prefix` (set in slurm_spank_init, before any option callback).
    pub fn set_prefix(&mut self, prefix: &str) {
        self.prefix = prefix.to_string();
    }

    /// The option prefix in effect.
    pub fn prefix(&self) -> &str {
        if self.prefix.is_empty() {
            DEFAULT_PREFIX
        } else {
            &self.prefix
        }
    }

    /// True when no option callback ran (the fast path for jobs without containers).
    pub fn is_empty(&self) -> bool {
        self.slots.iter().all(Option::is_none) && self.remote_error.is_none()
    }

    /// Records a value handed to the option callback in sbatch/salloc/srun. `inherited` is the
    /// value of [`OptId::inherited_env_var`] in the process environment: srun and sbatch replay
    /// that variable through the callback before the command line, so a first call carrying
    /// exactly that value is the allocation's option, which the command line may override.
    pub fn record_local(
        &mut self,
        id: OptId,
        arg: Option<&str>,
        inherited: Option<&str>,
    ) -> Result<(), OptionError> {
        let from_env = inherited.is_some() && inherited == Some(arg.unwrap_or(""));
        let source = if from_env && self.slots[id.index()].is_none() {
            Source::Inherited
        } else {
            Source::CommandLine
        };
        self.record(id, arg, source)
    }

    /// Records a value forwarded to slurmstepd. Slurm forwards the same option twice (job
    /// options, then job environment) with the step's own value first: first one wins.
    pub fn record_remote(&mut self, id: OptId, arg: Option<&str>) -> Result<(), OptionError> {
        let result = self.record(id, arg, Source::Remote);
        if let Err(e) = &result {
            if self.remote_error.is_none() {
                self.remote_error = Some(e.clone());
            }
        }
        result
    }

    fn record(&mut self, id: OptId, arg: Option<&str>, source: Source) -> Result<(), OptionError> {
        let prefix = self.prefix().to_string();
        let value = parse_value(id, arg, source, &prefix)?;
        let slot = &mut self.slots[id.index()];
        match (slot.as_ref().map(|s| s.source), source) {
            (None, _) | (Some(Source::Inherited), Source::CommandLine) => {
                *slot = Some(Slot { value, source });
                Ok(())
            }
            (Some(Source::CommandLine), Source::CommandLine) => Err(OptionError::Duplicate {
                option: id.name(&prefix),
            }),
            // Later replays of inherited or forwarded values never override the first.
            _ => Ok(()),
        }
    }

    /// Combines the recorded values with the `SLURM_CKPT_CONTAINER_*` fallbacks read through
    /// `env`, and checks how the options depend on each other.
    pub fn resolve(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<JobOptions, OptionError> {
        if let Some(e) = &self.remote_error {
            return Err(e.clone());
        }
        let prefix = self.prefix();
        let origin = |id, source| origin(id, source, prefix);
        // Recorded value first, else the environment variable (empty = not set, so that
        // `export X=` switches a fallback off).
        let value_of = |id: OptId| -> Result<Option<(Value, Source)>, OptionError> {
            if let Some(slot) = &self.slots[id.index()] {
                return Ok(Some((slot.value.clone(), slot.source)));
            }
            match env(id.env_var()) {
                Some(v) if !v.is_empty() => Ok(Some((
                    parse_value(id, Some(&v), Source::Environment, prefix)?,
                    Source::Environment,
                ))),
                _ => Ok(None),
            }
        };

        let Some((Value::Image(image), _)) = value_of(OptId::Image)? else {
            // Fallback variables alone never turn anything on (a site may export them for
            // everyone), but an explicit option without an image is a mistake worth reporting.
            if let Some((id, slot)) = OptId::ALL
                .iter()
                .find_map(|id| self.slots[id.index()].as_ref().map(|s| (*id, s)))
            {
                return Err(OptionError::RequiresImage {
                    origin: origin(id, slot.source),
                    image: OptId::Image.flag(prefix),
                });
            }
            return Ok(JobOptions::default());
        };

        let mut opts = JobOptions {
            image: Some(image),
            ..JobOptions::default()
        };
        if let Some((Value::Ckpt(c), _)) = value_of(OptId::Ckpt)? {
            opts.ckpt = c;
        }
        if let Some((Value::Mounts(m), _)) = value_of(OptId::Mounts)? {
            opts.mounts = m;
        }
        if let Some((Value::Mpi(m), _)) = value_of(OptId::Mpi)? {
            opts.mpi = Some(m);
        }
        if let Some((Value::Env(e), _)) = value_of(OptId::Env)? {
            opts.env = e;
        }
        match value_of(OptId::CkptInterval)? {
            Some((Value::Interval(n), _)) if opts.ckpt.is_some() => opts.ckpt_interval = Some(n),
            // A site-wide interval variable is simply unused when checkpointing is off.
            Some((_, Source::Environment)) | None => {}
            Some((_, source)) => {
                return Err(OptionError::IntervalRequiresCkpt {
                    origin: origin(OptId::CkptInterval, source),
                    ckpt: OptId::Ckpt.flag(prefix),
                })
            }
        }
        match value_of(OptId::CkptCompress)? {
            Some((Value::Compress(c), _)) if opts.ckpt.is_some() => opts.ckpt_compress = Some(c),
            Some((_, Source::Environment)) | None => {}
            Some((_, source)) => {
                return Err(OptionError::CompressRequiresCkpt {
                    origin: origin(OptId::CkptCompress, source),
                    ckpt: OptId::Ckpt.flag(prefix),
                })
            }
        }
        match value_of(OptId::Rerun)? {
            Some((Value::Rerun(r), _)) if opts.ckpt.is_some() => opts.rerun = r,
            Some((_, Source::Environment)) | None => {}
            Some((_, source)) => {
                return Err(OptionError::RerunRequiresCkpt {
                    origin: origin(OptId::Rerun, source),
                    ckpt: OptId::Ckpt.flag(prefix),
                })
            }
        }
        Ok(opts)
    }
}

/// How an option's source is named in messages.
fn origin(id: OptId, source: Source, prefix: &str) -> String {
    match source {
        Source::Environment => format!("environment variable {}", id.env_var()),
        _ => id.flag(prefix),
    }
}

fn invalid(
    id: OptId,
    source: Source,
    prefix: &str,
    value: &str,
    reason: impl Into<String>,
) -> OptionError {
    OptionError::Invalid {
        origin: origin(id, source, prefix),
        value: value.to_string(),
        reason: reason.into(),
    }
}

fn parse_value(
    id: OptId,
    arg: Option<&str>,
    source: Source,
    prefix: &str,
) -> Result<Value, OptionError> {
    let arg_or_empty = arg.unwrap_or("");
    match id {
        OptId::Image => parse_image(arg_or_empty).map(Value::Image),
        OptId::Ckpt => {
            if source == Source::Environment {
                parse_ckpt_env(arg_or_empty).map(Value::Ckpt)
            } else {
                // `--container-ckpt` alone reaches us as NULL (srun) or "" (forwarded env).
                parse_ckpt_dir(arg).map(|d| Value::Ckpt(Some(d)))
            }
        }
        OptId::Mounts => parse_mounts(arg_or_empty).map(Value::Mounts),
        OptId::Mpi => MpiKind::parse(arg_or_empty)
            .map(Value::Mpi)
            .ok_or_else(|| format!("valid values are {}", MpiKind::VALID)),
        OptId::CkptInterval => parse_interval(arg_or_empty).map(Value::Interval),
        OptId::Env => parse_env(arg_or_empty).map(Value::Env),
        OptId::CkptCompress => crate::config::Compression::parse(arg_or_empty).map(Value::Compress),
        OptId::Rerun => parse_switch(arg).map(Value::Rerun),
    }
    .map_err(|reason| invalid(id, source, prefix, arg_or_empty, reason))
}

/// `--container-ckpt[=DIR]`: no DIR (or empty) = default directory.
pub fn parse_ckpt_dir(arg: Option<&str>) -> Result<CkptDir, String> {
    const VALID: &str =
        "DIR is a relative path (under the site checkpoint root) or an absolute path under it, \
                         without '..', e.g. myrun";
    let s = match arg {
        // Slurm replays an optional-argument option given without a value as the text "(null)".
        None | Some("") | Some("(null)") => return Ok(CkptDir::Default),
        Some(s) => s,
    };
    let norm = normalize_path(s).map_err(|why| format!("{why}; {VALID}"))?;
    // Checked after normalizing: `./-x` becomes `-x`, which the helper would take for a flag.
    if norm.starts_with('-') {
        return Err(format!("must not start with '-'; {VALID}"));
    }
    if norm == "/" || norm.is_empty() {
        return Err(format!("does not name a directory; {VALID}"));
    }
    // An absolute DIR is checked against the site root (policy::check_job), where it is known.
    if !norm.starts_with('/') {
        slurm_ckpt_site::job_paths::check_ckpt_subdir(&norm)?;
    }
    Ok(CkptDir::Path(norm))
}

/// `--container-rerun[=yes|no]` (alone: yes; Slurm replays it without a value as "(null)").
fn parse_switch(arg: Option<&str>) -> Result<bool, String> {
    match arg.map(str::to_ascii_lowercase).as_deref() {
        None | Some("" | "(null)" | "1" | "yes" | "true" | "y") => Ok(true),
        Some("0" | "no" | "false" | "n") => Ok(false),
        _ => Err("valid values are yes and no (or none: yes)".into()),
    }
}

/// `SLURM_CKPT_CONTAINER_CKPT`: a boolean switch or a DIR.
fn parse_ckpt_env(s: &str) -> Result<Option<CkptDir>, String> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" | "y" => Ok(Some(CkptDir::Default)),
        "0" | "no" | "false" | "n" => Ok(None),
        _ => parse_ckpt_dir(Some(s)).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn rerun_is_a_switch_of_checkpointed_jobs() {
        let no_env = |_: &str| None;
        let with = |ckpt: bool, rerun: Option<&str>| {
            let mut st = OptionState::new();
            st.record_local(OptId::Image, Some("img"), None).unwrap();
            if ckpt {
                st.record_local(OptId::Ckpt, None, None).unwrap();
            }
            st.record_local(OptId::Rerun, rerun, None).unwrap();
            st.resolve(&no_env)
        };
        assert!(with(true, None).unwrap().rerun);
        assert!(with(true, Some("(null)")).unwrap().rerun);
        assert!(!with(true, Some("no")).unwrap().rerun);
        assert!(matches!(
            with(false, None),
            Err(OptionError::RerunRequiresCkpt { .. })
        ));
        let mut st = OptionState::new();
        assert!(st.record_local(OptId::Rerun, Some("maybe"), None).is_err());
    }

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn cli(pairs: &[(OptId, Option<&str>)]) -> Result<OptionState, OptionError> {
        let mut st = OptionState::new();
        for (id, arg) in pairs {
            st.record_local(*id, *arg, None)?;
        }
        Ok(st)
    }

    #[test]
    fn option_table_is_consistent() {
        for id in OptId::ALL {
            assert_eq!(OptId::from_val(id.val()), Some(id));
            assert!(id.name(DEFAULT_PREFIX).len() <= 75, "SPANK_OPTION_MAXLEN");
            let longest = "p".repeat(slurm_ckpt_site::option_names::PREFIX_MAX_LEN);
            assert!(id.name(&longest).len() <= 75, "SPANK_OPTION_MAXLEN");
            assert!(id.usage(DEFAULT_PREFIX).starts_with("[container-ckpt]"));
            assert!(id.env_var().starts_with("SLURM_CKPT_CONTAINER_"));
        }
        assert_eq!(OptId::from_val(0), None);
        assert_eq!(OptId::Ckpt.has_arg(), 2);
        assert_eq!(OptId::Image.has_arg(), 1);
        assert_eq!(
            OptId::Image.inherited_env_var(DEFAULT_PREFIX),
            "SLURM_SPANK__SLURM_SPANK_OPTION_container_ckpt_container_image"
        );
        assert_eq!(
            OptId::CkptInterval.slurm_option_env_name(DEFAULT_PREFIX),
            "_SLURM_SPANK_OPTION_container_ckpt_container_ckpt_interval"
        );
    }

    #[test]
    fn another_prefix_names_the_options_everywhere() {
        assert_eq!(OptId::Image.name("ckpt"), "ckpt-image");
        assert_eq!(OptId::Ckpt.name("ckpt"), "ckpt-checkpoint");
        assert_eq!(
            OptId::CkptInterval.flag("ckpt"),
            "--ckpt-checkpoint-interval"
        );
        assert_eq!(
            OptId::Image.inherited_env_var("ckpt"),
            "SLURM_SPANK__SLURM_SPANK_OPTION_container_ckpt_ckpt_image"
        );
        let u = OptId::CkptInterval.usage("ckpt");
        assert!(
            u.contains("(needs --ckpt-checkpoint)") && !u.contains("--container-"),
            "{u}"
        );
        assert!(OptId::Ckpt.usage("ckpt").contains("--ckpt-checkpoint=DIR"));

        let mut st = OptionState::new();
        st.set_prefix("ckpt");
        st.record_local(OptId::CkptInterval, Some("5"), None)
            .unwrap();
        assert_eq!(
            st.resolve(&no_env).unwrap_err().to_string(),
            "--ckpt-checkpoint-interval requires --ckpt-image (or SLURM_CKPT_CONTAINER_IMAGE)"
        );
        st.record_local(OptId::Image, Some("img"), None).unwrap();
        assert_eq!(
            st.resolve(&no_env).unwrap_err().to_string(),
            "--ckpt-checkpoint-interval requires --ckpt-checkpoint: the interval only applies to checkpointed jobs"
        );
        assert_eq!(
            st.record_local(OptId::Image, Some("img"), None)
                .unwrap_err()
                .to_string(),
            "--ckpt-image specified multiple times"
        );
        let e = st.record_local(OptId::Mpi, Some("lam"), None).unwrap_err();
        assert!(
            e.to_string().starts_with("invalid --ckpt-mpi value 'lam'"),
            "{e}"
        );
    }

    #[test]
    fn no_options_means_container_mode_off() {
        let st = OptionState::new();
        assert!(st.is_empty());
        let opts = st.resolve(&no_env).unwrap();
        assert_eq!(opts, JobOptions::default());
        assert!(!opts.container_mode());
    }

    #[test]
    fn full_valid_command_line() {
        let st = cli(&[
            (OptId::Image, Some("slurm-ckpt/mpi-test:latest")),
            (OptId::Ckpt, Some("runs/a")),
            (OptId::Mounts, Some("/data:/data:ro,/scratch/x/:/work")),
            (OptId::Mpi, Some("openmpi")),
            (OptId::CkptInterval, Some("30")),
        ])
        .unwrap();
        let opts = st.resolve(&no_env).unwrap();
        assert_eq!(opts.image.as_deref(), Some("slurm-ckpt/mpi-test:latest"));
        assert_eq!(opts.ckpt, Some(CkptDir::Path("runs/a".into())));
        assert_eq!(
            opts.mounts,
            vec![
                Mount {
                    src: "/data".into(),
                    dst: "/data".into(),
                    readonly: true
                },
                Mount {
                    src: "/scratch/x".into(),
                    dst: "/work".into(),
                    readonly: false
                },
            ]
        );
        assert_eq!(opts.mounts[1].to_string(), "/scratch/x:/work:rw");
        assert_eq!(opts.mpi, Some(MpiKind::OpenMpi));
        assert_eq!(opts.ckpt_interval, Some(30));
    }

    #[test]
    fn ckpt_without_dir_is_default() {
        for arg in [None, Some("")] {
            let st = cli(&[(OptId::Image, Some("img")), (OptId::Ckpt, arg)]).unwrap();
            assert_eq!(st.resolve(&no_env).unwrap().ckpt, Some(CkptDir::Default));
        }
        let st = cli(&[
            (OptId::Image, Some("img")),
            (OptId::Ckpt, Some("/var/lib/slurm-ckpt/me/")),
        ])
        .unwrap();
        assert_eq!(
            st.resolve(&no_env).unwrap().ckpt,
            Some(CkptDir::Path("/var/lib/slurm-ckpt/me".into()))
        );
    }

    #[test]
    fn invalid_images() {
        for bad in [
            "",
            "has space",
            "tab\there",
            "-flag",
            ".hidden",
            "weird$char",
            "ünicode",
            &"a".repeat(256),
        ] {
            let err = cli(&[(OptId::Image, Some(bad))]).unwrap_err();
            let msg = err.to_string();
            assert!(msg.starts_with("invalid --container-image value"), "{msg}");
            assert!(
                msg.contains("[a-zA-Z0-9._/:@-]"),
                "says what is valid: {msg}"
            );
        }
        for good in [
            "debian",
            "docker.io/library/debian:12",
            "reg:5000/a/b@sha256:abc",
            &"a".repeat(255),
        ] {
            assert!(parse_image(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn invalid_image_message_names_value() {
        let err = cli(&[(OptId::Image, Some("bad image"))]).unwrap_err();
        assert_eq!(
            err,
            OptionError::Invalid {
                origin: "--container-image".into(),
                value: "bad image".into(),
                reason: "contains whitespace; an image is 1-255 characters from [a-zA-Z0-9._/:@-], starting with a \
                         letter or digit, e.g. docker.io/library/debian:12"
                    .into(),
            }
        );
    }

    #[test]
    fn invalid_mounts() {
        let cases = [
            ("", "empty mount entry"),
            ("/a:/b,", "empty mount entry"),
            ("/a", "is not SRC:DST"),
            ("/a:/b:/c:ro", "is not SRC:DST"),
            ("/a:/b:rx", "mode 'rx' is not ro or rw"),
            ("a:/b", "source 'a' is not an absolute path"),
            ("/a:b", "destination 'b' is not an absolute path"),
            ("/a/../etc:/b", "contains a '..' component"),
            ("/a:/b/..", "contains a '..' component"),
            ("/a:/", "would hide the image"),
            ("/a:/proc", "reserved"),
            ("/a:/dev/shm", "reserved"),
            ("/a:/sys/", "reserved"),
            ("/a:/.slurm-ckpt/x", "reserved"),
            ("/a:/b,/c:/b/", "used twice"),
        ];
        for (value, why) in cases {
            let err = parse_value(
                OptId::Mounts,
                Some(value),
                Source::CommandLine,
                DEFAULT_PREFIX,
            )
            .unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(why), "{value}: {msg}");
            assert!(
                msg.contains(&format!("'{value}'")),
                "names the value: {msg}"
            );
            assert!(
                msg.contains("SRC:DST") || msg.contains("absolute"),
                "says what is valid: {msg}"
            );
        }
        // Not reserved: a sibling that only shares a prefix.
        assert!(parse_mounts("/a:/devices").is_ok());
        assert!(parse_mounts("/a:/b:rw").is_ok());
    }

    #[test]
    fn invalid_mpi_and_interval() {
        let e = parse_value(
            OptId::Mpi,
            Some("intel"),
            Source::CommandLine,
            DEFAULT_PREFIX,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "invalid --container-mpi value 'intel': valid values are mpich, openmpi or none"
        );
        for bad in ["0", "-5", "+5", "1.5", "", "abc", "525601", "99999999999"] {
            let e = parse_value(
                OptId::CkptInterval,
                Some(bad),
                Source::CommandLine,
                DEFAULT_PREFIX,
            )
            .unwrap_err()
            .to_string();
            assert!(
                e.contains("whole number of minutes from 1 to 525600"),
                "{bad}: {e}"
            );
        }
        assert_eq!(parse_interval("525600"), Ok(525600));
    }

    #[test]
    fn invalid_ckpt_dirs() {
        for bad in [
            "../x",
            "a/../../b",
            "-x",
            "./-x",
            "/",
            ".",
            "a\nb",
            ".hidden",
            "a/.b",
        ] {
            let e = parse_value(OptId::Ckpt, Some(bad), Source::CommandLine, DEFAULT_PREFIX)
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("invalid --container-ckpt value"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn duplicates_are_rejected() {
        let mut st = OptionState::new();
        st.record_local(OptId::Image, Some("a"), None).unwrap();
        let err = st.record_local(OptId::Image, Some("b"), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--container-image specified multiple times"
        );
        let mut st = OptionState::new();
        st.record_local(OptId::Ckpt, None, None).unwrap();
        assert_eq!(
            st.record_local(OptId::Ckpt, Some("d"), None).unwrap_err(),
            OptionError::Duplicate {
                option: "container-ckpt".into()
            }
        );
    }

    #[test]
    fn inherited_allocation_option_is_overridden_not_duplicated() {
        // srun inside `sbatch --container-image=a`: Slurm replays "a" first, then srun's own value.
        let mut st = OptionState::new();
        st.record_local(OptId::Image, Some("a"), Some("a")).unwrap();
        st.record_local(OptId::Image, Some("b"), Some("a")).unwrap();
        assert_eq!(st.resolve(&no_env).unwrap().image.as_deref(), Some("b"));
        // The same value again on the command line is still a duplicate.
        assert!(st.record_local(OptId::Image, Some("a"), Some("a")).is_err());
        // `--container-ckpt` without DIR is forwarded as an empty value.
        let mut st = OptionState::new();
        st.record_local(OptId::Ckpt, Some(""), Some("")).unwrap();
        st.record_local(OptId::Ckpt, Some("x"), Some("")).unwrap();
        // Replayed twice (heterogeneous job components): keep the first, no error.
        let mut st = OptionState::new();
        st.record_local(OptId::Mpi, Some("none"), Some("none"))
            .unwrap();
        st.record_local(OptId::Mpi, Some("none"), Some("none"))
            .unwrap();
    }

    #[test]
    fn remote_first_value_wins_and_errors_stick() {
        let mut st = OptionState::new();
        st.record_remote(OptId::Image, Some("step-image")).unwrap();
        st.record_remote(OptId::Image, Some("alloc-image")).unwrap();
        assert_eq!(
            st.resolve(&no_env).unwrap().image.as_deref(),
            Some("step-image")
        );

        let mut st = OptionState::new();
        st.record_remote(OptId::Image, Some("ok")).unwrap();
        assert!(st
            .record_remote(OptId::Mounts, Some("relative:/x"))
            .is_err());
        // The step must not silently run without the mount.
        let err = st.resolve(&no_env).unwrap_err();
        assert!(err.to_string().contains("--container-mounts"), "{err}");
    }

    #[test]
    fn env_fallbacks() {
        let env = env_of(&[
            ("SLURM_CKPT_CONTAINER_IMAGE", "slurm-ckpt/x"),
            ("SLURM_CKPT_CONTAINER_CKPT", "yes"),
            ("SLURM_CKPT_CONTAINER_MOUNTS", "/d:/d"),
            ("SLURM_CKPT_CONTAINER_MPI", "none"),
            ("SLURM_CKPT_CONTAINER_CKPT_INTERVAL", "15"),
        ]);
        let opts = OptionState::new().resolve(&env).unwrap();
        assert_eq!(opts.image.as_deref(), Some("slurm-ckpt/x"));
        assert_eq!(opts.ckpt, Some(CkptDir::Default));
        assert_eq!(opts.mounts.len(), 1);
        assert_eq!(opts.mpi, Some(MpiKind::None));
        assert_eq!(opts.ckpt_interval, Some(15));

        // The command line wins over the environment.
        let st = cli(&[(OptId::Image, Some("cli/img")), (OptId::Mpi, Some("mpich"))]).unwrap();
        let opts = st.resolve(&env).unwrap();
        assert_eq!(opts.image.as_deref(), Some("cli/img"));
        assert_eq!(opts.mpi, Some(MpiKind::Mpich));
        assert_eq!(opts.ckpt_interval, Some(15));

        for (val, want) in [
            ("1", Some(CkptDir::Default)),
            ("TRUE", Some(CkptDir::Default)),
            ("no", None),
            ("0", None),
            ("mydir", Some(CkptDir::Path("mydir".into()))),
        ] {
            let env = env_of(&[
                ("SLURM_CKPT_CONTAINER_IMAGE", "i"),
                ("SLURM_CKPT_CONTAINER_CKPT", val),
            ]);
            assert_eq!(
                OptionState::new().resolve(&env).unwrap().ckpt,
                want,
                "{val}"
            );
        }
    }

    #[test]
    fn env_errors_name_the_variable() {
        let env = env_of(&[
            ("SLURM_CKPT_CONTAINER_IMAGE", "img"),
            ("SLURM_CKPT_CONTAINER_MPI", "lam"),
        ]);
        let err = OptionState::new().resolve(&env).unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid environment variable SLURM_CKPT_CONTAINER_MPI value 'lam': valid values are mpich, openmpi or none"
        );
        let env = env_of(&[("SLURM_CKPT_CONTAINER_IMAGE", "bad image")]);
        assert!(OptionState::new()
            .resolve(&env)
            .unwrap_err()
            .to_string()
            .contains("SLURM_CKPT_CONTAINER_IMAGE"));
        // Empty means unset.
        let env = env_of(&[("SLURM_CKPT_CONTAINER_IMAGE", "")]);
        assert!(!OptionState::new().resolve(&env).unwrap().container_mode());
    }

    #[test]
    fn options_require_image() {
        for id in [OptId::Ckpt, OptId::Mounts, OptId::Mpi, OptId::CkptInterval] {
            let arg = match id {
                OptId::Mounts => "/a:/b",
                OptId::Mpi => "mpich",
                OptId::CkptInterval => "5",
                _ => "dir",
            };
            let st = cli(&[(id, Some(arg))]).unwrap();
            let err = st.resolve(&no_env).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "--{} requires --container-image (or SLURM_CKPT_CONTAINER_IMAGE)",
                    id.name(DEFAULT_PREFIX)
                )
            );
        }
        // Environment fallbacks alone never turn container mode on or fail a job.
        let env = env_of(&[
            ("SLURM_CKPT_CONTAINER_MPI", "openmpi"),
            ("SLURM_CKPT_CONTAINER_CKPT", "bogus/../x"),
        ]);
        assert_eq!(
            OptionState::new().resolve(&env).unwrap(),
            JobOptions::default()
        );
        // The image may come from the environment and the rest from the command line.
        let env = env_of(&[("SLURM_CKPT_CONTAINER_IMAGE", "img")]);
        let st = cli(&[(OptId::Mpi, Some("none"))]).unwrap();
        assert!(st.resolve(&env).unwrap().container_mode());
    }

    #[test]
    fn interval_requires_ckpt() {
        let st = cli(&[
            (OptId::Image, Some("img")),
            (OptId::CkptInterval, Some("10")),
        ])
        .unwrap();
        assert_eq!(
            st.resolve(&no_env).unwrap_err().to_string(),
            "--container-ckpt-interval requires --container-ckpt: the interval only applies to checkpointed jobs"
        );
        // A site-wide interval in the environment is ignored when checkpointing is off.
        let env = env_of(&[("SLURM_CKPT_CONTAINER_CKPT_INTERVAL", "10")]);
        let st = cli(&[(OptId::Image, Some("img"))]).unwrap();
        assert_eq!(st.resolve(&env).unwrap().ckpt_interval, None);
        let st = cli(&[(OptId::Image, Some("img")), (OptId::Ckpt, None)]).unwrap();
        assert_eq!(st.resolve(&env).unwrap().ckpt_interval, Some(10));
    }

    #[test]
    fn compress_option() {
        let st = cli(&[
            (OptId::Image, Some("img")),
            (OptId::Ckpt, None),
            (OptId::CkptCompress, Some("zstd:3")),
        ])
        .unwrap();
        assert_eq!(
            st.resolve(&no_env).unwrap().ckpt_compress,
            Some(crate::config::Compression::Zstd(3))
        );
        let e = cli(&[
            (OptId::Image, Some("img")),
            (OptId::CkptCompress, Some("gzip")),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("--container-ckpt-compress") && e.contains("zstd:LEVEL"),
            "{e}"
        );
        let st = cli(&[
            (OptId::Image, Some("img")),
            (OptId::CkptCompress, Some("zstd")),
        ])
        .unwrap();
        assert_eq!(
            st.resolve(&no_env).unwrap_err().to_string(),
            "--container-ckpt-compress requires --container-ckpt: compression only applies to checkpointed jobs"
        );
        let env = env_of(&[("SLURM_CKPT_CONTAINER_CKPT_COMPRESS", "none")]);
        let st = cli(&[(OptId::Image, Some("img"))]).unwrap();
        assert_eq!(st.resolve(&env).unwrap().ckpt_compress, None);
    }

    #[test]
    fn path_helpers() {
        assert_eq!(normalize_path("/a//b/./c/"), Ok("/a/b/c".into()));
        assert_eq!(normalize_path("a/b"), Ok("a/b".into()));
        assert_eq!(normalize_path("/"), Ok("/".into()));
        assert!(normalize_path("/a/../b").is_err());
        assert!(path_within("/dev", "/dev"));
        assert!(path_within("/dev/shm", "/dev"));
        assert!(!path_within("/devices", "/dev"));
        assert!(path_within("/var/lib/x", "/var/lib/"));
        assert!(path_within("/anything", "/"));
    }

    #[test]
    fn container_env_values() {
        assert_eq!(
            parse_env("UCX_TLS=tcp,self,X=1").unwrap(),
            vec!["UCX_TLS=tcp,self".to_string(), "X=1".to_string()]
        );
        assert_eq!(parse_env("A=").unwrap(), vec!["A=".to_string()]);
        assert_eq!(parse_env("A=b=c").unwrap(), vec!["A=b=c".to_string()]);
        for bad in [
            "",
            "noequals",
            "1A=x",
            "A-B=x",
            "A=1,A=2",
            "SLURM_JOB_ID=3",
            "A=x\ny",
            ",A=1",
        ] {
            assert!(parse_env(bad).is_err(), "{bad}");
        }
        let opts = cli(&[(OptId::Image, Some("img")), (OptId::Env, Some("FOO=bar"))])
            .unwrap()
            .resolve(&no_env)
            .unwrap();
        assert_eq!(opts.env, vec!["FOO=bar".to_string()]);
    }
}
