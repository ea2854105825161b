//! Names and paths as users and sites write them: shared by job options and site settings.
use std::fmt;

/// Longest image reference accepted (Docker's own limit for a repository name is similar).
pub const IMAGE_MAX_LEN: usize = 255;
/// Longest path accepted in `--container-ckpt` and `--container-mounts` (PATH_MAX).
pub const PATH_MAX_LEN: usize = 4096;

/// How the MPI world is launched inside the containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MpiKind {
    Mpich,
    OpenMpi,
    None,
}

impl MpiKind {
    pub const VALID: &'static str = "mpich, openmpi or none";

    pub fn as_str(self) -> &'static str {
        match self {
            MpiKind::Mpich => "mpich",
            MpiKind::OpenMpi => "openmpi",
            MpiKind::None => "none",
        }
    }

    pub fn parse(s: &str) -> Option<MpiKind> {
        match s {
            "mpich" => Some(MpiKind::Mpich),
            "openmpi" => Some(MpiKind::OpenMpi),
            "none" => Some(MpiKind::None),
            _ => None,
        }
    }
}

impl fmt::Display for MpiKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Docker reference charset, bounded length, starting with a letter or digit (so it can never be
/// taken for a flag by the helper's argument parser).
pub fn parse_image(s: &str) -> Result<String, String> {
    const VALID: &str =
        "an image is 1-255 characters from [a-zA-Z0-9._/:@-], starting with a letter or digit, \
                         e.g. docker.io/library/debian:12";
    if s.is_empty() {
        return Err(format!("empty image name; {VALID}"));
    }
    if s.chars().any(char::is_whitespace) {
        return Err(format!("contains whitespace; {VALID}"));
    }
    if s.len() > IMAGE_MAX_LEN {
        return Err(format!("{} characters is too long; {VALID}", s.len()));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._/:@-".contains(*c)))
    {
        return Err(format!(
            "character '{}' is not allowed; {VALID}",
            c.escape_default()
        ));
    }
    if !s.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!("must start with a letter or digit; {VALID}"));
    }
    Ok(s.to_string())
}

/// A node name as it may appear in socket templates and directory names: a plain host name, so
/// that neither a job's environment nor a caller can smuggle a path or a URL in through it.
pub fn valid_node_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && !n.starts_with(['.', '-'])
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// Collapses `//`, `/./` and a trailing `/`; refuses `..` and control characters, which would
/// let a path escape the directory it is checked against.
pub fn normalize_path(p: &str) -> Result<String, &'static str> {
    if p.len() > PATH_MAX_LEN {
        return Err("is longer than 4096 bytes");
    }
    if p.chars().any(char::is_control) {
        return Err("contains control characters");
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err("contains a '..' component"),
            c => parts.push(c),
        }
    }
    let joined = parts.join("/");
    Ok(if p.starts_with('/') {
        format!("/{joined}")
    } else {
        joined
    })
}
