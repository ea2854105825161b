//! What the site allows a job to do with containers. Checked at submission (so sbatch/srun fail
//! before anything is queued) and again in slurmstepd (the submit side runs as the user and can
//! be bypassed).

use crate::config::{image_allowed, SiteConfig};
use crate::options::{path_within, CkptDir, JobOptions};

/// A job's container request that the site refuses. Display text has no plugin prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("containers are disabled on this cluster (site setting enabled=no); submit without --container-* options")]
    Disabled,
    #[error("image '{image}' is not allowed on this cluster (allowed: {allowed})")]
    ImageNotAllowed { image: String, allowed: String },
    #[error(
        "--container-ckpt directory '{dir}' is outside the site checkpoint root {root}; \
         give a relative DIR or a path under {root}"
    )]
    CkptOutsideRoot { dir: String, root: String },
}

/// Checks a job in container mode against the site settings.
pub fn check_job(site: &SiteConfig, opts: &JobOptions) -> Result<(), PolicyError> {
    let Some(image) = &opts.image else {
        return Ok(());
    };
    if !site.enabled {
        return Err(PolicyError::Disabled);
    }
    if !image_allowed(site, image) {
        return Err(PolicyError::ImageNotAllowed {
            image: image.clone(),
            allowed: site.allowlist_display(),
        });
    }
    if let Some(CkptDir::Path(dir)) = &opts.ckpt {
        if dir.starts_with('/') && !path_within(dir, &site.ckpt_root.to_string_lossy()) {
            return Err(PolicyError::CkptOutsideRoot {
                dir: dir.clone(),
                root: site.ckpt_root.to_string_lossy().into_owned(),
            });
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
        assert_eq!(
            check_job(&site, &job("x", None)),
            Err(PolicyError::Disabled)
        );
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
    }
}
