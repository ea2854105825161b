//! The syntax rules for the paths in a job's options — `--container-mounts` entries and the
//! `--container-ckpt` directory — defined once for the plugin (at submit and in slurmstepd) and
//! the helper (which re-validates everything it is handed, as root). Before, each side had its own
//! copy and they had drifted (reserved destinations, hidden checkpoint directories).
//! Whether a mount *source* may be used is `user_paths`' question, answered with the user's
//! credentials.
use crate::names::normalize_path;
use std::fmt;

/// Container paths the runtime owns: a user mount there would hide or break it.
pub const RESERVED_DESTINATIONS: [&str; 6] = [
    "/.slurm-ckpt",
    "/proc",
    "/sys",
    "/dev",
    "/etc/passwd",
    "/etc/group",
];

/// One `SRC:DST[:ro|rw]` bind mount, paths normalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub src: String,
    pub dst: String,
    pub readonly: bool,
}

impl fmt::Display for Mount {
    /// The helper's `--mount` spec: always with an explicit mode.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.src,
            self.dst,
            if self.readonly { "ro" } else { "rw" }
        )
    }
}

const MOUNT_RULES: &str =
    "expected SRC:DST[:ro|rw] entries separated by commas, absolute paths without '..', ',' or ':'";

/// `path` is `root` or below it (component-wise, not as text: /ckptx is not in /ckpt).
pub fn path_within(path: &str, root: &str) -> bool {
    let root = root.trim_end_matches('/');
    path == root
        || root.is_empty()
        || path
            .strip_prefix(root)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// One `SRC:DST[:ro|rw]` entry.
pub fn parse_mount(entry: &str) -> Result<Mount, String> {
    if entry.is_empty() {
        return Err(format!("empty mount entry; {MOUNT_RULES}"));
    }
    let parts: Vec<&str> = entry.split(':').collect();
    let (src, dst, readonly) = match parts.as_slice() {
        [src, dst] => (*src, *dst, false),
        [src, dst, "ro"] => (*src, *dst, true),
        [src, dst, "rw"] => (*src, *dst, false),
        [_, _, mode] => {
            return Err(format!(
                "mount '{entry}': mode '{mode}' is not ro or rw; {MOUNT_RULES}"
            ))
        }
        _ => {
            return Err(format!(
                "mount '{entry}' is not SRC:DST[:ro|rw]; {MOUNT_RULES}"
            ))
        }
    };
    let src = mount_path(entry, "source", src)?;
    let dst = mount_path(entry, "destination", dst)?;
    if dst == "/" {
        return Err(format!(
            "mount '{entry}': destination '/' would hide the image; {MOUNT_RULES}"
        ));
    }
    if let Some(r) = RESERVED_DESTINATIONS.iter().find(|r| path_within(&dst, r)) {
        return Err(format!(
            "mount '{entry}': destination is inside {r}, which is reserved ({}); {MOUNT_RULES}",
            RESERVED_DESTINATIONS.join(", ")
        ));
    }
    Ok(Mount { src, dst, readonly })
}

/// `SRC:DST[:ro|rw],...`: each entry by [`parse_mount`], no destination twice.
pub fn parse_mounts(s: &str) -> Result<Vec<Mount>, String> {
    let mut mounts: Vec<Mount> = Vec::new();
    for entry in s.split(',') {
        let m = parse_mount(entry)?;
        if mounts.iter().any(|o| o.dst == m.dst) {
            return Err(format!(
                "mount '{entry}': destination {} is used twice; each SRC:DST entry needs its own absolute DST",
                m.dst
            ));
        }
        mounts.push(m);
    }
    Ok(mounts)
}

fn mount_path(entry: &str, what: &str, p: &str) -> Result<String, String> {
    const VALID: &str = "mount paths are absolute, without '..', ',' or ':'";
    if !p.starts_with('/') {
        return Err(format!(
            "mount '{entry}': {what} '{p}' is not an absolute path; {VALID}"
        ));
    }
    normalize_path(p).map_err(|why| format!("mount '{entry}': {what} '{p}' {why}; {VALID}"))
}

/// A checkpoint directory name inside the user's area: relative, every component non-empty and
/// not hidden (generations and markers are dot-files), not starting with '-' (it travels as an
/// argument). `rel` is what is left after the user's area is stripped from an absolute DIR.
pub fn check_ckpt_subdir(rel: &str) -> Result<(), String> {
    let ok = !rel.is_empty()
        && !rel.starts_with('-')
        && rel.split('/').all(|c| !c.is_empty() && !c.starts_with('.'));
    if ok {
        Ok(())
    } else {
        Err(format!("checkpoint directory '{rel}' must be a path inside your checkpoint area, without '..', hidden names or a leading '-'"))
    }
}

/// The checkpoint directory `dir` names inside the user's area `area` (`<ckpt_root>/<user>`):
/// a relative path as given, or an absolute one inside the area, by [`check_ckpt_subdir`].
pub fn ckpt_subdir_in(dir: &str, area: &str) -> Result<String, String> {
    let rel = if dir.starts_with('/') {
        match dir.strip_prefix(area.trim_end_matches('/')) {
            Some(rest) if path_within(dir, area) => rest.trim_start_matches('/'),
            _ => {
                return Err(format!(
                    "checkpoint directory '{dir}' is outside your checkpoint area {area}"
                ))
            }
        }
    } else {
        dir
    };
    check_ckpt_subdir(rel)?;
    Ok(rel.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts() {
        assert_eq!(
            parse_mount("/data/:/data:ro").unwrap(),
            Mount {
                src: "/data".into(),
                dst: "/data".into(),
                readonly: true
            }
        );
        assert_eq!(parse_mount("/a:/b").unwrap().to_string(), "/a:/b:rw");
        for bad in [
            "",
            "rel:/x",
            "/x:rel",
            "/x",
            "/x:/y:zz",
            "/a/../etc:/x",
            "/x:/",
            "/x:/.slurm-ckpt",
            "/x:/proc/1",
            "/x:/etc/passwd",
            "/x:/etc/group",
            "/x:/dev/shm",
        ] {
            assert!(parse_mount(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ckpt_subdirs() {
        for ok in ["7", "runs/a", "a.b"] {
            assert!(check_ckpt_subdir(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".hidden", "a/.b", "a//b", "-x", "a/"] {
            assert!(check_ckpt_subdir(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ckpt_dirs_in_the_area() {
        let area = "/ckpt/alice";
        assert_eq!(ckpt_subdir_in("runs/a", area).as_deref(), Ok("runs/a"));
        assert_eq!(ckpt_subdir_in("/ckpt/alice/r", area).as_deref(), Ok("r"));
        for bad in [
            "/ckpt/alice",
            "/ckpt/alicex/r",
            "/ckpt/bob/r",
            "/ckpt/alice/.r",
            ".r",
        ] {
            assert!(ckpt_subdir_in(bad, area).is_err(), "{bad}");
        }
    }

    #[test]
    fn within() {
        assert!(path_within("/ckpt/a", "/ckpt"));
        assert!(path_within("/ckpt", "/ckpt/"));
        assert!(!path_within("/ckptx", "/ckpt"));
    }
}
