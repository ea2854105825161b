//! What the site allows a job to do with containers. Checked at submission (so sbatch/srun fail
//! before anything is queued) and again in slurmstepd (the submit side runs as the user and can
//! be bypassed).

use crate::config::{image_allowed, SiteConfig};
use crate::options::{path_within, CkptDir, JobOptions};
use slurm_ckpt_site::job_paths::ckpt_subdir_in;

/// A job's container request that the site refuses. Display text has no plugin prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("containers are disabled on this cluster (site setting enabled=no); submit without {image} and the other {prefix}-* options")]
    Disabled { image: String, prefix: String },
    #[error("image '{image}' is not allowed on this cluster (allowed: {allowed})")]
    ImageNotAllowed { image: String, allowed: String },
    #[error(
        "{flag} directory '{dir}' is outside the site checkpoint root {root} \
         (or names no directory inside a user's area {root}/USER); give a relative DIR or a \
         path under {root}/USER"
    )]
    CkptOutsideRoot {
        flag: String,
        dir: String,
        root: String,
    },
    #[error("{flag} {spec}: {reason}")]
    Mount {
        flag: String,
        spec: String,
        reason: String,
    },
    #[error("{0}; run fewer tasks or ask the site admin")]
    TooManyRanks(#[from] slurm_ckpt_site::RankLimit),
}

/// A container step of `ntasks` ranks must fit the site's rank limit (`SiteConfig::check_ntasks`).
pub fn check_ntasks(site: &SiteConfig, ntasks: u32) -> Result<(), PolicyError> {
    Ok(site.check_ntasks(ntasks)?)
}

/// Checks a job in container mode against the site settings.
pub fn check_job(site: &SiteConfig, opts: &JobOptions) -> Result<(), PolicyError> {
    let Some(image) = &opts.image else {
        return Ok(());
    };
    if !site.enabled {
        return Err(PolicyError::Disabled {
            image: site.flag("container-image"),
            prefix: site.option_prefix.clone(),
        });
    }
    if !image_allowed(site, image) {
        return Err(PolicyError::ImageNotAllowed {
            image: image.clone(),
            allowed: site.allowlist_display(),
        });
    }
    if let Some(CkptDir::Path(dir)) = &opts.ckpt {
        let root = site.ckpt_root.to_string_lossy();
        if dir.starts_with('/') {
            // `<root>/<user>/<name>`, by the helper's rule for the user's area (which user the
            // area is for is the helper's to check: it knows the job's user).
            let user = dir
                .strip_prefix(root.trim_end_matches('/'))
                .filter(|_| path_within(dir, &root))
                .and_then(|rest| rest.trim_start_matches('/').split('/').next());
            let area = user.map(|u| format!("{}/{u}", root.trim_end_matches('/')));
            let inside = area.is_some_and(|a| ckpt_subdir_in(dir, &a).is_ok());
            if !inside {
                return Err(PolicyError::CkptOutsideRoot {
                    flag: site.flag("container-ckpt"),
                    dir: dir.clone(),
                    root: root.into_owned(),
                });
            }
        }
    }
    Ok(())
}

/// Mount sources, checked at submit with the submitting user's own credentials (the plugin runs
/// as the user in sbatch/salloc/srun): a source the user cannot reach, or one inside the service's
/// or the daemons' directories, is refused before anything is queued. A missing source is left
/// to the helper on the compute node (node-local scratch need not exist where jobs are
/// submitted); it refuses it there, authoritatively, with the same rules.
pub fn check_mounts(site: &SiteConfig, opts: &JobOptions) -> Result<(), PolicyError> {
    use slurm_ckpt_site::user_paths::{
        check_not_reserved, reserved_roots, resolve_as_caller, Access, PathRefusal,
    };
    let reserved = reserved_roots(site);
    for m in &opts.mounts {
        let access = if m.readonly {
            Access::Read
        } else {
            Access::ReadWrite
        };
        let refused = |r: PathRefusal| PolicyError::Mount {
            flag: site.flag("container-mounts"),
            spec: m.to_string(),
            reason: r.to_string(),
        };
        // Named inside a reserved directory: refused whether it exists or not.
        check_not_reserved(&m.src, std::path::Path::new(&m.src), &reserved).map_err(refused)?;
        match resolve_as_caller(&m.src, access) {
            Ok(resolved) => check_not_reserved(&m.src, &resolved, &reserved).map_err(refused)?,
            Err(PathRefusal::Missing { .. }) => {}
            Err(r) => return Err(refused(r)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(image: &str, ckpt: Option<CkptDir>) -> JobOptions {
        JobOptions {
            image: Some(image.into()),
            ckpt,
            ..JobOptions::default()
        }
    }

    #[test]
    fn too_many_ranks_names_the_limit() {
        let site = SiteConfig::default();
        assert!(check_ntasks(&site, 1024).is_ok());
        let e = check_ntasks(&site, 5000).unwrap_err().to_string();
        assert!(e.contains("5000 ranks") && e.contains("max_ranks"), "{e}");
    }

    #[test]
    fn container_mode_off_is_always_fine() {
        let site = SiteConfig {
            enabled: false,
            ..SiteConfig::default()
        };
        assert_eq!(check_job(&site, &JobOptions::default()), Ok(()));
    }

    #[test]
    fn disabled_site_refuses() {
        let site = SiteConfig {
            enabled: false,
            ..SiteConfig::default()
        };
        let e = check_job(&site, &job("x", None)).unwrap_err();
        assert!(matches!(e, PolicyError::Disabled { .. }));
        assert!(
            e.to_string()
                .contains("without --container-image and the other container-* options"),
            "{e}"
        );
        // With another option prefix, the message names the options the user has.
        let site = SiteConfig {
            enabled: false,
            option_prefix: "ckpt".into(),
            ..SiteConfig::default()
        };
        let e = check_job(&site, &job("x", None)).unwrap_err();
        assert!(
            e.to_string()
                .contains("without --ckpt-image and the other ckpt-* options"),
            "{e}"
        );
        assert_eq!(check_job(&site, &job("x", None)).map_err(|_| ()), Err(()));
    }

    #[test]
    fn allowlist_refusal_message() {
        let site = SiteConfig::parse(&["image_allowlist=slurm-ckpt/*"]).unwrap();
        assert_eq!(
            check_job(&site, &job("slurm-ckpt/mpi-test:latest", None)),
            Ok(())
        );
        let err = check_job(&site, &job("foo/bar", None)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "image 'foo/bar' is not allowed on this cluster (allowed: slurm-ckpt/*)"
        );
    }

    #[test]
    fn ckpt_dir_must_stay_under_root() {
        let site = SiteConfig::default();
        for ok in [
            None,
            Some(CkptDir::Default),
            Some(CkptDir::Path("rel/dir".into())),
        ] {
            assert_eq!(check_job(&site, &job("i", ok)), Ok(()));
        }
        assert_eq!(
            check_job(
                &site,
                &job("i", Some(CkptDir::Path("/var/lib/slurm-ckpt/u/x".into())))
            ),
            Ok(())
        );
        let err = check_job(
            &site,
            &job("i", Some(CkptDir::Path("/var/lib/slurm-ckpt2".into()))),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("outside the site checkpoint root /var/lib/slurm-ckpt"),
            "{err}"
        );
        assert!(check_job(&site, &job("i", Some(CkptDir::Path("/etc".into())))).is_err());
        // The area itself, or a hidden name in it, is no directory the helper would accept.
        for dir in ["/var/lib/slurm-ckpt/u", "/var/lib/slurm-ckpt/u/.x"] {
            let opts = job("i", Some(CkptDir::Path(dir.into())));
            assert!(check_job(&site, &opts).is_err(), "{dir}");
        }
    }

    #[test]
    fn mounts_checked_as_the_submitting_user() {
        use crate::options::Mount;
        let d = std::env::temp_dir().join(format!("policy-mounts-{}", std::process::id()));
        std::fs::create_dir_all(d.join("data")).unwrap();
        let site = SiteConfig {
            ckpt_root: d.join("ckpt"),
            ..SiteConfig::default()
        };
        let mount = |src: std::path::PathBuf| JobOptions {
            mounts: vec![Mount {
                src: src.to_string_lossy().into_owned(),
                dst: "/x".into(),
                readonly: true,
            }],
            ..job("i", None)
        };
        assert_eq!(check_mounts(&site, &mount(d.join("data"))), Ok(()));
        // Missing here may exist on the compute nodes: the helper decides there.
        assert_eq!(check_mounts(&site, &mount(d.join("nowhere"))), Ok(()));
        // Inside the checkpoint root, named directly or through a symlink.
        let e = check_mounts(&site, &mount(d.join("ckpt/bob/1"))).unwrap_err();
        assert!(e.to_string().contains("checkpoint root"), "{e}");
        std::fs::create_dir_all(d.join("ckpt/bob")).unwrap();
        let _ = std::fs::remove_file(d.join("link"));
        std::os::unix::fs::symlink(d.join("ckpt/bob"), d.join("link")).unwrap();
        let e = check_mounts(&site, &mount(d.join("link"))).unwrap_err();
        assert!(e.to_string().contains("resolved to"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
