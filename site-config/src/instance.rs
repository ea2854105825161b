//! The job instance: a random nonce the plugin creates when a job is submitted and puts into the
//! job's environment. A requeued job keeps its environment, so it keeps its instance; a new job —
//! even one that gets a recycled job id — never has it. Checkpoint generations record it, and a
//! restore takes only generations of the same instance (helper/src/ckpt.rs).
//!
//! It is not a secret and not an authority (the user can set the variable): it tells one run of a
//! job from another of the same user, whose uid is checked separately.
use std::fmt;
use std::io::Read;

/// The job environment variable that carries the instance.
pub const INSTANCE_ENV: &str = "SLURM_CKPT_JOB_INSTANCE";
/// Random bytes of an instance (128 bits), written as twice as many lowercase hex digits.
pub const INSTANCE_BYTES: usize = 16;
/// Where the random bytes come from.
const RANDOM_SOURCE: &str = "/dev/urandom";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JobInstance(String);

#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("job instance '{0}': expected {len} lowercase hex digits", len = INSTANCE_BYTES * 2)]
    Syntax(String),
    #[error("cannot read random bytes for the job instance from {RANDOM_SOURCE}: {0}")]
    Random(#[source] std::io::Error),
}

impl JobInstance {
    /// A new random instance.
    pub fn generate() -> Result<Self, InstanceError> {
        let mut b = [0u8; INSTANCE_BYTES];
        std::fs::File::open(RANDOM_SOURCE)
            .and_then(|mut f| f.read_exact(&mut b))
            .map_err(InstanceError::Random)?;
        Ok(Self::from_bytes(b))
    }

    pub fn from_bytes(b: [u8; INSTANCE_BYTES]) -> Self {
        JobInstance(b.iter().map(|x| format!("{x:02x}")).collect())
    }

    /// Exactly `2 * INSTANCE_BYTES` lowercase hex digits (it reaches root's helper from the job's
    /// environment, and is written into manifests and messages).
    pub fn parse(s: &str) -> Result<Self, InstanceError> {
        let ok = s.len() == INSTANCE_BYTES * 2
            && s.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c));
        if ok {
            Ok(JobInstance(s.to_string()))
        } else {
            Err(InstanceError::Syntax(s.chars().take(80).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 8 digits, for tables and messages.
    pub fn short(&self) -> &str {
        short(&self.0)
    }
}

/// The first 8 characters of a recorded instance (which need not be valid).
pub fn short(instance: &str) -> &str {
    instance
        .char_indices()
        .nth(8)
        .map_or(instance, |(i, _)| &instance[..i])
}

impl fmt::Display for JobInstance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for JobInstance {
    type Err = InstanceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Which command is submitting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitter {
    /// sbatch or salloc: always a new job.
    Allocator,
    /// srun: a new job only when it is not inside an allocation.
    Srun,
}

/// What the submitting command does with the instance variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceAction {
    /// Create a new instance (replacing any inherited value: it is another job's).
    Create,
    /// Keep the enclosing job's instance.
    Keep,
    /// Set nothing: an allocation made without one (an older plugin) has none, and its steps must
    /// agree with its earlier runs.
    Leave,
}

/// The rule, given the submitting process's environment.
pub fn submit_action(who: Submitter, env: &dyn Fn(&str) -> Option<String>) -> InstanceAction {
    let in_allocation = env("SLURM_JOB_ID").is_some_and(|j| !j.is_empty());
    match who {
        Submitter::Allocator => InstanceAction::Create,
        Submitter::Srun if !in_allocation => InstanceAction::Create,
        Submitter::Srun if env(INSTANCE_ENV).is_some() => InstanceAction::Keep,
        Submitter::Srun => InstanceAction::Leave,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_instances_are_valid_and_distinct() {
        let a = JobInstance::generate().unwrap();
        let b = JobInstance::generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 32);
        assert_eq!(JobInstance::parse(a.as_str()).unwrap(), a);
        assert_eq!(a.short(), &a.as_str()[..8]);
        assert_eq!(
            JobInstance::from_bytes([0xab; 16]).as_str(),
            "abababababababababababababababab"
        );
    }

    #[test]
    fn only_fixed_length_lowercase_hex_is_accepted() {
        let good = "0123456789abcdef0123456789abcdef";
        assert!(JobInstance::parse(good).is_ok());
        for bad in [
            "",
            "0123",
            "0123456789ABCDEF0123456789ABCDEF",
            "0123456789abcdef0123456789abcdef0",
            "0123456789abcdef0123456789abcdeg",
            "../../../../../../../../etc/pass",
            "0123456789abcdef0123456789abcdé",
        ] {
            assert!(JobInstance::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(short("é1234567890"), "é1234567");
        assert_eq!(short("ab"), "ab");
    }

    #[test]
    fn a_new_job_gets_a_new_instance_a_step_keeps_its_jobs() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |n: &str| {
                vars.iter()
                    .find(|(k, _)| *k == n)
                    .map(|(_, v)| v.to_string())
            }
        };
        let inside = env(&[("SLURM_JOB_ID", "7"), (INSTANCE_ENV, "x")]);
        let old_alloc = env(&[("SLURM_JOB_ID", "7")]);
        let stale = env(&[(INSTANCE_ENV, "x")]);
        let none = env(&[]);
        // sbatch inside a job is still a new job.
        assert_eq!(
            submit_action(Submitter::Allocator, &inside),
            InstanceAction::Create
        );
        assert_eq!(
            submit_action(Submitter::Allocator, &none),
            InstanceAction::Create
        );
        assert_eq!(
            submit_action(Submitter::Srun, &inside),
            InstanceAction::Keep
        );
        assert_eq!(
            submit_action(Submitter::Srun, &old_alloc),
            InstanceAction::Leave
        );
        // srun outside an allocation creates the job: a value in the shell is someone else's.
        assert_eq!(
            submit_action(Submitter::Srun, &stale),
            InstanceAction::Create
        );
        assert_eq!(
            submit_action(Submitter::Srun, &none),
            InstanceAction::Create
        );
    }
}
