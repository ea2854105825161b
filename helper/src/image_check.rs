//! Does an image have what a rank container needs? (`slurm-ckpt image check`, and the supervisor
//! before it creates a job's first container from an image on a node.)
//!
//! Requirements (docs/IMAGES.md): a POSIX shell and the coreutils/sed the launch script uses;
//! OpenSSH's sshd and ssh client (the MPI launcher in rank 0's container reaches the others over
//! ssh); and the MPI family's launcher: MPICH's hydra `mpiexec`, or Open MPI's `mpirun` and `orted`.
//! The image needs no user entry (the job's passwd/group are bound in) and no network setup.
//! The check runs a throwaway container (no network, no capabilities, user nobody) that looks for
//! each piece and prints what is missing.
use crate::engine::Engine;
use crate::error::{Error, Result};
use std::path::Path;

/// One requirement: a description and a shell test that succeeds when it is met.
struct Need {
    what: &'static str,
    test: &'static str,
}

const COMMON: &[Need] = &[
    Need {
        what: "OpenSSH server (/usr/sbin/sshd)",
        test: "[ -x /usr/sbin/sshd ]",
    },
    Need {
        what: "OpenSSH client (ssh)",
        test: "command -v ssh",
    },
    Need {
        what: "coreutils (date, tail)",
        test: "command -v date && command -v tail",
    },
    Need {
        what: "sed",
        test: "command -v sed",
    },
];
const MPICH: &[Need] = &[Need {
    what: "MPICH launcher (mpiexec.hydra, mpiexec.mpich or mpiexec)",
    test: "command -v mpiexec.hydra || command -v mpiexec.mpich || command -v mpiexec",
}];
const OPENMPI: &[Need] = &[
    Need {
        what: "Open MPI launcher (mpirun.openmpi or mpirun)",
        test: "command -v mpirun.openmpi || command -v mpirun",
    },
    Need {
        what: "Open MPI daemon (orted)",
        test: "command -v orted || [ -x /usr/bin/orted ]",
    },
];

/// The requirements for MPI family `mpi` ("mpich", "openmpi", "none").
fn needs(mpi: &str) -> Result<Vec<&'static Need>> {
    let family: &[Need] = match mpi {
        "mpich" => MPICH,
        "openmpi" => OPENMPI,
        "none" => &[],
        other => {
            return Err(Error::UnknownMpi {
                family: other.to_string(),
            })
        }
    };
    let common: &[Need] = if mpi == "none" { &[] } else { COMMON };
    Ok(common.iter().chain(family).collect())
}

/// The check script: prints `missing: WHAT` per unmet requirement (and for `program`, if given).
pub fn script(mpi: &str, program: Option<&str>) -> Result<String> {
    let mut s = String::from("ok=0\n");
    for n in needs(mpi)? {
        s.push_str(&format!(
            "( {} ) >/dev/null 2>&1 || {{ echo 'missing: {}'; ok=1; }}\n",
            n.test, n.what
        ));
    }
    if let Some(p) = program {
        if !p
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+".contains(c))
        {
            return Err(Error::BadProgramPath {
                program: p.to_string(),
            });
        }
        s.push_str(&format!(
            "( [ -x '{p}' ] || command -v '{p}' ) >/dev/null 2>&1 || {{ echo 'missing: the program {p}'; ok=1; }}\n"
        ));
    }
    s.push_str("exit $ok\n");
    Ok(s)
}

/// What the check found.
#[derive(Debug)]
pub struct Report {
    pub image: String,
    pub mpi: String,
    pub missing: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.missing.is_empty()
    }
    pub fn error(&self) -> Error {
        Error::ImageUnfit {
            image: self.image.clone(),
            mpi: self.mpi.clone(),
            missing: self.missing.clone(),
        }
    }
}

/// Run the check in a throwaway container on `engine`'s node.
pub async fn check(
    engine: &Engine,
    image: &str,
    mpi: &str,
    program: Option<&str>,
) -> Result<Report> {
    engine.check_image(image).await?;
    let (code, out) = engine.run_probe(image, &script(mpi, program)?).await?;
    let mut missing: Vec<String> = out
        .lines()
        .filter_map(|l| l.strip_prefix("missing: "))
        .map(String::from)
        .collect();
    if code != 0 && missing.is_empty() {
        missing.push(format!(
            "a working /bin/sh (the probe exited with {code}: {})",
            out.trim()
        ));
    }
    Ok(Report {
        image: image.to_string(),
        mpi: mpi.to_string(),
        missing,
    })
}

/// The supervisor's check (it also fails clearly when the node lacks the image): once per node,
/// image id and MPI family (a root-only cache file under `runtime_dir` records a pass), so only the
/// first job on a node pays for the probe container.
pub async fn ensure(engine: &Engine, image: &str, mpi: &str, runtime_dir: &Path) -> Result<String> {
    let id = engine.check_image(image).await?;
    let key = format!("{}-{mpi}", id.trim_start_matches("sha256:"));
    let cache = runtime_dir.join("image-ok");
    let mark = cache.join(&key);
    if crate::trust::read_trusted(&mark, 64).is_ok() {
        return Ok(id);
    }
    // One probe per node: the node's other ranks (32 of a large job, say) wait for it and use its
    // pass instead of each starting a probe container of their own.
    let _probe = probe_lock(&cache, &key).await?;
    if crate::trust::read_trusted(&mark, 64).is_ok() {
        return Ok(id);
    }
    let report = check(engine, image, mpi, None).await?;
    if !report.ok() {
        return Err(report.error());
    }
    let _ = std::fs::create_dir_all(&cache);
    let _ = std::fs::write(&mark, b"ok\n");
    Ok(id)
}

/// An exclusive flock on `<cache>/.probe-<key>`, waited for up to 5 minutes (the kernel drops it
/// with a killed holder).
async fn probe_lock(cache: &Path, key: &str) -> Result<nix::fcntl::Flock<std::fs::File>> {
    use nix::fcntl::{Flock, FlockArg};
    std::fs::create_dir_all(cache).map_err(|e| Error::io(cache, e))?;
    let p = cache.join(format!(".probe-{key}"));
    let end = tokio::time::Instant::now() + std::time::Duration::from_secs(300);
    loop {
        let f = std::fs::File::create(&p).map_err(|e| Error::io(&p, e))?;
        match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
            Ok(l) => return Ok(l),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) if tokio::time::Instant::now() < end => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await
            }
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                return Err(Error::Timeout {
                    what: "another rank's image check on this node".into(),
                    secs: 300,
                })
            }
            Err((_, e)) => return Err(Error::io(&p, e.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_probe_per_node_at_a_time() {
        let dir = std::env::temp_dir().join(format!("slurm-ckpt-probe-{}", std::process::id()));
        let first = probe_lock(&dir, "img-mpich").await.unwrap();
        let second = tokio::spawn({
            let dir = dir.clone();
            async move { probe_lock(&dir, "img-mpich").await.map(|_| ()) }
        });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(!second.is_finished(), "the second waits for the first");
        // Another image is not held up.
        drop(probe_lock(&dir, "other-mpich").await.unwrap());
        drop(first);
        second.await.unwrap().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn script_names_each_requirement() {
        let s = script("openmpi", Some("/opt/x/bin/cg")).unwrap();
        assert!(s.contains("orted") && s.contains("sshd") && s.contains("/opt/x/bin/cg"));
        assert!(!script("mpich", None).unwrap().contains("orted"));
        assert!(script("none", None).unwrap().lines().count() == 2);
        assert!(script("lam", None).is_err());
        assert!(script("mpich", Some("/x'; rm -rf /")).is_err());
    }
}
