//! The names of the plugin's user options under the site's `option_prefix`, so the plugin can be
//! loaded beside pyxis, which registers `--container-image`, `--container-mounts`,
//! `--container-env`, ... with other meanings (SPANK refuses two plugins registering one name).
//!
//! With the default prefix `container` the names are the historical ones. With any other prefix
//! P, `container-` becomes `P-` and the checkpoint options say `checkpoint` in full (`ckpt` would
//! read `--ckpt-ckpt` with the prefix `ckpt`):
//!
//! | default                     | `option_prefix=ckpt`          |
//! |-----------------------------|-------------------------------|
//! | `--container-image`         | `--ckpt-image`                |
//! | `--container-mounts`        | `--ckpt-mounts`               |
//! | `--container-env`           | `--ckpt-env`                  |
//! | `--container-mpi`           | `--ckpt-mpi`                  |
//! | `--container-ckpt`          | `--ckpt-checkpoint`           |
//! | `--container-ckpt-interval` | `--ckpt-checkpoint-interval`  |
//! | `--container-ckpt-compress` | `--ckpt-checkpoint-compress`  |
//!
//! The fallback variables (`SLURM_CKPT_CONTAINER_*`) keep their names: pyxis has none of them.

/// The default `option_prefix`.
pub const DEFAULT_PREFIX: &str = "container";
/// Longest prefix (Slurm's option names may have 75 characters; the longest suffix has 20).
pub const PREFIX_MAX_LEN: usize = 32;

/// The name (without dashes) under `prefix` of the option whose default name is `default_name`
/// (`container-...`). A name that does not start with `container-` is returned unchanged.
pub fn option_name(prefix: &str, default_name: &str) -> String {
    if prefix == DEFAULT_PREFIX {
        return default_name.to_string();
    }
    let Some(suffix) = default_name.strip_prefix("container-") else {
        return default_name.to_string();
    };
    let suffix = match suffix.strip_prefix("ckpt") {
        Some(rest) => format!("checkpoint{rest}"),
        None => suffix.to_string(),
    };
    format!("{prefix}-{suffix}")
}

/// `--NAME` of the option `default_name` under `prefix`, for messages.
pub fn option_flag(prefix: &str, default_name: &str) -> String {
    format!("--{}", option_name(prefix, default_name))
}

/// A valid `option_prefix`: a lowercase letter, then lowercase letters, digits and inner dashes.
pub fn parse_prefix(v: &str) -> Result<String, String> {
    let ok = !v.is_empty()
        && v.len() <= PREFIX_MAX_LEN
        && v.starts_with(|c: char| c.is_ascii_lowercase())
        && !v.ends_with('-')
        && v.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(v.to_string())
    } else {
        Err(format!(
            "expected 1-{PREFIX_MAX_LEN} characters from [a-z0-9-], starting with a letter and not ending with '-', e.g. ckpt"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_prefix_keeps_the_historical_names() {
        for n in [
            "container-image",
            "container-ckpt",
            "container-ckpt-interval",
            "container-mounts",
        ] {
            assert_eq!(option_name("container", n), n);
        }
    }

    #[test]
    fn another_prefix_replaces_container_and_spells_checkpoint_out() {
        let p = |n| option_name("ckpt", n);
        assert_eq!(p("container-image"), "ckpt-image");
        assert_eq!(p("container-mounts"), "ckpt-mounts");
        assert_eq!(p("container-env"), "ckpt-env");
        assert_eq!(p("container-mpi"), "ckpt-mpi");
        assert_eq!(p("container-ckpt"), "ckpt-checkpoint");
        assert_eq!(p("container-ckpt-interval"), "ckpt-checkpoint-interval");
        assert_eq!(p("container-ckpt-compress"), "ckpt-checkpoint-compress");
        assert_eq!(option_flag("cr", "container-ckpt"), "--cr-checkpoint");
        assert_eq!(p("other"), "other");
    }

    #[test]
    fn prefixes_are_option_name_safe() {
        for ok in ["ckpt", "c", "cr2", "slurm-ckpt", "container"] {
            assert_eq!(parse_prefix(ok).as_deref(), Ok(ok));
        }
        let long = "a".repeat(PREFIX_MAX_LEN + 1);
        for bad in [
            "",
            "Ckpt",
            "1ck",
            "-ck",
            "ck-",
            "ck_pt",
            "ck pt",
            "ck=",
            long.as_str(),
        ] {
            assert!(parse_prefix(bad).is_err(), "{bad}");
        }
    }
}
