//! Does an image have what a rank container needs? (`slurm-ckpt image check`, and the supervisor
//! before it creates a job's first container from an image on a node.)
//!
//! Requirements (docs/IMAGES.md): a POSIX shell and the coreutils/sed the launch script uses;
//! OpenSSH's sshd and ssh client (the MPI launcher in rank 0's container reaches the others over
//! ssh); and the MPI family's launcher: MPICH's hydra `mpiexec`, or Open MPI's `mpirun` and `orted`.
//! Open MPI 5 is refused by name: it has no `orted` (its runtime is PRRTE: `prterun`/`prted`),
//! while the launcher starts the MPI world with Open MPI 4's rsh/orted tree and CRIU checkpoints
//! those daemons inside the rank containers; PRRTE's DVM is not supported yet.
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

/// Open MPI 5 (PRRTE) detection, for openmpi images: prints `prrte: MAJOR` (MAJOR may be empty)
/// when the image has PRRTE's daemon or launcher and no orted, or `ompi_info` says 5 or later.
const PRRTE_PROBE: &str = r#"v=$( (ompi_info --version) 2>/dev/null | sed -n 's/^Open MPI v\{0,1\}\([0-9][0-9]*\)\..*/\1/p' | head -n 1)
if ! ( command -v orted || [ -x /usr/bin/orted ] ) >/dev/null 2>&1 && ( command -v prted || command -v prterun ) >/dev/null 2>&1; then echo "prrte: $v"; ok=1
elif [ -n "$v" ] && [ "$v" -ge 5 ]; then echo "prrte: $v"; ok=1; fi
"#;

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
    if mpi == "openmpi" {
        s.push_str(PRRTE_PROBE);
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
    /// The image's MPI is one the product refuses by name (Open MPI 5 / PRRTE), as described to
    /// the user, e.g. "Open MPI 5".
    pub unsupported: Option<String>,
}

impl Report {
    /// The verdict from the probe's exit `code` and output.
    pub fn from_probe(image: &str, mpi: &str, code: i64, out: &str) -> Report {
        let mut missing: Vec<String> = out
            .lines()
            .filter_map(|l| l.strip_prefix("missing: "))
            .map(String::from)
            .collect();
        let unsupported =
            out.lines()
                .find_map(|l| l.strip_prefix("prrte:"))
                .map(|major| match major.trim() {
                    "" => "Open MPI 5 or later".to_string(),
                    m => format!("Open MPI {m}"),
                });
        if code != 0 && missing.is_empty() && unsupported.is_none() {
            missing.push(format!(
                "a working /bin/sh (the probe exited with {code}: {})",
                out.trim()
            ));
        }
        Report {
            image: image.to_string(),
            mpi: mpi.to_string(),
            missing,
            unsupported,
        }
    }

    pub fn ok(&self) -> bool {
        self.missing.is_empty() && self.unsupported.is_none()
    }

    /// Why the image is refused: an unsupported MPI first (a missing orted is its symptom).
    pub fn error(&self) -> Error {
        match &self.unsupported {
            Some(found) => Error::MpiUnsupported {
                image: self.image.clone(),
                found: found.clone(),
            },
            None => Error::ImageUnfit {
                image: self.image.clone(),
                mpi: self.mpi.clone(),
                missing: self.missing.clone(),
            },
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
    Ok(Report::from_probe(image, mpi, code, &out))
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
        assert!(script("openmpi", None).unwrap().contains("prted"));
        assert!(!script("mpich", None).unwrap().contains("prrte"));
    }

    /// Run the script with /bin/sh in a fake image: `bin` holds stub commands (PATH is only it).
    fn run_in(bin: &[(&str, &str)], mpi: &str) -> Report {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        for (name, body) in bin {
            let p = d.path().join(name);
            std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        // The probe's own tools, from the host.
        for tool in ["sed", "head", "date", "tail"] {
            let host = ["/usr/bin", "/bin"]
                .iter()
                .map(|b| Path::new(b).join(tool))
                .find(|p| p.exists())
                .unwrap();
            std::os::unix::fs::symlink(host, d.path().join(tool)).unwrap();
        }
        // The script's fixed fallback path, pointed into the fake image (the host may have one).
        let fake_orted = d.path().join("orted");
        let text = script(mpi, None)
            .unwrap()
            .replace("/usr/bin/orted", &fake_orted.display().to_string());
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(text)
            .env_clear()
            .env("PATH", d.path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        Report::from_probe("img", mpi, out.status.code().unwrap().into(), &text)
    }

    const SSH: (&str, &str) = ("ssh", "true");

    #[test]
    fn open_mpi_4_passes_the_mpi_part() {
        let r = run_in(
            &[
                SSH,
                ("mpirun", "true"),
                ("orted", "true"),
                (
                    "ompi_info",
                    "echo 'Open MPI v4.1.4'; echo; echo https://www.open-mpi.org",
                ),
            ],
            "openmpi",
        );
        assert_eq!(r.unsupported, None);
        // Only sshd is missing (no /usr/sbin/sshd stub can be placed).
        assert!(
            r.missing.iter().all(|m| m.contains("sshd")),
            "{:?}",
            r.missing
        );
    }

    #[test]
    fn open_mpi_5_is_refused_by_name_with_the_way_out() {
        // PRRTE present, no orted.
        let r = run_in(
            &[
                SSH,
                ("mpirun", "true"),
                ("prterun", "true"),
                ("prted", "true"),
                ("ompi_info", "echo 'Open MPI v5.0.3'"),
            ],
            "openmpi",
        );
        assert_eq!(r.unsupported.as_deref(), Some("Open MPI 5"));
        assert!(!r.ok());
        let msg = r.error().to_string();
        for part in ["img", "Open MPI 5", "PRRTE", "orted", "Open MPI 4", "MPICH"] {
            assert!(msg.contains(part), "{part}: {msg}");
        }
        // PRRTE without ompi_info: still refused by name.
        let r = run_in(&[SSH, ("mpirun", "true"), ("prted", "true")], "openmpi");
        assert_eq!(r.unsupported.as_deref(), Some("Open MPI 5 or later"));
        // ompi_info says 5 even though an orted is there (a leftover): refused.
        let r = run_in(
            &[
                SSH,
                ("mpirun", "true"),
                ("orted", "true"),
                ("ompi_info", "echo 'Open MPI v5.0.0rc12'"),
            ],
            "openmpi",
        );
        assert_eq!(r.unsupported.as_deref(), Some("Open MPI 5"));
    }

    #[test]
    fn an_image_without_any_open_mpi_is_missing_it_not_refused() {
        let r = run_in(&[SSH], "openmpi");
        assert_eq!(r.unsupported, None);
        assert!(
            r.missing.iter().any(|m| m.contains("orted")),
            "{:?}",
            r.missing
        );
    }
}
