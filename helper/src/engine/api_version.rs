//! The Docker API version the helper speaks with a node's daemon: the one bollard negotiates (the
//! daemon's own, capped at bollard's), never a fixed `/v1.NN`. Below [`MIN`] the daemon lacks what
//! the product needs, so the helper refuses it by name instead of failing on some later call.
use crate::error::{Error, Result};

/// Oldest API the product needs: checkpoint create/list and start-from-checkpoint appeared in
/// API 1.25 (Docker 1.13), as did the Mounts API of container create.
pub const MIN: (u32, u32) = (1, 25);

/// `"1.41"` as (1, 41); None when it is not MAJOR.MINOR.
pub fn parse(v: &str) -> Option<(u32, u32)> {
    let (major, minor) = v.split_once('.')?;
    let whole = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    Some((whole(major)?, whole(minor)?))
}

/// Accept the negotiated `version` of the daemon at `socket` (node `node`), or say why not.
pub fn check(version: &str, socket: &str, node: &str) -> Result<()> {
    match parse(version) {
        Some(v) if v >= MIN => Ok(()),
        _ => Err(Error::DockerApiTooOld {
            socket: socket.to_string(),
            node: node.to_string(),
            version: version.to_string(),
            min: format!("{}.{}", MIN.0, MIN.1),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_as_numbers_not_text() {
        assert_eq!(parse("1.41"), Some((1, 41)));
        assert_eq!(parse("1.9"), Some((1, 9)));
        for bad in ["", "1", "1.", ".4", "1.4x", "v1.41", "1.-2"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        // 1.9 < 1.25 although "1.9" > "1.25" as text.
        assert!(parse("1.9").unwrap() < MIN);
    }

    #[test]
    fn daemons_below_the_checkpoint_api_are_refused_by_name() {
        for ok in ["1.25", "1.41", "1.47", "2.0"] {
            assert!(check(ok, "unix:///d.sock", "n1").is_ok(), "{ok}");
        }
        for old in ["1.24", "1.9", "garbage"] {
            let e = check(old, "unix:///d.sock", "n1").unwrap_err();
            assert!(matches!(e, Error::DockerApiTooOld { .. }), "{old}");
            let msg = e.to_string();
            assert!(
                msg.contains(old) && msg.contains("1.25") && msg.contains("n1"),
                "{msg}"
            );
        }
    }
}
