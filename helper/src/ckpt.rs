//! Checkpoint generations on shared storage and the cross-rank protocol that writes them.
//!
//! Layout: `<ckpt_root>/<user>/<job>/g0001/{manifest.json, rank-<r>/...}` (`<job>`: the job id or
//! the job's `--container-ckpt=DIR`; steps > 0 of a script in `<job>/step-<S>/`, steps.rs). A generation is written
//! as `.g0001.tmp/` and becomes visible only when rank 0 has written and fsynced `manifest.json`
//! and renamed the directory: a half-written generation is never restored. `<ckpt_root>/<user>` is
//! root-owned 0700, so users can neither read nor alter images that root will restore; inside it,
//! rank image dirs belong to the daemon's remapped root and are 0755/0644, because part of CRIU's
//! restore runs inside the container's user namespace.
//!
//! Ranks coordinate only through marker files in the generation directory (every node sees the
//! shared storage), with explicit waits and timeouts — never fixed sleeps.
use crate::auth::SiteKey;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// 3: manifests record the job instance and working directory, compared at restore; 2 added the
/// site-key MAC of manifests and rank records (`auth.rs`); format 1 had none.
pub const FORMAT: u32 = 3;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileSum {
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RankRecord {
    pub rank: u32,
    pub hostname: String,
    pub ip: String,
    pub mac: String,
    pub node: String,
    /// Position of this rank in the checkpoint order (0 = first).
    pub order: u32,
    pub bytes: u64,
    pub files: Vec<FileSum>,
    pub dump_seconds: f64,
    /// How long the job stood still for this checkpoint: network dropped (and, with freeze-all,
    /// container frozen) until every rank was dumped.
    #[serde(default)]
    pub held_seconds: f64,
    /// How the files are stored: `none` or `zstd:LEVEL` (files then end in `.zst`).
    #[serde(default)]
    pub compression: String,
    /// How the files are encrypted: `none` (empty in older records) or `xchacha20poly1305` (files
    /// then end in `.enc`; key derived per user from the site key, see crypt.rs).
    #[serde(default)]
    pub encryption: String,
    /// Bytes of CRIU's images before compression.
    #[serde(default)]
    pub raw_bytes: u64,
    /// Of `raw_bytes`, bytes in chunks linked unchanged from the previous generation (incremental).
    #[serde(default)]
    pub reused_bytes: u64,
    /// Time spent moving (and compressing) the images to the shared storage after the dump, while
    /// the job already ran again (0 when CRIU wrote them there itself).
    #[serde(default)]
    pub pack_seconds: f64,
    /// What restoring this rank depends on, as found on the node that dumped it (compat.rs);
    /// empty in records of older helpers, which then ask nothing of the restoring node.
    #[serde(default)]
    pub compat: crate::compat::Compat,
    /// Where this rank's checkpoint time went (zero in records of older helpers).
    #[serde(default)]
    pub phases: crate::timing::CkptPhases,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: u32,
    pub job: u32,
    pub step: u32,
    pub generation: u32,
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    pub image: String,
    pub image_id: String,
    pub ntasks: u32,
    pub mpi: String,
    pub argv: Vec<String>,
    /// The job instance that took it (`SLURM_CKPT_JOB_INSTANCE`); None: the job had none (an
    /// older plugin). Defaults only so that `list` and `gc` still read older manifests.
    #[serde(default)]
    pub instance: Option<String>,
    /// The job's working directory.
    #[serde(default)]
    pub cwd: String,
    /// The job whose network identity (addresses, MACs, hostnames, ssh keys) the ranks carry:
    /// `job` itself, or for a job resumed from an earlier job's generation, that generation's
    /// identity job (restored processes keep the identity they were started with). None in
    /// manifests of older helpers: their own job.
    #[serde(default)]
    pub identity_job: Option<u32>,
    pub policy: String,
    pub created: u64,
    pub criu_version: String,
    pub engine_version: String,
    pub total_bytes: u64,
    pub ranks: Vec<RankRecord>,
    /// Rank 0: from its every-rank-sealed wait to the signed manifest (the rename and fsync that
    /// follow take milliseconds).
    #[serde(default)]
    pub commit_seconds: f64,
    /// Rank 0: from the request to the signed manifest: the checkpoint's round trip.
    #[serde(default)]
    pub checkpoint_seconds: f64,
    /// The job's address lease: every restore uses these addresses. None: taken before leases
    /// (the job restores with the old slot formula, `plan::job_plan`).
    #[serde(default)]
    pub lease: Option<crate::lease::Lease>,
}

/// What a restore must match: a manifest of another job instance is skipped; one of another job,
/// user, shape or program is refused.
#[derive(Debug, Clone)]
pub struct Expect<'a> {
    pub job: u32,
    pub step: u32,
    /// This job's instance: only its own generations are restored (None matches only None).
    pub instance: Option<&'a str>,
    pub uid: u32,
    pub ntasks: u32,
    pub image: &'a str,
    /// The image's id on this node now: a re-tagged image is another program.
    pub image_id: &'a str,
    pub argv: &'a [String],
    pub cwd: &'a str,
    /// The job named its directory (`--container-ckpt=DIR`): an earlier job's generation there is
    /// resumed when it matches (`check_compatible`) and that run had not ended normally; one that
    /// does not is skipped, and the job starts fresh.
    pub resume: bool,
}

impl Manifest {
    /// The job whose identity the generation's ranks carry (`identity_job`).
    pub fn identity(&self) -> u32 {
        self.identity_job.unwrap_or(self.job)
    }

    /// Whether this job may restore it: `check_owner`, then `check_match`.
    pub fn check(&self, e: &Expect) -> Result<()> {
        self.check_owner(e)?;
        self.check_match(e)
    }

    /// A manifest this helper reads, taken by this job instance. Another instance's generation is
    /// skipped, not refused: it is not this job's computation at all (a new job that got a
    /// recycled id, or a directory reused by a new job).
    pub fn check_owner(&self, e: &Expect) -> Result<()> {
        if self.format != FORMAT {
            return Err(Error::GenerationRefused {
                generation: self.generation,
                reason: format!(
                    "manifest format {} (this helper reads {FORMAT})",
                    self.format
                ),
            });
        }
        if self.instance.as_deref() == e.instance {
            return Ok(());
        }
        Err(Error::GenerationSkipped {
            generation: self.generation,
            reason: format!(
                "it was taken by job instance {} (job {}), this job {} is {} (a new job with a recycled id, or a directory reused by a new job)",
                describe_instance(self.instance.as_deref()),
                self.job,
                e.job,
                describe_instance(e.instance)
            ),
        })
    }

    /// The rest of what defines the computation: job and step, then `check_compatible`.
    pub fn check_match(&self, e: &Expect) -> Result<()> {
        let bad = |what: String| {
            Err(Error::GenerationRefused {
                generation: self.generation,
                reason: what,
            })
        };
        if self.job != e.job || self.step != e.step {
            return bad(format!(
                "it belongs to job {}.{}, not {}.{}",
                self.job, self.step, e.job, e.step
            ));
        }
        self.check_compatible(e)
    }

    /// What an earlier job's generation must share with a job that resumes it: user, shape,
    /// image, program and working directory (not the job or step id).
    pub fn check_compatible(&self, e: &Expect) -> Result<()> {
        let bad = |what: String| {
            Err(Error::GenerationRefused {
                generation: self.generation,
                reason: what,
            })
        };
        if self.uid != e.uid {
            return bad(format!("it belongs to uid {}, not {}", self.uid, e.uid));
        }
        if self.ntasks != e.ntasks || self.ranks.len() as u32 != e.ntasks {
            return bad(format!(
                "it has {} ranks, the job now has {}",
                self.ntasks, e.ntasks
            ));
        }
        if self.image != e.image {
            return bad(format!(
                "it was taken from image {}, the job now uses {}",
                self.image, e.image
            ));
        }
        if self.image_id != e.image_id {
            return bad(format!(
                "image {} was {} when it was taken and is {} now (re-tagged or rebuilt)",
                self.image,
                short_id(&self.image_id),
                short_id(e.image_id)
            ));
        }
        if self.argv != e.argv {
            return bad(format!(
                "it was taken running `{}`, this job runs `{}`",
                show_argv(&self.argv),
                show_argv(e.argv)
            ));
        }
        if self.cwd != e.cwd {
            return bad(format!(
                "it was taken in working directory {}, this job's is {}",
                self.cwd, e.cwd
            ));
        }
        Ok(())
    }
}

fn describe_instance(i: Option<&str>) -> String {
    match i {
        Some(i) => format!("{}…", slurm_ckpt_site::instance::short(i)),
        None => "none (submitted with an older plugin)".into(),
    }
}

/// A command line for a message: joined, at most 120 characters.
fn show_argv(argv: &[String]) -> String {
    let s = argv.join(" ");
    match s.char_indices().nth(120) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

/// `closed.json` in a job directory (signed like manifests): the job instance that wrote its
/// generations ended normally — its launcher exited without Slurm stopping the step. Those
/// generations are no restart point for that instance any more: a requeue of the finished job
/// starts over.
pub const CLOSED_FILE: &str = "closed.json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Closed {
    pub instance: Option<String>,
    pub job: u32,
    pub step: u32,
    /// When the job ended (seconds since the epoch).
    pub time: u64,
    /// Its newest generation then: later ones (a rerun's, after a requeue) are not closed.
    pub through: u32,
    /// The step's exit code (its launcher's), returned again when a requeued or resumed script
    /// reaches the finished step (`steps.rs`). None in markers of older helpers.
    #[serde(default)]
    pub exit_code: Option<i32>,
}

/// `started.json` in a step's directory (signed like manifests): rank 0 of the step's newest run
/// started (or restored) its containers then. With the closed markers it tells a finished step
/// from an interrupted one (`steps.rs`).
pub const STARTED_FILE: &str = "started.json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Started {
    pub instance: Option<String>,
    pub job: u32,
    pub step: u32,
    /// Seconds since the epoch.
    pub time: u64,
}

impl Closed {
    /// Whether it closes generation `g` of `instance`.
    pub fn covers(&self, instance: Option<&str>, g: u32) -> bool {
        self.instance.as_deref() == instance && g <= self.through
    }
}

/// `.bad-gNNNN` in a job directory (signed like manifests): that generation's restore failed and
/// the site's `on_restore_failure=previous` set it aside, so the next start restores an older one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BadGeneration {
    pub generation: u32,
    pub job: u32,
    /// Why its restore failed (the failing rank's own words).
    pub reason: String,
    pub time: u64,
}

#[derive(Debug, Clone)]
pub struct Layout {
    /// `<ckpt_root>/<user>`: root-only.
    pub user_dir: PathBuf,
    pub job_dir: PathBuf,
}

fn short_id(id: &str) -> &str {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    if id.is_empty() {
        "unknown"
    } else {
        // Not `&id[..12]`: the id comes from a manifest and need not be ASCII.
        id.get(..12).unwrap_or(id)
    }
}

/// Where a restart begins: the newest generation that is authentic and belongs to this job, and
/// why each newer one was refused (`GenerationRefused`) or skipped (`GenerationSkipped`).
#[derive(Debug)]
pub struct RestorePoint {
    pub manifest: Option<Manifest>,
    pub refused: Vec<Error>,
    /// The refused generations whose manifest this rank could not read or authenticate. Every
    /// rank reads the same files, but on a network filesystem not always the same bytes at the
    /// same moment (a client's cache after a server restart): another rank may have chosen one
    /// of these, and must hear that this rank will not join it.
    pub unreadable: Vec<u32>,
}

impl RestorePoint {
    /// Generations exist but none is this run's to restore: every one belongs to another job
    /// instance or to this instance's finished run. The job may start fresh; a generation of this
    /// run that cannot be used (unauthentic, another image or program) fails it instead.
    pub fn none_of_this_run(&self) -> bool {
        self.manifest.is_none()
            && !self.refused.is_empty()
            && self
                .refused
                .iter()
                .all(|e| matches!(e, Error::GenerationSkipped { .. }))
    }
}

pub fn gen_name(g: u32) -> String {
    format!("g{g:04}")
}

impl Layout {
    /// `dir` is the job's directory name under the user's area (the job id by default).
    pub fn new(ckpt_root: &Path, user: &str, dir: &str) -> Self {
        let user_dir = ckpt_root.join(user);
        Layout {
            job_dir: user_dir.join(dir),
            user_dir,
        }
    }
    pub fn gen_dir(&self, g: u32) -> PathBuf {
        self.job_dir.join(gen_name(g))
    }
    pub fn tmp_dir(&self, g: u32) -> PathBuf {
        self.job_dir.join(format!(".{}.tmp", gen_name(g)))
    }

    /// Create `<root>/<user>/<job>` with the user level private to root.
    pub fn create(&self) -> Result<()> {
        crate::storage::check_mounted()?;
        // Every rank of the job makes it, on its own node.
        create_dir_all_retrying(&self.job_dir)?;
        let u = &self.user_dir;
        fs::set_permissions(u, fs::Permissions::from_mode(0o700)).map_err(|e| Error::io(u, e))?;
        fs::set_permissions(&self.job_dir, fs::Permissions::from_mode(0o755))
            .map_err(|e| Error::io(&self.job_dir, e))
    }

    /// Complete generations, newest last.
    pub fn generations(&self) -> Vec<u32> {
        let mut gens: Vec<u32> = fs::read_dir(&self.job_dir)
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| {
                        let n = e.file_name().to_str()?.to_string();
                        let g: u32 = n.strip_prefix('g')?.parse().ok()?;
                        e.path().join("manifest.json").is_file().then_some(g)
                    })
                    .collect()
            })
            .unwrap_or_default();
        gens.sort_unstable();
        gens
    }

    pub fn load_manifest(&self, g: u32) -> Result<Manifest> {
        let p = self.gen_dir(g).join("manifest.json");
        let text = fs::read(&p).map_err(|e| Error::io(&p, e))?;
        serde_json::from_slice(&text).map_err(|why| Error::BadJson {
            path: p,
            what: "manifest",
            why,
        })
    }

    /// A generation's manifest, only if its MAC verifies with the site key.
    pub fn load_verified(&self, g: u32, key: &SiteKey) -> Result<Manifest> {
        let p = self.gen_dir(g).join("manifest.json");
        let text = key.read_signed(&p)?;
        let m: Manifest = serde_json::from_slice(&text).map_err(|why| Error::BadJson {
            path: p.clone(),
            what: "manifest",
            why,
        })?;
        if m.generation != g {
            return Err(Error::GenerationRefused {
                generation: g,
                reason: format!("its manifest says it is {}", gen_name(m.generation)),
            });
        }
        Ok(m)
    }

    /// The newest generation that is authentic, of this job instance, not closed, and matches
    /// `expect`, newest first; refusals are collected so the caller can say why older ones are
    /// used (or why none is).
    pub fn restore_point(&self, key: &SiteKey, expect: &Expect) -> RestorePoint {
        self.restore_point_rereading(key, expect, Duration::ZERO)
    }

    /// [`Layout::restore_point`], reading a manifest that fails to load or authenticate once
    /// more after `reread_after` (once per call) before refusing it: a generation committed on
    /// another node just before a storage server restart can read inconsistently for a moment.
    /// A forged one is refused all the same, `reread_after` later.
    pub fn restore_point_rereading(
        &self,
        key: &SiteKey,
        expect: &Expect,
        reread_after: Duration,
    ) -> RestorePoint {
        let closed = self.closed_verified(key);
        let mut refused = Vec::new();
        let mut unreadable = Vec::new();
        let mut reread_left = !reread_after.is_zero();
        for g in self.generations().into_iter().rev() {
            if let Some(b) = self.bad(g, key) {
                refused.push(Error::GenerationRefused {
                    generation: g,
                    reason: format!(
                        "set aside after its restore failed at {}: {}",
                        crate::state::utc(b.time),
                        b.reason
                    ),
                });
                continue;
            }
            let mut loaded = self.load_verified(g, key);
            if let (Err(e), true) = (&loaded, reread_left) {
                reread_left = false;
                tracing::info!("{}: {e}; reading it again in {reread_after:?}", gen_name(g));
                std::thread::sleep(reread_after);
                loaded = self.load_verified(g, key);
            }
            let manifest = match loaded {
                Ok(m) => m,
                Err(e) => {
                    unreadable.push(g);
                    refused.push(match e {
                        e @ Error::GenerationRefused { .. } => e,
                        e => Error::GenerationRefused {
                            generation: g,
                            reason: e.to_string(),
                        },
                    });
                    continue;
                }
            };
            match usable(manifest, expect, closed.as_ref()) {
                Ok(m) => {
                    return RestorePoint {
                        manifest: Some(m),
                        refused,
                        unreadable,
                    }
                }
                Err(e @ (Error::GenerationRefused { .. } | Error::GenerationSkipped { .. })) => {
                    refused.push(e)
                }
                Err(e) => refused.push(Error::GenerationRefused {
                    generation: g,
                    reason: e.to_string(),
                }),
            }
        }
        RestorePoint {
            manifest: None,
            refused,
            unreadable,
        }
    }

    pub fn bad_path(&self, g: u32) -> PathBuf {
        self.job_dir.join(format!(".bad-{}", gen_name(g)))
    }

    /// Set a generation aside after its restore failed (`on_restore_failure=previous`).
    pub fn mark_bad(&self, b: &BadGeneration, key: &SiteKey) -> Result<()> {
        replace_json_signed(&self.bad_path(b.generation), b, key)
    }

    /// The authentic bad marker of generation `g`, if any. A forged one is ignored (and logged):
    /// it could only make a job skip its own newest generation, and whoever could write it could
    /// as well delete the generation.
    fn bad(&self, g: u32, key: &SiteKey) -> Option<BadGeneration> {
        let p = self.bad_path(g);
        fs::symlink_metadata(&p).ok()?;
        match read_json_signed::<BadGeneration>(&p, key) {
            Ok(b) if b.generation == g => Some(b),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!("{e}: ignored");
                None
            }
        }
    }

    /// The bad marker of `g` for display (`list`): not authenticated.
    pub fn bad_unverified(&self, g: u32) -> Option<BadGeneration> {
        serde_json::from_slice(&fs::read(self.bad_path(g)).ok()?).ok()
    }

    pub fn closed_path(&self) -> PathBuf {
        self.job_dir.join(CLOSED_FILE)
    }

    /// Close this directory's generations for `c.instance` (rank 0 of a job that ended
    /// normally). Returns false when there is nothing to close (the job never checkpointed).
    pub fn close(&self, c: &Closed, key: &SiteKey) -> Result<bool> {
        if !self.job_dir.is_dir() {
            return Ok(false);
        }
        replace_json_signed(&self.closed_path(), c, key)?;
        Ok(true)
    }

    /// The directory's closed marker, only if authentic; None when there is none.
    pub fn closed(&self, key: &SiteKey) -> Result<Option<Closed>> {
        let p = self.closed_path();
        if fs::symlink_metadata(&p).is_err() {
            return Ok(None);
        }
        read_json_signed(&p, key).map(Some)
    }

    /// The directory's closed marker, if authentic. One that is not is ignored (and logged):
    /// whoever could forge it could as well delete the generations.
    fn closed_verified(&self, key: &SiteKey) -> Option<Closed> {
        match self.closed(key) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("{e}: ignored");
                None
            }
        }
    }

    pub fn started_path(&self) -> PathBuf {
        self.job_dir.join(STARTED_FILE)
    }

    /// Record that a run of this directory's step started its containers.
    pub fn mark_started(&self, s: &Started, key: &SiteKey) -> Result<()> {
        replace_json_signed(&self.started_path(), s, key)
    }

    /// The step's authentic started marker, if any (a forged one is ignored and logged, like a
    /// closed marker).
    pub fn started(&self, key: &SiteKey) -> Option<Started> {
        let p = self.started_path();
        fs::symlink_metadata(&p).ok()?;
        read_json_signed(&p, key)
            .map_err(|e| tracing::warn!("{e}: ignored"))
            .ok()
    }

    /// The closed marker for display (`list`, `gc`): not authenticated.
    pub fn closed_unverified(&self) -> Option<Closed> {
        serde_json::from_slice(&fs::read(self.closed_path()).ok()?).ok()
    }

    /// The newest complete generation that loads, if any (for display: not authenticated).
    pub fn latest(&self) -> Option<Manifest> {
        self.generations()
            .into_iter()
            .rev()
            .find_map(|g| self.load_manifest(g).ok())
    }
}

/// `m` if this job may restore it: taken by this instance (else skipped, unless resumed), not
/// closed for it (skipped), and matching the job (else refused).
fn usable(m: Manifest, e: &Expect, closed: Option<&Closed>) -> Result<Manifest> {
    if e.resume && m.format == FORMAT && m.instance.as_deref() != e.instance {
        return resumable(m, e, closed);
    }
    m.check_owner(e)?;
    if let Some(c) = closed.filter(|c| c.covers(e.instance, m.generation)) {
        return Err(Error::GenerationSkipped {
            generation: m.generation,
            reason: format!(
                "closed: the job ended normally at {} (job {}); a requeue of a finished job starts over",
                crate::state::utc(c.time),
                c.job
            ),
        });
    }
    m.check_match(e)?;
    Ok(m)
}

/// An earlier job's generation in a directory the job named: resumed unless the directory's
/// runs had ended normally after it (a closed marker through it, whichever run wrote it: numbers
/// only grow, so everything up to a normal end is history) or it is another computation. Either
/// is skipped, never refused: the job then starts fresh into the directory, as it asked.
fn resumable(m: Manifest, e: &Expect, closed: Option<&Closed>) -> Result<Manifest> {
    let taken_by = format!(
        "it was taken by job instance {} (job {})",
        describe_instance(m.instance.as_deref()),
        m.job
    );
    if let Some(c) = closed.filter(|c| m.generation <= c.through) {
        return Err(Error::GenerationSkipped {
            generation: m.generation,
            reason: format!(
                "{taken_by}, and the directory's run ended normally at {} (job {}): a finished program is not resumed",
                crate::state::utc(c.time),
                c.job
            ),
        });
    }
    match m.check_compatible(e) {
        Ok(()) => Ok(m),
        Err(Error::GenerationRefused { reason, .. }) => Err(Error::GenerationSkipped {
            generation: m.generation,
            reason: format!("{taken_by} and is not this job's computation to resume: {reason}"),
        }),
        Err(other) => Err(other),
    }
}

/// Make a rank's images readable by the remapped container root (restore runs partly inside the
/// user namespace), sum them for the manifest, and make them durable: the writing node flushes
/// its own files (on NFS-like storage another node's fsync would not cover them), on a second
/// thread while this one hashes (one is disk-bound, the other CPU-bound). `known`: the sums taken
/// while the files were copied here ([`copy_summed`]); used when they name exactly the files
/// present, so the images are not read back from the storage.
pub fn seal_rank_dir(
    dir: &Path,
    owner: Option<(u32, u32)>,
    known: Option<&[FileSum]>,
) -> Result<(u64, Vec<FileSum>)> {
    let paths = open_to_container_root(dir, owner)?;
    let names: Vec<_> = paths.iter().map(|p| p.file_name()).collect();
    let known = known.filter(|k| {
        k.len() == names.len()
            && k.iter()
                .zip(&names)
                .all(|(f, n)| n.is_some_and(|n| n == f.name.as_str()))
    });
    let (synced, sums) = std::thread::scope(|sc| {
        let flusher = sc.spawn(|| -> Result<()> {
            for p in paths.iter().map(PathBuf::as_path).chain([dir]) {
                fs::File::open(p)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| Error::io(p, e))?;
            }
            Ok(())
        });
        let sums: Result<Vec<FileSum>> = match known {
            Some(k) => Ok(k.to_vec()),
            None => paths
                .iter()
                .map(|p| {
                    let (bytes, sha256) = sha256_file(p)?;
                    Ok(FileSum {
                        name: p
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                        bytes,
                        sha256,
                    })
                })
                .collect(),
        };
        let synced = flusher.join().unwrap_or_else(|_| {
            Err(Error::ThreadPanicked {
                what: "flushing images",
            })
        });
        (synced, sums)
    });
    synced?;
    let files = sums?;
    Ok((files.iter().map(|f| f.bytes).sum(), files))
}

/// Give the files of `dir` (0644) and `dir` itself (0755) to `owner`, the daemon's remapped root:
/// CRIU's restore partly runs inside the container's user namespace and must still read them,
/// whatever umask created them. Returns the files, sorted by name.
pub fn open_to_container_root(dir: &Path, owner: Option<(u32, u32)>) -> Result<Vec<PathBuf>> {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.file_name());
    let mut files = Vec::new();
    for ent in entries {
        let p = ent.path();
        let md = fs::symlink_metadata(&p).map_err(|e| Error::io(&p, e))?;
        if !md.is_file() {
            continue;
        }
        give(&p, owner, 0o644)?;
        files.push(p);
    }
    give(dir, owner, 0o755)?;
    Ok(files)
}

/// chown (if `owner`) and chmod one path.
pub fn give(p: &Path, owner: Option<(u32, u32)>, mode: u32) -> Result<()> {
    if let Some((u, g)) = owner {
        std::os::unix::fs::chown(p, Some(u), Some(g)).map_err(|e| Error::io(p, e))?;
    }
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).map_err(|e| Error::io(p, e))
}

/// The two channels of a two-thread pipeline over a file, as (full sender, full receiver, empty
/// sender, empty receiver): a few 1 MiB blocks go from the producer to the consumer full (with
/// the length filled) and come back empty, instead of one allocation per read.
type Pipe = (
    std::sync::mpsc::SyncSender<(Vec<u8>, usize)>,
    std::sync::mpsc::Receiver<(Vec<u8>, usize)>,
    std::sync::mpsc::SyncSender<Vec<u8>>,
    std::sync::mpsc::Receiver<Vec<u8>>,
);

fn block_pipe() -> Pipe {
    const BLOCK: usize = 1 << 20;
    const BLOCKS: usize = 4;
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel(BLOCKS);
    let (empty_tx, empty_rx) = std::sync::mpsc::sync_channel(BLOCKS);
    for _ in 0..BLOCKS {
        // Cannot fail: the receiver is alive and the channel holds all the blocks.
        let _ = empty_tx.send(vec![0u8; BLOCK]);
    }
    (full_tx, full_rx, empty_tx, empty_rx)
}

/// A file's size and sha256. One thread reads the next blocks while this one hashes: on a network
/// file system a read waits on the server and the hash on the CPU, so the two overlap.
pub fn sha256_file(p: &Path) -> Result<(u64, String)> {
    let mut f = fs::File::open(p).map_err(|e| Error::io(p, e))?;
    let (full_tx, full_rx, empty_tx, empty_rx) = block_pipe();
    std::thread::scope(|sc| {
        let reader = sc.spawn(move || -> std::io::Result<()> {
            // Ends at EOF, or when the hasher is gone; dropping `full_tx` ends the hasher's loop.
            while let Ok(mut buf) = empty_rx.recv() {
                let k = f.read(&mut buf)?;
                if k == 0 || full_tx.send((buf, k)).is_err() {
                    break;
                }
            }
            Ok(())
        });
        let mut h = Sha256::new();
        let mut n = 0u64;
        for (buf, k) in full_rx {
            h.update(&buf[..k]);
            n += k as u64;
            let _ = empty_tx.send(buf);
        }
        match reader.join() {
            Ok(Ok(())) => Ok((n, format!("{:x}", h.finalize()))),
            Ok(Err(e)) => Err(Error::io(p, e)),
            Err(_) => Err(Error::ThreadPanicked {
                what: "reading images",
            }),
        }
    })
}

/// Files a restore may leave in an image directory; CRIU never reads them back.
const RESTORE_LEFTOVERS: [&str; 2] = ["stats-restore", "restore.log"];

/// Verify a rank's images against the (authenticated) manifest before root restores them: every
/// listed file with its size and sha256, and no file that is not listed (CRIU reads optional
/// images when they exist, so an added file could change what is restored).
pub fn verify_rank_dir(dir: &Path, rec: &RankRecord) -> Result<()> {
    check_listing(dir, rec)?;
    for f in &rec.files {
        let p = dir.join(listed_name(f)?);
        let (bytes, sum) = sha256_file(&p)?;
        check_sum(f, &p, bytes, &sum)?;
    }
    Ok(())
}

/// [`verify_rank_dir`] and a copy in one read: each listed file of `src` (the storage) is copied
/// into `dst` (the node's staging directory) and verified from the bytes copied. CRIU then reads
/// the copy, so the storage is read once, and a file changed there after its check (on a root
/// squashed storage the user owns it) cannot reach the restore. Returns the bytes copied.
pub fn fetch_verified(src: &Path, dst: &Path, rec: &RankRecord) -> Result<u64> {
    check_listing(src, rec)?;
    fs::create_dir_all(dst).map_err(|e| Error::io(dst, e))?;
    let mut total = 0;
    for f in &rec.files {
        let name = listed_name(f)?;
        let (from, to) = (src.join(name), dst.join(name));
        let (bytes, sum) = crate::transient::STALE_READ
            .run(&from, || copy_one_summed(&from, &to))
            .map_err(|(p, e)| Error::io(&p, e))?;
        check_sum(f, &from, bytes, &sum)?;
        total += bytes;
    }
    Ok(total)
}

/// No file in `dir` that the record does not list (but CRIU's own restore leftovers).
fn check_listing(dir: &Path, rec: &RankRecord) -> Result<()> {
    for e in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let e = e.map_err(|e| Error::io(dir, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if !rec.files.iter().any(|f| f.name == name) && !RESTORE_LEFTOVERS.contains(&name.as_str())
        {
            return Err(Error::ImageNotListed { path: e.path() });
        }
    }
    Ok(())
}

/// A listed file's name, refused unless it names a plain file in the rank directory.
fn listed_name(f: &FileSum) -> Result<&str> {
    if f.name.contains('/') || f.name.starts_with('.') {
        return Err(Error::BadImageName {
            name: f.name.clone(),
        });
    }
    Ok(&f.name)
}

fn check_sum(f: &FileSum, p: &Path, bytes: u64, sum: &str) -> Result<()> {
    if bytes != f.bytes || sum != f.sha256 {
        return Err(Error::ChecksumMismatch {
            path: p.to_path_buf(),
        });
    }
    Ok(())
}

/// `create_dir_all`, tried again when another node is making the same tree on a network file
/// system ([`crate::transient::DIR_RACE`]).
pub fn create_dir_all_retrying(p: &Path) -> Result<()> {
    crate::transient::DIR_RACE
        .run(p, || fs::create_dir_all(p))
        .map_err(|e| Error::io(p, e))
}

/// Copy CRIU's (flat) image directory `src` into `dst` on the storage, summing each file from
/// the bytes written (the storage is not read back). A file whose write meets a stale handle
/// (ESTALE: a network file system's client lost track of the directory for a moment) is written
/// again ([`crate::transient::STALE_WRITE`]). Returns the bytes and the files' sums, sorted by name.
pub fn copy_summed(src: &Path, dst: &Path) -> Result<(u64, Vec<FileSum>)> {
    fs::create_dir_all(dst).map_err(|e| Error::io(dst, e))?;
    let mut entries: Vec<_> = fs::read_dir(src)
        .map_err(|e| Error::io(src, e))?
        .collect::<std::io::Result<_>>()
        .map_err(|e| Error::io(src, e))?;
    entries.sort_by_key(|e| e.file_name());
    let mut files = Vec::new();
    for e in entries {
        let (from, name) = (e.path(), e.file_name());
        if !e.file_type().map_err(|e| Error::io(&from, e))?.is_file() {
            tracing::debug!(path = %from.display(), "not a regular file: not copied");
            continue;
        }
        let to = dst.join(&name);
        let (bytes, sha256) = crate::transient::STALE_WRITE
            .run(&to, || copy_one_summed(&from, &to))
            .map_err(|(p, err)| Error::io(&p, err))?;
        files.push(FileSum {
            name: name.to_string_lossy().into_owned(),
            bytes,
            sha256,
        });
    }
    Ok((files.iter().map(|f| f.bytes).sum(), files))
}

/// One file of [`copy_summed`]: this thread reads and hashes, a second one writes (the write
/// waits on the storage, the hash on the CPU). They pass a few blocks back and forth rather than
/// allocating one per read. The error names the path it came from.
fn copy_one_summed(
    from: &Path,
    to: &Path,
) -> std::result::Result<(u64, String), (PathBuf, std::io::Error)> {
    let mut input = fs::File::open(from).map_err(|e| (from.to_path_buf(), e))?;
    let mut out = fs::File::create(to).map_err(|e| (to.to_path_buf(), e))?;
    let (full_tx, full_rx, empty_tx, empty_rx) = block_pipe();
    std::thread::scope(|sc| {
        let writer = sc.spawn(move || -> std::io::Result<()> {
            for (buf, k) in full_rx {
                out.write_all(&buf[..k])?;
                // The reader gone means it failed or ended: nothing to hand back to.
                let _ = empty_tx.send(buf);
            }
            Ok(())
        });
        let mut h = Sha256::new();
        let mut n = 0u64;
        // A closed channel either way means the writer stopped, which it does only on an error:
        // reported below.
        let read = loop {
            let Ok(mut buf) = empty_rx.recv() else {
                break Ok(());
            };
            match read_retrying_eintr(&mut input, &mut buf) {
                Ok(0) => break Ok(()),
                Ok(k) => {
                    h.update(&buf[..k]);
                    n += k as u64;
                    if full_tx.send((buf, k)).is_err() {
                        break Ok(());
                    }
                }
                Err(e) => break Err(e),
            }
        };
        drop(full_tx);
        let written = writer
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the image writer thread panicked")));
        read.map_err(|e| (from.to_path_buf(), e))?;
        written.map_err(|e| (to.to_path_buf(), e))?;
        Ok((n, format!("{:x}", h.finalize())))
    })
}

fn read_retrying_eintr(f: &mut fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match f.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// Copy a directory tree of CRIU images (Docker's own checkpoint path keeps them in the daemon's
/// directory; the product's shared storage is elsewhere, often another file system). Returns the
/// bytes copied.
pub fn copy_images(src: &Path, dst: &Path) -> Result<u64> {
    fs::create_dir_all(dst).map_err(|e| Error::io(dst, e))?;
    let mut bytes = 0;
    for e in fs::read_dir(src).map_err(|e| Error::io(src, e))? {
        let e = e.map_err(|e| Error::io(src, e))?;
        let (from, to) = (e.path(), dst.join(e.file_name()));
        let ty = e.file_type().map_err(|e| Error::io(&from, e))?;
        if ty.is_dir() {
            bytes += copy_images(&from, &to)?;
        } else if ty.is_file() {
            bytes += fs::copy(&from, &to).map_err(|e| Error::io(&from, e))?;
        }
    }
    Ok(bytes)
}

/// Write JSON to `path` with its site-key MAC beside it, durably.
/// `write_json_signed`, replacing (never writing through) whatever a storage writer may have put
/// at `path` or its MAC file (a link).
fn replace_json_signed<T: Serialize>(path: &Path, v: &T, key: &SiteKey) -> Result<()> {
    for old in [path.to_path_buf(), crate::auth::mac_path(path)] {
        match fs::remove_file(&old) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(&old, e)),
            _ => {}
        }
    }
    write_json_signed(path, v, key)
}

pub fn write_json_signed<T: Serialize>(path: &Path, v: &T, key: &SiteKey) -> Result<()> {
    let body = encode_json(path, v)?;
    key.write_signed(path, &body)
}

/// Read JSON written by `write_json_signed`, refusing it unless its MAC verifies.
pub fn read_json_signed<T: serde::de::DeserializeOwned>(path: &Path, key: &SiteKey) -> Result<T> {
    let body = key.read_signed(path)?;
    serde_json::from_slice(&body).map_err(|why| Error::BadJson {
        path: path.to_path_buf(),
        what: "record",
        why,
    })
}

/// Write JSON to `path` durably (write, fsync).
pub fn write_json_durable<T: Serialize>(path: &Path, v: &T) -> Result<()> {
    let body = encode_json(path, v)?;
    write_durable(path, &body)
}

/// The JSON text of a record bound for `path`.
fn encode_json<T: Serialize>(path: &Path, v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(v).map_err(|why| Error::EncodeJson {
        path: path.to_path_buf(),
        what: "record",
        why,
    })
}

/// Write `bytes` to `path` and fsync it.
pub fn write_durable(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = fs::File::create(path).map_err(|e| Error::io(path, e))?;
    f.write_all(bytes).map_err(|e| Error::io(path, e))?;
    f.sync_all().map_err(|e| Error::io(path, e))
}

/// Commit a generation: fsync the manifest, then rename atomically. Every rank has flushed its own
/// images before it was sealed (`seal_rank_dir`).
pub fn commit(layout: &Layout, g: u32, manifest: &Manifest, key: &SiteKey) -> Result<PathBuf> {
    let tmp = layout.tmp_dir(g);
    write_json_signed(&tmp.join("manifest.json"), manifest, key)?;
    let dst = layout.gen_dir(g);
    fs::rename(&tmp, &dst).map_err(|e| Error::io(&dst, e))?;
    fs::File::open(&layout.job_dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(&layout.job_dir, e))?;
    Ok(dst)
}

/// Remove all but the newest `keep` complete generations and any stale temporary ones.
pub fn prune(layout: &Layout, keep: usize, current_tmp: Option<u32>) -> usize {
    let gens = layout.generations();
    let mut removed = 0;
    if gens.len() > keep {
        for g in &gens[..gens.len() - keep] {
            if fs::remove_dir_all(layout.gen_dir(*g)).is_ok() {
                removed += 1;
            }
        }
    }
    if let Ok(rd) = fs::read_dir(&layout.job_dir) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with(".g")
                && n.ends_with(".tmp")
                && current_tmp
                    .map(|g| n != format!(".{}.tmp", gen_name(g)))
                    .unwrap_or(true)
            {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
    removed
}

/// CRIU's version string (for the manifest).
pub fn criu_version() -> String {
    std::process::Command::new("criu")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Version: ").map(str::to_string))
        })
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn a_files_sum_is_its_contents_sum_whatever_its_size() {
        let dir = tempfile::tempdir().unwrap();
        // Empty, under one block, several blocks and a part.
        for len in [0usize, 1000, (5 << 20) + 123] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let p = dir.path().join(format!("f{len}"));
            fs::write(&p, &data).unwrap();
            assert_eq!(
                sha256_file(&p).unwrap(),
                (len as u64, format!("{:x}", Sha256::digest(&data))),
                "{len}"
            );
        }
        assert!(sha256_file(&dir.path().join("absent")).is_err());
    }

    #[test]
    fn older_manifests_carry_their_own_jobs_identity() {
        let mut v = serde_json::to_value(manifest()).unwrap();
        v.as_object_mut().unwrap().remove("identity_job");
        let m: Manifest = serde_json::from_value(v).unwrap();
        assert_eq!((m.identity_job, m.identity()), (None, 7));
        let m = Manifest {
            identity_job: Some(3),
            ..manifest()
        };
        assert_eq!(m.identity(), 3);
    }

    pub(crate) fn manifest() -> Manifest {
        Manifest {
            format: FORMAT,
            job: 7,
            step: 0,
            generation: 1,
            user: "u".into(),
            uid: 1000,
            gid: 1000,
            image: "img".into(),
            image_id: "sha256:x".into(),
            ntasks: 1,
            mpi: "mpich".into(),
            argv: vec!["ring".into(), "--seconds".into(), "25".into()],
            instance: Some(MINE.into()),
            cwd: "/home/u".into(),
            identity_job: Some(7),
            policy: "freeze-all".into(),
            created: 0,
            criu_version: "4.2.1".into(),
            engine_version: "20.10".into(),
            total_bytes: 0,
            ranks: vec![RankRecord {
                rank: 0,
                hostname: "j7-r0".into(),
                ip: "10.88.1.0".into(),
                mac: "m".into(),
                node: "n".into(),
                order: 0,
                bytes: 0,
                files: vec![],
                dump_seconds: 0.0,
                held_seconds: 0.0,
                compression: "none".into(),
                encryption: "none".into(),
                raw_bytes: 3,
                reused_bytes: 0,
                pack_seconds: 0.0,
                compat: Default::default(),
                phases: Default::default(),
            }],
            commit_seconds: 0.0,
            checkpoint_seconds: 0.0,
            lease: None,
        }
    }

    const MINE: &str = "9f8e7d6c5b4a39281706f5e4d3c2b1a0";
    const THEIRS: &str = "1a2b3c4d5e6f708192a3b4c5d6e7f801";

    fn argv() -> Vec<String> {
        ["ring", "--seconds", "25"].map(String::from).to_vec()
    }

    fn expect(argv: &[String]) -> Expect<'_> {
        Expect {
            job: 7,
            step: 0,
            instance: Some(MINE),
            uid: 1000,
            ntasks: 1,
            image: "img",
            image_id: "sha256:x",
            argv,
            cwd: "/home/u",
            resume: false,
        }
    }

    #[test]
    fn manifest_must_match_job_user_and_shape() {
        let m = manifest();
        let argv = argv();
        let ok = expect(&argv);
        assert!(m.check(&ok).is_ok());
        assert!(m
            .check(&Expect {
                image_id: "sha256:y",
                ..ok.clone()
            })
            .is_err());
        assert!(m
            .check(&Expect {
                job: 8,
                ..ok.clone()
            })
            .is_err());
        assert!(m
            .check(&Expect {
                uid: 1001,
                ..ok.clone()
            })
            .is_err());
        assert!(m
            .check(&Expect {
                ntasks: 2,
                ..ok.clone()
            })
            .is_err());
        assert!(m
            .check(&Expect {
                image: "other",
                ..ok.clone()
            })
            .is_err());
    }

    #[test]
    fn images_copied_to_the_storage_are_summed_on_the_way_and_not_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (dir.path().join("stage"), dir.path().join("rank-0"));
        fs::create_dir_all(src.join("sub")).unwrap();
        // More blocks than the copy passes around: they are reused.
        let big: Vec<u8> = (0..(9 << 20) + 7).map(|i| (i * 31 % 251) as u8).collect();
        fs::write(src.join("pages-1.img"), &big).unwrap();
        fs::write(src.join("core-1.img"), b"core").unwrap();
        fs::write(src.join("empty.img"), b"").unwrap();
        let (bytes, copied) = copy_summed(&src, &dst).unwrap();
        assert_eq!(bytes, big.len() as u64 + 4);
        assert_eq!(fs::read(dst.join("pages-1.img")).unwrap(), big);
        assert!(!dst.join("sub").exists(), "CRIU's image directory is flat");
        // The copy's sums are those a read-back would give.
        let (_, read_back) = seal_rank_dir(&dst, None, None).unwrap();
        assert_eq!(copied, read_back);
        // The seal takes them as they are (a storage that altered the bytes is caught by the
        // restore's verify against these sums)...
        let mut claimed = copied.clone();
        claimed[0].sha256 = "0".repeat(64);
        assert_eq!(
            seal_rank_dir(&dst, None, Some(&claimed)).unwrap().1,
            claimed
        );
        // ...but only when they name exactly the files present.
        fs::write(dst.join("extra.img"), b"x").unwrap();
        let (_, resummed) = seal_rank_dir(&dst, None, Some(&claimed)).unwrap();
        assert_eq!(resummed.len(), 4);
        assert_ne!(resummed[0].sha256, claimed[0].sha256);
    }

    #[test]
    fn a_copy_whose_writes_fail_stops_and_names_the_destination() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("pages-1.img");
        fs::write(&src, vec![7u8; 9 << 20]).unwrap();
        // Every write to /dev/full fails (ENOSPC), with blocks still to come: no hang.
        let full = Path::new("/dev/full");
        let (p, e) = copy_one_summed(&src, full).unwrap_err();
        assert_eq!(
            (p.as_path(), e.raw_os_error()),
            (full, Some(nix::libc::ENOSPC))
        );
    }

    #[test]
    fn a_fetch_copies_exactly_what_the_record_lists_and_verifies_the_bytes_it_copied() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (dir.path().join("rank-0"), dir.path().join("stage"));
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join("pages-1.img"), vec![3u8; (5 << 20) + 1]).unwrap();
        fs::write(src.join("core-1.img"), b"core").unwrap();
        fs::write(src.join("restore.log"), b"an earlier restore's log").unwrap();
        let (_, files) = seal_rank_dir(&src, None, None).unwrap();
        let mut rec = manifest().ranks[0].clone();
        rec.files = files
            .into_iter()
            .filter(|f| f.name != "restore.log")
            .collect();
        assert_eq!(fetch_verified(&src, &dst, &rec).unwrap(), (5 << 20) + 5);
        let mut got: Vec<_> = fs::read_dir(&dst)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        got.sort();
        assert_eq!(
            got,
            ["core-1.img", "pages-1.img"],
            "CRIU's leftovers stay behind"
        );
        assert_eq!(fs::read(dst.join("core-1.img")).unwrap(), b"core");
        // A file altered on the storage, one it does not list, a name outside the directory.
        fs::write(src.join("core-1.img"), b"cord").unwrap();
        let e = fetch_verified(&src, &dst, &rec).unwrap_err();
        assert!(matches!(e, Error::ChecksumMismatch { ref path } if path.ends_with("core-1.img")));
        fs::write(src.join("core-1.img"), b"core").unwrap();
        fs::write(src.join("tty-info.img"), b"x").unwrap();
        let e = fetch_verified(&src, &dst, &rec).unwrap_err();
        assert!(matches!(e, Error::ImageNotListed { .. }), "{e}");
        fs::remove_file(src.join("tty-info.img")).unwrap();
        rec.files.push(FileSum {
            name: "../core-1.img".into(),
            ..rec.files[0].clone()
        });
        let e = fetch_verified(&src, &dst, &rec).unwrap_err();
        assert!(matches!(e, Error::BadImageName { .. }), "{e}");
    }

    #[test]
    fn only_committed_generations_are_visible() {
        let root = std::env::temp_dir().join(format!("scc-ckpt-{}", std::process::id()));
        let l = Layout::new(&root, "u", "7");
        l.create().unwrap();
        let tmp = l.tmp_dir(1);
        fs::create_dir_all(tmp.join("rank-0")).unwrap();
        fs::write(tmp.join("rank-0/pages-1.img"), b"abc").unwrap();
        assert!(
            l.latest().is_none(),
            "a temporary generation must not be visible"
        );
        let (bytes, files) = seal_rank_dir(&tmp.join("rank-0"), None, None).unwrap();
        assert_eq!(bytes, 3);
        let mut m = manifest();
        m.ranks[0].files = files.clone();
        let key = SiteKey::derive(b"secret");
        commit(&l, 1, &m, &key).unwrap();
        assert_eq!(l.generations(), vec![1]);
        assert_eq!(l.latest().unwrap(), m);
        assert_eq!(l.load_verified(1, &key).unwrap(), m);
        verify_rank_dir(&l.gen_dir(1).join("rank-0"), &m.ranks[0]).unwrap();
        // A file CRIU might read that the manifest does not list.
        fs::write(l.gen_dir(1).join("rank-0/tty-info.img"), b"x").unwrap();
        assert!(verify_rank_dir(&l.gen_dir(1).join("rank-0"), &m.ranks[0]).is_err());
        fs::remove_file(l.gen_dir(1).join("rank-0/tty-info.img")).unwrap();
        fs::write(l.gen_dir(1).join("rank-0/pages-1.img"), b"abd").unwrap();
        assert!(verify_rank_dir(&l.gen_dir(1).join("rank-0"), &m.ranks[0]).is_err());
        // A stale temp generation is pruned, the committed one kept.
        fs::create_dir_all(l.tmp_dir(2)).unwrap();
        prune(&l, 1, None);
        assert!(!l.tmp_dir(2).exists() && l.gen_dir(1).exists());
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn restore_point_skips_forged_and_foreign_generations() {
        let (_d, l, key) = job_dir("7");
        let argv = argv();
        let expect = expect(&argv);
        let commit_gen = |g: u32, job: u32| commit_as(&l, &key, g, |m| m.job = job);
        assert!(l.restore_point(&key, &expect).manifest.is_none());
        let g1 = commit_gen(1, 7);
        commit_gen(2, 9); // another job's generation copied in, MAC intact
        commit_gen(3, 7);
        // g3 edited after the commit (as a storage writer could).
        let p = l.gen_dir(3).join("manifest.json");
        let text = fs::read_to_string(&p)
            .unwrap()
            .replace("freeze-all", "cf-rf     ");
        fs::write(&p, text).unwrap();
        let rp = l.restore_point(&key, &expect);
        assert_eq!(rp.manifest, Some(g1));
        let why: Vec<String> = rp.refused.iter().map(|e| e.to_string()).collect();
        assert_eq!(why.len(), 2, "{why:?}");
        assert!(
            why[0].contains("g0003") || why[0].contains("generation 3"),
            "{why:?}"
        );
        assert!(why[0].contains("MAC does not match"), "{why:?}");
        assert!(why[1].contains("job 9.0"), "{why:?}");
        // Only g3 could not be read: another job's generation is refused for what it says.
        assert_eq!(rp.unreadable, vec![3]);
        // With another site key nothing is authentic.
        let other = SiteKey::derive(b"other");
        let rp = l.restore_point(&other, &expect);
        assert!(rp.manifest.is_none() && rp.refused.len() == 3);
        assert_eq!(rp.unreadable, vec![3, 2, 1]);
    }

    #[test]
    fn a_manifest_that_reads_wrong_for_a_moment_is_read_again() {
        let (_d, l, key) = job_dir("7");
        let argv = argv();
        let expect = expect(&argv);
        let m = commit_as(&l, &key, 1, |_| {});
        // As a client with a stale cache would show it: cut short, then whole again.
        let p = l.gen_dir(1).join("manifest.json");
        let whole = fs::read(&p).unwrap();
        fs::write(&p, &whole[..whole.len() / 2]).unwrap();
        let mended = {
            let p = p.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                fs::write(&p, whole).unwrap();
            })
        };
        let rp = l.restore_point_rereading(&key, &expect, Duration::from_millis(500));
        mended.join().unwrap();
        assert_eq!(rp.manifest, Some(m), "{:?}", rp.refused);
        assert!(rp.refused.is_empty() && rp.unreadable.is_empty());
        // Without the second read it is refused, and named as unreadable.
        fs::write(&p, b"{}").unwrap();
        let rp = l.restore_point_rereading(&key, &expect, Duration::from_millis(10));
        assert!(rp.manifest.is_none());
        assert_eq!(rp.unreadable, vec![1]);
    }

    #[test]
    fn a_generation_set_aside_is_refused_and_the_previous_one_used() {
        let (_d, l, key) = job_dir("7");
        let argv = argv();
        let expect = expect(&argv);
        for g in [1, 2] {
            commit_as(&l, &key, g, |_| {});
        }
        let bad = |g| BadGeneration {
            generation: g,
            job: 7,
            reason: "rank 1: checksum mismatch".into(),
            time: 0,
        };
        // A forged marker (wrong key) changes nothing.
        l.mark_bad(&bad(2), &SiteKey::derive(b"other")).unwrap();
        assert_eq!(
            l.restore_point(&key, &expect)
                .manifest
                .map(|m| m.generation),
            Some(2)
        );
        l.mark_bad(&bad(2), &key).unwrap();
        let rp = l.restore_point(&key, &expect);
        assert_eq!(rp.manifest.map(|m| m.generation), Some(1));
        assert!(
            rp.refused[0].to_string().contains("checksum mismatch"),
            "{:?}",
            rp.refused
        );
        // Every generation set aside: refused, so the job never starts fresh silently.
        l.mark_bad(&bad(1), &key).unwrap();
        let rp = l.restore_point(&key, &expect);
        assert!(rp.manifest.is_none() && !rp.none_of_this_run());
        assert_eq!(l.bad_unverified(1).map(|b| b.generation), Some(1));
    }

    #[test]
    fn another_instance_is_skipped_another_program_or_directory_refused() {
        let m = manifest();
        let argv = argv();
        let ok = expect(&argv);
        let why = |e: &Expect| m.check(e).unwrap_err();
        let theirs = Expect {
            instance: Some(THEIRS),
            ..ok.clone()
        };
        let e = why(&theirs);
        assert!(matches!(e, Error::GenerationSkipped { .. }), "{e}");
        let e = e.to_string();
        assert!(
            e.contains("job instance 9f8e7d6c…") && e.contains("is 1a2b3c4d…"),
            "{e}"
        );
        // A job without an instance (older plugin) restores only generations without one.
        let none = Expect {
            instance: None,
            ..ok.clone()
        };
        assert!(matches!(why(&none), Error::GenerationSkipped { .. }));
        let mut old = m.clone();
        old.instance = None;
        assert!(old.check(&none).is_ok());
        assert!(matches!(
            old.check(&ok),
            Err(Error::GenerationSkipped { .. })
        ));
        let longer = ["ring", "--seconds", "40"].map(String::from);
        let e = why(&Expect {
            argv: &longer,
            ..ok.clone()
        });
        assert!(matches!(e, Error::GenerationRefused { .. }), "{e}");
        let e = e.to_string();
        assert!(
            e.contains("`ring --seconds 25`, this job runs `ring --seconds 40`"),
            "{e}"
        );
        let e = why(&Expect {
            cwd: "/scratch/u",
            ..ok.clone()
        });
        assert!(matches!(e, Error::GenerationRefused { .. }), "{e}");
        let e = e.to_string();
        assert!(
            e.contains("working directory /home/u, this job's is /scratch/u"),
            "{e}"
        );
        let mut v2 = m.clone();
        v2.format = 2;
        assert!(matches!(
            v2.check(&ok),
            Err(Error::GenerationRefused { .. })
        ));
        assert_eq!(show_argv(&["é".repeat(200)]).chars().count(), 121);
    }

    /// The job directory `u/<dir>` made under a fresh temporary root, and the key its tests sign with.
    fn job_dir(dir: &str) -> (tempfile::TempDir, Layout, SiteKey) {
        let d = tempfile::tempdir().unwrap();
        let l = Layout::new(d.path(), "u", dir);
        l.create().unwrap();
        (d, l, SiteKey::derive(b"secret"))
    }

    fn commit_as(l: &Layout, key: &SiteKey, g: u32, f: impl Fn(&mut Manifest)) -> Manifest {
        let mut m = manifest();
        m.generation = g;
        f(&mut m);
        fs::create_dir_all(l.tmp_dir(g)).unwrap();
        commit(l, g, &m, key).unwrap();
        m
    }

    #[test]
    fn only_other_instances_generations_let_a_job_start_fresh() {
        let (_d, l, key) = job_dir("mine");
        let argv = argv();
        let e = expect(&argv);
        // A recycled id: the directory holds another instance's generations, same job id.
        commit_as(&l, &key, 1, |m| m.instance = Some(THEIRS.into()));
        commit_as(&l, &key, 2, |m| m.instance = Some(THEIRS.into()));
        let rp = l.restore_point(&key, &e);
        assert!(rp.manifest.is_none() && rp.refused.len() == 2);
        assert!(rp.none_of_this_run(), "{:?}", rp.refused);
        // One generation of this instance that is not usable (another program): the job fails.
        commit_as(&l, &key, 3, |m| m.argv = vec!["other".into()]);
        let rp = l.restore_point(&key, &e);
        assert!(rp.manifest.is_none() && !rp.none_of_this_run());
        // Its own usable generation is restored past newer foreign ones.
        let g4 = commit_as(&l, &key, 4, |_| {});
        commit_as(&l, &key, 5, |m| m.instance = Some(THEIRS.into()));
        let rp = l.restore_point(&key, &e);
        assert_eq!(rp.manifest, Some(g4));
        assert!(!rp.none_of_this_run());
        // An unauthentic generation is never "someone else's": it may be this job's.
        let d2 = tempfile::tempdir().unwrap();
        let l2 = Layout::new(d2.path(), "u", "x");
        l2.create().unwrap();
        commit_as(&l2, &key, 1, |m| m.instance = Some(THEIRS.into()));
        commit_as(&l2, &SiteKey::derive(b"other"), 2, |_| {});
        assert!(!l2.restore_point(&key, &e).none_of_this_run());
    }

    #[test]
    fn a_new_job_resumes_an_earlier_jobs_unfinished_matching_generation() {
        let d = tempfile::tempdir().unwrap();
        let l = Layout::new(d.path(), "u", "run");
        l.create().unwrap();
        let key = SiteKey::derive(b"secret");
        let argv = argv();
        // A new job (id 9, its own instance) into the directory job 7 wrote.
        let e = Expect {
            job: 9,
            instance: Some(THEIRS),
            resume: true,
            ..expect(&argv)
        };
        let g1 = commit_as(&l, &key, 1, |_| {});
        commit_as(&l, &key, 2, |m| m.argv = vec!["other".into()]);
        let rp = l.restore_point(&key, &e);
        assert_eq!(rp.manifest, Some(g1));
        let why = rp.refused[0].to_string();
        assert!(
            why.contains("generation 2 skipped: it was taken by job instance 9f8e7d6c… (job 7) and is not this job's computation to resume: it was taken running `other`"),
            "{why}"
        );
        // Without a named directory (a recycled job id), never.
        let rp = l.restore_point(
            &key,
            &Expect {
                resume: false,
                ..e.clone()
            },
        );
        assert!(rp.manifest.is_none() && rp.none_of_this_run());
        // Another user's or shape's generation is skipped, not refused: the job starts fresh.
        let rp = l.restore_point(
            &key,
            &Expect {
                ntasks: 2,
                ..e.clone()
            },
        );
        assert!(
            rp.manifest.is_none() && rp.none_of_this_run(),
            "{:?}",
            rp.refused
        );
        // A run that ended normally (whichever wrote the marker) is not resumed.
        let closed = Closed {
            instance: Some(MINE.into()),
            job: 7,
            step: 0,
            time: 1_700_000_000,
            through: 2,
            exit_code: None,
        };
        l.close(&closed, &key).unwrap();
        let rp = l.restore_point(&key, &e);
        assert!(rp.manifest.is_none() && rp.none_of_this_run());
        assert!(
            rp.refused[1]
                .to_string()
                .contains("(job 7), and the directory's run ended normally at 2023-11-14 22:13:20 UTC (job 7)"),
            "{:?}",
            rp.refused
        );
        // A later, unfinished run's generation is resumed; an unauthentic one is still refused.
        let g3 = commit_as(&l, &key, 3, |m| m.instance = Some("1".repeat(32)));
        assert_eq!(l.restore_point(&key, &e).manifest, Some(g3));
        commit_as(&l, &SiteKey::derive(b"forged"), 4, |_| {});
        let rp = l.restore_point(&key, &e);
        assert!(matches!(rp.refused[0], Error::GenerationRefused { .. }));
    }

    #[test]
    fn a_closed_directory_is_no_restart_point_for_its_instance() {
        let d = tempfile::tempdir().unwrap();
        let l = Layout::new(d.path(), "u", "7");
        let key = SiteKey::derive(b"secret");
        let argv = argv();
        let e = expect(&argv);
        let closed = Closed {
            instance: Some(MINE.into()),
            job: 7,
            step: 0,
            time: 1_700_000_000,
            through: 2,
            exit_code: None,
        };
        // Nothing to close before the first checkpoint.
        assert!(!l.close(&closed, &key).unwrap());
        l.create().unwrap();
        commit_as(&l, &key, 1, |_| {});
        commit_as(&l, &key, 2, |_| {});
        assert!(l.close(&closed, &key).unwrap());
        assert_eq!(l.closed(&key).unwrap(), Some(closed.clone()));
        let rp = l.restore_point(&key, &e);
        assert!(rp.manifest.is_none() && rp.none_of_this_run());
        let why = rp.refused[0].to_string();
        let closed_at = "closed: the job ended normally at 2023-11-14 22:13:20 UTC";
        assert!(
            why.contains(&format!("generation 2 skipped: {closed_at}")),
            "{why}"
        );
        // The requeued rerun's own later generation is a restart point again.
        let g3 = commit_as(&l, &key, 3, |_| {});
        assert_eq!(l.restore_point(&key, &e).manifest, Some(g3));
        // A marker of another instance does not close this one's generations.
        let theirs = Closed {
            instance: Some(THEIRS.into()),
            through: 9,
            exit_code: None,
            ..closed.clone()
        };
        l.close(&theirs, &key).unwrap();
        let restored = |l: &Layout| l.restore_point(&key, &e).manifest.map(|m| m.generation);
        assert_eq!(restored(&l), Some(3));
        // A forged marker counts for nothing (deleting the generations would do as much).
        let mut forged = closed.clone();
        forged.through = 9;
        write_json_signed(&l.closed_path(), &forged, &SiteKey::derive(b"other")).unwrap();
        assert!(l.closed(&key).is_err());
        assert_eq!(restored(&l), Some(3));
        assert_eq!(l.closed_unverified(), Some(forged));
    }
}
